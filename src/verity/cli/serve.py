"""``verity serve``: run the gateway (reverse proxy + forward-auth) under uvicorn.

    verity serve --config verity.yaml            # listen on server.host:server.port
    verity serve --config verity.yaml --check    # validate everything, print routes, exit
    verity serve --config verity.yaml --workers 4  # four worker processes (gateway.workers)

uvicorn runs with uvloop and httptools when they are installed, its own X-Forwarded-For
handling off (the gateway resolves client IPs through ``server.trusted_proxies`` itself),
and a graceful shutdown that lets in-flight requests finish.

Every decision is audited into the log of ``audit:`` (default: ``<store>-audit.db`` next
to a SQLite store, or the store's PostgreSQL database), which is closed, with a final
signed checkpoint, after the server stops. Logs are JSON lines on stderr (structlog).

With ``gateway.tls`` the gateway is served over TLS (>= 1.2, HSTS on every response) and,
with ``gateway.tls.redirect_http_port``, a plain-HTTP listener in the same process
redirects to it (308); see ``verity.gateway.tls``.

The stores of ``store:`` are always opened: revocations stored by any node or by
``verity revoke`` reach this node's token verifiers and sessions through them
(``verity.identity.revocation_sync``); a node that cannot read the revocations in force
at start exits 1 instead of serving.

With ``gateway.workers`` > 1, ``serve_workers`` checks the configuration, binds the
listeners and runs ``verity.cli.supervisor``, which forks the workers; each runs
``serve_node`` on the inherited sockets (see docs/gateway.md, "Workers").
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from ..audit import AuditLog, CheckpointSigner, open_store
from ..audit.backends import sqlite_path
from ..audit.sink import AuditSink
from ..config import CONFIG_ENV, DEFAULT_FILE, VerityConfig, load_config
from ..errors import VerityError
from ..gateway import AssertionSigner, FactSource, Gateway, build_gateway
from ..gateway.device_facts import DeviceFacts
from ..gateway.grant_facts import GrantFacts
from ..gateway.http_limits import ConnectionLimits, http_protocol
from ..gateway.mtls import ClientCertificates
from ..gateway.settings import MAX_WORKERS
from ..gateway.tls import (
    HttpsRedirect,
    check_tls,
    redirect_hosts,
    resolve_tls_paths,
    uvicorn_tls_options,
)
from ..identity.revocation_sync import RevocationSync, start_revocation_sync
from ..observability import configure_logging, log_security_event
from ..policy import LivePolicy
from ..store import Stores, open_stores
from . import render
from .signin import SignIn, build_signin
from .supervisor import BindError, Listeners, Supervisor, bind_listener

app = typer.Typer(
    help="Run the Verity gateway.",
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals may hold tokens or keys
)


def load_serve_config(path: Path) -> VerityConfig:
    """Load and validate ``path`` (``verity.config.load_config``); ``ConfigError`` on problems,
    also when the ``gateway.tls`` certificate or key (relative to ``path``) does not load.
    A relative SQLite ``store.url`` is relative to ``path``'s folder, as ``load_config``
    resolves every path in the file."""
    config = load_config(path)
    gateway = resolve_tls_paths(config.gateway, Path(path).resolve().parent)
    if gateway.tls is not None:
        check_tls(gateway.tls, source=str(path))
        ClientCertificates.for_gateway(gateway, source=str(path))  # mtls routes: a SPIFFE root
    return config.model_copy(update={"gateway": gateway})


def audit_url(config: VerityConfig, *, base: Path | None = None) -> str:
    """``audit.url``, else ``sqlite:///<store stem>-audit.db`` beside a SQLite store, else
    the store's own PostgreSQL database. A relative SQLite path is relative to ``base``
    (the configuration file's folder), like every other path in the file."""
    url = config.audit.url or config.store.url
    if not url.startswith("sqlite:"):
        return url
    path = Path(sqlite_path(url))
    if not config.audit.url:
        path = path.with_name(f"{path.stem}-audit{path.suffix or '.db'}")
    if base is not None and not path.is_absolute():
        path = base / path
    return "sqlite:///" + str(path)


def open_audit(config: VerityConfig, *, base: Path | None = None) -> AuditLog:
    """The audit log of ``config`` (raises ``AuditError``, a ``VerityError``); ``base``
    as for ``audit_url``."""
    section = config.audit
    signer = CheckpointSigner.from_file(section.signing_key) if section.signing_key else None
    store = open_store(audit_url(config, base=base), schema=section.pg_schema)
    if signer is None:
        log_security_event("audit.unsigned", level="warning", reason="no audit.signing_key")
    return AuditLog(
        store, signer=signer, checkpoint_every=section.checkpoint_every,
        checkpoint_seconds=section.checkpoint_seconds,
        unhealthy_after=section.timeout_seconds,  # /readyz: failing this long = not ready
    )  # fmt: skip


def build_from_config(
    config: VerityConfig,
    *,
    audit: AuditLog | None = None,
    signin: SignIn | None = None,
    facts: Sequence[FactSource] = (),
    signer: AssertionSigner | None = None,
) -> Gateway:
    """The gateway for a loaded configuration (loads and compiles the policy).

    ``audit`` (from ``open_audit``) receives one event per decision; the caller closes it.
    ``audit.fail_closed`` (default on) answers 503 for an allow the log did not take.
    ``signin`` (from ``build_signin``) adds browser login and the embedded IdP.
    ``facts`` (from ``fact_sources``) give the policy what it cannot see in the request.
    ``signer`` (default: from ``gateway.assertion``) signs the identity assertions.
    """
    policy = LivePolicy(config.policy.path)
    signin = signin or SignIn()
    return build_gateway(
        config.gateway,
        server=config.server,
        identity=config.identity,
        decider=policy,
        reload_seconds=config.policy.reload_seconds,
        audit=audit,
        audit_fail_closed=config.audit.fail_closed,
        audit_timeout_seconds=config.audit.timeout_seconds,
        audit_allow_commit_window_seconds=config.audit.allow_commit_window_seconds,
        metrics=config.metrics,
        login=signin.login,
        mounts=signin.mounts,
        local_users=config.identity.idp is not None,
        fact_sources=facts,
        signer=signer,
        # policy reloads (new version or failure) become audit events
        security_events=audit_sink(config, audit) if audit is not None else None,
    )


def fact_sources(stores: Stores) -> list[FactSource]:
    """The facts each decision gathers from the node's stores: the principal's active
    just-in-time grants (``jit:`` rules) and the posture of the device named by the
    verified ``device_id`` claim (``device:`` rules); each cached 2 s, none if the store
    fails."""
    return [GrantFacts(stores.grants), DeviceFacts(stores.devices)]


def audit_sink(config: VerityConfig, audit: AuditLog) -> AuditSink:
    """The security-event sink writing into ``audit`` (logins, lockouts, reloads)."""
    return AuditSink(audit, timeout_seconds=config.audit.timeout_seconds)


def sync_revocations(stores: Stores, gateway: Gateway, signin: SignIn) -> RevocationSync:
    """Make the gateway's token verifiers and sessions obey the store's revocations (all
    in force now, then each as it is stored); raises ``RevocationsUnavailableError``
    when the revocations in force cannot be read, so the node does not start."""
    verifiers = list(gateway.enforcer.authenticator.verifiers.values())
    sessions = signin.login.sessions if signin.login is not None else None
    return start_revocation_sync(stores, verifiers=verifiers, sessions=sessions)


REFUSED_HANDSHAKE = "ASGI callable returned without completing handshake."


class RefusedHandshakeFilter(logging.Filter):
    """Drops uvicorn's ERROR line for a WebSocket handshake the gateway answered with an
    HTTP refusal (401/403/404/502/504 through ``websocket.http.response``): uvicorn logs
    it for every such answer, so any unauthenticated client could fill the error log.
    The refusal itself is logged and audited by the gateway."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != REFUSED_HANDSHAKE


def quiet_refused_handshakes() -> None:
    """Install ``RefusedHandshakeFilter`` on uvicorn's error logger (idempotent)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, RefusedHandshakeFilter) for f in logger.filters):
        logger.addFilter(RefusedHandshakeFilter())


def uvicorn_options(config: VerityConfig, *, access_log: bool) -> dict[str, Any]:
    """uvicorn settings: fastest installed loop/parser, no proxy-header rewriting, and TLS
    (files plus a TLS >= 1.2 context factory) when ``gateway.tls`` is set.

    The HTTP protocol (httptools when installed, else h11) is always the capped one of
    ``verity.gateway.http_limits``: header bytes and header time are bounded before the
    parser buffers anything, open connections at ``gateway.max_connections``, and requests
    beyond ``gateway.max_concurrent_requests`` answered 503.

    WebSockets use uvicorn's websockets sans-I/O protocol (it answers refused handshakes
    with the ASGI ``websocket.http.response`` extension), with the gateway's message size
    limit and keep-alive pings. Over TLS, those HTTP classes and the WebSocket one of
    ``verity.gateway.asgi_tls`` hand the client certificate to the gateway (the ASGI TLS
    extension)."""
    has = importlib.util.find_spec
    gateway = config.gateway
    tls = gateway.tls
    ws = gateway.websocket
    ws_protocol: Any = "websockets-sansio"
    if tls is not None:
        from ..gateway.asgi_tls import TlsWebSocketProtocol  # noqa: PLC0415

        ws_protocol = TlsWebSocketProtocol
    limits = ConnectionLimits(
        max_head_bytes=gateway.max_head_bytes,
        head_timeout_seconds=gateway.header_timeout_seconds,
        max_connections=gateway.max_connections,
    )
    return (uvicorn_tls_options(tls) if tls is not None else {}) | {
        "host": config.server.host,
        "port": config.server.port,
        "loop": "uvloop" if has("uvloop") else "asyncio",
        "http": http_protocol(limits),  # header bytes and time, connections: capped
        "ws": ws_protocol,
        "ws_max_size": ws.max_message_bytes,
        "ws_ping_interval": ws.ping_interval_seconds,
        "ws_ping_timeout": ws.ping_timeout_seconds,
        "lifespan": "on",
        "proxy_headers": False,
        "server_header": False,
        "access_log": access_log,
        "timeout_graceful_shutdown": 30,
        "timeout_keep_alive": 15,
        "limit_concurrency": gateway.max_concurrent_requests,  # beyond: 503
        "h11_max_incomplete_event_size": gateway.max_head_bytes,
        "log_config": None,
    }


def redirect_options(config: VerityConfig, gateway: Gateway) -> dict[str, Any] | None:
    """uvicorn settings of the plain-HTTP redirect listener, or None when there is none."""
    tls = config.gateway.tls
    if tls is None or tls.redirect_http_port is None:
        return None
    hosts = redirect_hosts(config.gateway, bind_host=config.server.host)
    redirect = HttpsRedirect(hosts=hosts, https_port=config.server.port, health=gateway)
    base = uvicorn_options(config, access_log=False)
    for key in [key for key in base if key.startswith("ssl_")]:
        del base[key]
    return base | {"app": redirect, "port": tls.redirect_http_port, "lifespan": "off"}


def serve_workers(config: VerityConfig, base: Path, *, access_log: bool) -> int:
    """``gateway.workers`` > 1: check the configuration as ``--check`` does (the policy
    compiles, the routes and TLS files load) so that a bad one fails here once, make
    the assertion key every worker shares, bind the listeners, and run the supervisor
    (``verity.cli.supervisor``) until stopped. Returns the exit code. Raises
    ``VerityError`` for a bad configuration."""
    gateway = config.gateway
    signer = AssertionSigner.from_config(gateway.assertion, issuer=gateway.public_url)
    build_from_config(config, signer=signer)  # fails before any worker starts
    redirect_port = gateway.tls.redirect_http_port if gateway.tls is not None else None
    try:
        main = bind_listener(config.server.host, config.server.port)
        try:
            redirect = (
                None if redirect_port is None else bind_listener(config.server.host, redirect_port)
            )
        except BindError:
            main.close()
            raise
    except BindError as exc:
        render.print_error(VerityError(str(exc)), as_json=False)
        return 1
    listeners = Listeners(main, redirect)

    def worker(_index: int, ready: Callable[[], None]) -> int:
        try:
            serve_node(config, base, access_log=access_log, listeners=listeners,
                       signer=signer, ready=ready)  # fmt: skip
        except typer.Exit as exc:  # the error is printed already
            return int(exc.exit_code)
        return 0

    try:
        return Supervisor(gateway.workers, worker, on_stop=listeners.close).run()
    finally:
        listeners.close()


def _summary(config: VerityConfig, gateway: Gateway) -> None:
    out = render.stdout()
    render.line(out, ("configuration ok", "green"), f": {len(config.gateway.routes)} route(s)")
    for route in config.gateway.routes:
        target = route.upstream or "(forward-auth only)"
        render.line(out, f"  {route.name}: {route.host}{route.path_prefix} -> {target}")
    render.line(out, f"  assertion kid {gateway.signer.kid}, iss {gateway.signer.issuer}")
    if config.gateway.workers > 1:
        render.line(out, f"  {config.gateway.workers} worker processes")


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
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=MAX_WORKERS, help="Override gateway.workers (worker processes)."),
    ] = None,
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
        if workers is not None:
            gateway = config.gateway.model_copy(update={"workers": workers})
            config = config.model_copy(update={"gateway": gateway})
        if check:
            _summary(config, build_from_config(config))
            return
        configure_logging(level=logging.INFO)
        quiet_refused_handshakes()
        if config.gateway.workers > 1:
            code = serve_workers(config, chosen.resolve().parent, access_log=access_log)
            raise typer.Exit(code)
    except VerityError as exc:
        render.print_error(exc, as_json=False)
        raise typer.Exit(1) from None
    serve_node(config, chosen.resolve().parent, access_log=access_log)


def serve_node(
    config: VerityConfig,
    base: Path,
    *,
    access_log: bool,
    listeners: Listeners | None = None,
    signer: AssertionSigner | None = None,
    ready: Callable[[], None] | None = None,
) -> None:
    """Serve one node (or one worker of ``serve_workers``): open the audit log and the
    stores, build the gateway, load the revocations in force, call ``ready`` and run
    uvicorn until stopped. ``listeners`` are the sockets the supervisor bound (none: bind
    ``server.host:server.port`` here), ``signer`` the assertion key every worker shares.
    Raises ``typer.Exit(1)`` on a ``VerityError``, after closing what it opened."""
    try:
        audit = open_audit(config, base=base)
    except VerityError as exc:
        render.print_error(exc, as_json=False)
        raise typer.Exit(1) from None
    stores = None
    signin = SignIn()
    revocations: RevocationSync | None = None
    try:
        stores = open_stores(config.store)  # sign-in state; revocations from every node
        signin = build_signin(config, stores, events=audit_sink(config, audit))
        facts = fact_sources(stores)
        gateway = build_from_config(config, audit=audit, signin=signin, facts=facts, signer=signer)
        gateway.on_shutdown(audit.close)  # before uvicorn re-raises SIGTERM
        revocations = sync_revocations(stores, gateway, signin)  # fail closed: none, no start
        if stores is not None and gateway.metrics is not None:
            # verity_degraded, per channel; revocation delivery delays
            gateway.metrics.watch_stores(stores.health, stores.deliveries.snapshot)
        options = uvicorn_options(config, access_log=access_log)
        if ready is not None:
            ready()
        _run(gateway, options, redirect_options(config, gateway), listeners)
    except VerityError as exc:
        render.print_error(exc, as_json=False)
        raise typer.Exit(1) from None
    finally:
        audit.close()  # no-op after the lifespan closed it; else pending + final checkpoint
        if revocations is not None:
            revocations.close()
        signin.close()
        if stores is not None:
            stores.close()


def _run(
    gateway: Gateway,
    options: dict[str, Any],
    redirect: dict[str, Any] | None,
    listeners: Listeners | None = None,
) -> None:  # pragma: no cover - blocks
    import asyncio  # noqa: PLC0415 - the server is needed only to serve
    import contextlib  # noqa: PLC0415
    from collections.abc import Iterator  # noqa: PLC0415

    import uvicorn  # noqa: PLC0415

    main = uvicorn.Server(uvicorn.Config(gateway, **options))
    main_sockets = None if listeners is None else [listeners.main]
    redirect_sockets = (
        None if listeners is None or listeners.redirect is None else [listeners.redirect]
    )
    if redirect is None:
        main.run(sockets=main_sockets)
        return

    class SecondServer(uvicorn.Server):
        """A uvicorn server that leaves the signals to the gateway's and stops with it."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    second = SecondServer(uvicorn.Config(**redirect))

    async def both() -> None:
        task = asyncio.create_task(second.serve(sockets=redirect_sockets))
        try:
            await main.serve(sockets=main_sockets)
        finally:
            second.should_exit = True
            await task

    with asyncio.Runner(loop_factory=main.config.get_loop_factory()) as runner:
        runner.run(both())


if __name__ == "__main__":
    app()
