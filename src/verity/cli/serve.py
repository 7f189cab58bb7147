"""``verity serve``: run the gateway (reverse proxy + forward-auth) under uvicorn.

    verity serve --config verity.yaml            # listen on server.host:server.port
    verity serve --config verity.yaml --check    # validate everything, print routes, exit

uvicorn runs with uvloop and httptools when they are installed, its own X-Forwarded-For
handling off (the gateway resolves client IPs through ``server.trusted_proxies`` itself),
and a graceful shutdown that lets in-flight requests finish.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from ..config import CONFIG_ENV, DEFAULT_FILE, VerityConfig, load_config
from ..errors import VerityError
from ..gateway import Gateway, build_gateway
from ..policy import LivePolicy
from . import render

app = typer.Typer(
    help="Run the Verity gateway.",
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals may hold tokens or keys
)


def load_serve_config(path: Path) -> VerityConfig:
    """Load and validate ``path`` (``verity.config.load_config``); ``ConfigError`` on problems."""
    return load_config(path)


def build_from_config(config: VerityConfig) -> Gateway:
    """The gateway for a loaded configuration (loads and compiles the policy)."""
    policy = LivePolicy(config.policy.path)
    return build_gateway(
        config.gateway,
        server=config.server,
        identity=config.identity,
        decider=policy,
        reload_seconds=config.policy.reload_seconds,
    )


def uvicorn_options(config: VerityConfig, *, access_log: bool) -> dict[str, Any]:
    """uvicorn settings: fastest installed loop/parser, no proxy-header rewriting."""
    has = importlib.util.find_spec
    return {
        "host": config.server.host,
        "port": config.server.port,
        "loop": "uvloop" if has("uvloop") else "asyncio",
        "http": "httptools" if has("httptools") else "h11",
        "ws": "none",
        "lifespan": "on",
        "proxy_headers": False,
        "server_header": False,
        "access_log": access_log,
        "timeout_graceful_shutdown": 30,
        "timeout_keep_alive": 15,
        "h11_max_incomplete_event_size": config.gateway.max_header_bytes,
        "log_config": None,
    }


def _summary(config: VerityConfig, gateway: Gateway) -> None:
    out = render.stdout()
    render.line(out, ("configuration ok", "green"), f": {len(config.gateway.routes)} route(s)")
    for route in config.gateway.routes:
        target = route.upstream or "(forward-auth only)"
        render.line(out, f"  {route.name}: {route.host}{route.path_prefix} -> {target}")
    render.line(out, f"  assertion kid {gateway.signer.kid}, iss {gateway.signer.issuer}")


@app.callback(invoke_without_command=True)
def serve(
    config_path: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help=f"Config file (default: ${CONFIG_ENV} or ./{DEFAULT_FILE})."
        ),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Override server.host.")] = None,
    port: Annotated[int | None, typer.Option(help="Override server.port.")] = None,
    check: Annotated[bool, typer.Option("--check", help="Validate, print routes, exit.")] = False,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request.")] = False,
) -> None:
    """Run the identity-aware proxy and forward-auth endpoint."""
    import os  # noqa: PLC0415 - only needed here

    chosen = config_path or Path(os.environ.get(CONFIG_ENV, DEFAULT_FILE))
    try:
        config = load_serve_config(chosen)
        server = config.server.model_copy(
            update={k: v for k, v in (("host", host), ("port", port)) if v is not None}
        )
        config = config.model_copy(update={"server": server})
        gateway = build_from_config(config)
    except VerityError as exc:
        render.print_error(exc, as_json=False)
        raise typer.Exit(1) from None
    if check:
        _summary(config, gateway)
        return
    _run(gateway, uvicorn_options(config, access_log=access_log))


def _run(gateway: Gateway, options: dict[str, Any]) -> None:  # pragma: no cover - blocks
    import uvicorn  # noqa: PLC0415 - the server is needed only to serve

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.Server(uvicorn.Config(gateway, **options)).run()


if __name__ == "__main__":
    app()
