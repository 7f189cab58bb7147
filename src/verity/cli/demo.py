"""``verity demo``: the embedded default in one command (what ``make run`` starts).

verity demo                  # gateway + embedded IdP + demo app on 127.0.0.1:8080
verity demo --reset          # forget the demo's people, sessions and audit log
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from pathlib import Path
from typing import Annotated, Any

import typer

from ..config import load_config
from ..demo import DemoSetup, prepare
from ..demo.app import create_demo_app
from ..demo.setup import PEOPLE
from ..errors import VerityError
from ..identity.revocation_sync import RevocationSync
from ..observability import configure_logging
from ..store import open_stores
from . import render
from .serve import (
    audit_sink,
    build_from_config,
    open_audit,
    quiet_refused_handshakes,
    sync_revocations,
    uvicorn_options,
)
from .signin import build_signin

app = typer.Typer(help="Run the demo: gateway, sign-in and a protected app.", add_completion=False)


def banner(setup: DemoSetup) -> str:
    """What a newcomer needs: where to go and how to sign in."""
    lines = [
        "",
        f"Verity demo: open {setup.gateway_url}/ in a browser (Ctrl-C stops it).",
        "",
        "Sign in as one of these people (passwords are random, kept in "
        f"{setup.folder / 'demo-secrets.json'}):",
    ]
    for email, name, _, roles in PEOPLE:
        lines.append(f"  {email:<24} {setup.passwords[email]:<20} {name} ({', '.join(roles)})")
    lines += [
        "",
        "Then try /docs/handbook, /reports and /admin/settings: the admin may go anywhere, the",
        "engineer not into /admin, the contractor only into /docs and only with MFA, so she is",
        "denied there with the reason and a decision id. Every decision is in the audit log:",
        f"  verity audit tail --db sqlite:///{setup.folder / 'audit.db'}",
        "",
    ]
    return "\n".join(lines)


@app.callback(invoke_without_command=True)
def demo(
    folder: Annotated[Path, typer.Option("--dir", help="Where the demo keeps its state.")] = Path(
        ".verity-demo"
    ),
    port: Annotated[int, typer.Option(help="Gateway port on 127.0.0.1.")] = 8080,
    app_port: Annotated[int, typer.Option(help="Demo app port on 127.0.0.1.")] = 8081,
    reset: Annotated[bool, typer.Option("--reset", help="Start from an empty demo.")] = False,
) -> None:
    """Run the embedded default on 127.0.0.1: SQLite, the embedded IdP, a protected app."""
    sockets = _bind_both(port, app_port)  # before anything is printed: a busy port says so
    try:
        setup = prepare(folder, port=port, app_port=app_port, reset=reset)
    except VerityError as exc:
        render.print_error(exc, as_json=False)
        raise typer.Exit(1) from None
    except OSError as exc:
        render.stderr().print(f"cannot prepare {folder}: {exc}", markup=False)
        raise typer.Exit(1) from None
    render.stdout().print(banner(setup), highlight=False, markup=False, soft_wrap=True)
    configure_logging(level=logging.INFO)
    quiet_refused_handshakes()
    try:
        asyncio.run(_serve(setup, sockets))
    except VerityError as exc:
        render.print_error(exc, as_json=False)
        raise typer.Exit(1) from None
    finally:
        for sock in sockets:
            sock.close()


def _bind_both(port: int, app_port: int) -> tuple[socket.socket, socket.socket]:
    """Listening sockets on 127.0.0.1 for the gateway and the demo app, or a clear error
    (exit 1) naming the port and the option that changes it: no traceback, no logins."""
    bound: list[socket.socket] = []
    for number, option in ((port, "--port"), (app_port, "--app-port")):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", number))
            sock.listen(2048)
        except OSError as exc:
            sock.close()
            for other in bound:
                other.close()
            busy = exc.errno == errno.EADDRINUSE
            what = "is already in use (is another demo running?)" if busy else f"({exc.strerror})"
            render.stderr().print(
                f"error: cannot listen on 127.0.0.1:{number}: the port {what}.\n"
                f"Choose another with {option}, e.g. verity demo {option} {number + 10}",
                markup=False, highlight=False, soft_wrap=True,
            )  # fmt: skip
            raise typer.Exit(1) from None
        bound.append(sock)
    return bound[0], bound[1]


async def _serve(  # pragma: no cover - blocks until stopped
    setup: DemoSetup, sockets: tuple[socket.socket, socket.socket]
) -> None:
    import uvicorn  # noqa: PLC0415 - needed only to serve

    config = load_config(setup.config_path)
    audit = open_audit(config, base=setup.folder)
    stores = open_stores(config.store)
    signin = build_signin(config, stores, events=audit_sink(config, audit))
    revocations: RevocationSync | None = None
    try:
        gateway = build_from_config(config, audit=audit, signin=signin)
        gateway.on_shutdown(audit.close)
        revocations = sync_revocations(stores, gateway, signin)  # `verity revoke` reaches it
        options: dict[str, Any] = uvicorn_options(config, access_log=False)
        upstream = create_demo_app(gateway_url=setup.gateway_url, audience="demo")
        servers = [
            uvicorn.Server(uvicorn.Config(gateway, **options)),
            uvicorn.Server(
                uvicorn.Config(upstream, host="127.0.0.1", port=setup.app_port, log_config=None)
            ),
        ]
        await asyncio.gather(
            *(server.serve(sockets=[sock]) for server, sock in zip(servers, sockets, strict=True))
        )
    finally:
        audit.close()
        if revocations is not None:
            revocations.close()
        signin.close()
        stores.close()
