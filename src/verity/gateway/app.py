"""The gateway ASGI application: internal endpoints, forward-auth, and the reverse proxy.

    GET /healthz                        liveness (the process answers)
    GET /readyz                         policy loaded, issuer keys fresh or stale within bounds
    GET /.well-known/verity/jwks.json   the identity-assertion keys, for upstream apps
    GET /metrics                        Prometheus metrics, for ``metrics.allowed_cidrs`` only
    *   /verity/auth                    forward-auth (nginx auth_request)
    *   /verity/auth/traefik            forward-auth (Traefik ForwardAuth)
    *   /verity/ext_authz/...           forward-auth (Envoy ext_authz HTTP service)
    *   everything else                 routed by host + longest path prefix, then proxied

Every request first passes header limits and client-IP resolution; anything malformed is
a clean 4xx and never reaches an upstream. WebSocket handshakes take the same path and are
then relayed (``verity.gateway.websocket``); on routes with ``mtls`` the client
certificate identifies the caller (``verity.gateway.mtls``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple, Protocol

import httpx
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..identity.notices import NOTICE_COOKIE
from ..model import HttpTarget, Principal
from ..observability import GatewayMetrics, MetricsConfig, MetricsEndpoint
from ..request_binding import canonical_request_path
from . import refusals, responses
from .assertion import JWKS_PATH, AssertionSigner
from .enforce import Enforcer, Outcome, Subject, Verdict, internal_deny
from .errors import BadRequestError
from .forward_auth import ForwardAuth
from .headers import ClientResolver, RawHeaders, single_header
from .inbound import (
    Inbound,
    Limits,
    RequestLine,
    http_target,
    inbound_of,
    read_inbound,
    read_target,
    request_line,
    upstream_path,
)
from .inbound import request_host as _request_host
from .mounts import mount_scope
from .mtls import ClientCertificates
from .pool import Upstream, UpstreamResponse
from .proxy import BodyDeadline, UpstreamProxy, forwarding_headers, identity_pairs
from .readiness import Readiness
from .responses import FAVICON, FAVICON_HEADERS, FAVICON_PATH, DenyContext
from .routing import RouteTable
from .settings import GatewayConfig, RouteConfig
from .tls import with_hsts
from .websocket import WebSocketProxy

log = logging.getLogger("verity.gateway")


class BrowserLogin(Protocol):
    """What the gateway needs of browser login (``verity.identity.oidc.LoginService``)."""

    @property
    def hidden_cookies(self) -> frozenset[str]:
        """The session cookies that must never reach an upstream."""

    def login_url(
        self, return_url: str, *, issuers: Sequence[str] = (), notice: str | None = None
    ) -> str:
        """Where an unauthenticated browser is sent (a path on the gateway); ``issuers``
        (a route's ``issuers:``) narrows the sign-in to the providers it accepts;
        ``notice`` (``signed_out``, ``session_ended``) says why on the sign-in form."""

    @property
    def logout_url(self) -> str:
        """The sign-out page (a path on the gateway)."""

    async def authenticate_cookie(self, request_headers: RawHeaders) -> Principal | None:
        """The principal of the request's session cookie, or None."""


Endpoint = Callable[[Scope, Receive, Send], Awaitable[None]]


def _notice(headers: RawHeaders, session_cookies: frozenset[str]) -> str | None:
    """Why a browser is sent to sign in again: it signed out (``NOTICE_COOKIE``), or its
    session cookie no longer authenticates (revoked, expired, signed out elsewhere)."""
    names = set()
    for name, value in headers:
        if name.lower() == b"cookie":
            for part in value.decode("latin-1").split(";"):
                names.add(part.split("=", 1)[0].strip())
    if NOTICE_COOKIE in names:
        return "signed_out"
    sessions = {name for name in session_cookies if not name.endswith("_login")}
    return "session_ended" if names & sessions else None


class Forward(NamedTuple):
    """An allowed proxy request: its route, the headers the gateway adds (forwarding and
    identity), the canonical path sent upstream, and how errors are answered."""

    route: RouteConfig
    added: list[tuple[bytes, bytes]]
    path: str
    html: bool


class Gateway:
    """The ASGI application (``verity serve`` runs it under uvicorn)."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        resolver: ClientResolver,
        enforcer: Enforcer,
        signer: AssertionSigner,
        transport: Upstream | httpx.AsyncBaseTransport,
        readiness: Readiness,
        metrics: GatewayMetrics | None = None,
        metrics_config: MetricsConfig | None = None,
        login: BrowserLogin | None = None,
        mounts: Sequence[tuple[str, ASGIApp]] = (),
        local_users: bool = False,
    ) -> None:
        self.config = config
        self.login = login
        self.local_users = local_users  # the embedded IdP's users (deny pages say how to enrol)
        self.mounts = tuple((prefix.rstrip("/"), app) for prefix, app in mounts)
        self.resolver = resolver
        self.enforcer = enforcer
        self.signer = signer
        self.transport = transport
        self.readiness = readiness
        self.routes = RouteTable(config.routes)
        self.proxy = UpstreamProxy(transport, body_timeout=config.body_timeout_seconds)
        self.limits = Limits(config.max_header_bytes, config.max_header_count)
        self.forward_auth = ForwardAuth(
            config.forward_auth, routes=self.routes, enforcer=enforcer, render=self.render
        )
        self._internal: dict[str, Endpoint] = {
            "/healthz": self._healthz,
            "/readyz": self._readyz,
            JWKS_PATH: self._jwks,
            FAVICON_PATH: self._favicon,
        }
        self.metrics = metrics
        metrics_config = metrics_config or MetricsConfig()
        if metrics is not None and metrics_config.enabled:
            self.metrics_endpoint = MetricsEndpoint(metrics, metrics_config)
            self._internal[metrics_config.path] = self._metrics
        self._background: list[asyncio.Task[None]] = []
        self._shutdown_hooks: list[Callable[[], None]] = []
        self._hsts = config.tls.hsts_header if config.tls is not None else None
        self.hsts = self._hsts  # (the fast path adds it to responses over TLS)
        self.certificates = ClientCertificates.for_gateway(config)
        self.websockets = WebSocketProxy(
            config.websocket, routes=self.routes, resolver=resolver, limits=self.limits,
            enforcer=enforcer, render=self.render, certificates=self.certificates,
            reserved=self._reserved, metrics=metrics, hsts=self._hsts,
            hidden_cookies=login.hidden_cookies if login is not None else frozenset(),
            upstream_tls=_upstream_tls(config),
        )  # fmt: skip

    def on_shutdown(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` (in a worker thread) at lifespan shutdown, after in-flight requests
        finished: ``verity serve`` closes the audit log here, because uvicorn re-raises
        SIGTERM once it has stopped and the process may end before anything after it."""
        self._shutdown_hooks.append(hook)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if self._hsts is not None and scope.get("scheme") == "https":
                send = with_hsts(send, self._hsts)  # every response over TLS
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await self.websockets(scope, receive, send)

    def render(self, outcome: Outcome, html: bool, target: HttpTarget | None = None) -> Response:
        """The 401 or 403 response for a non-allowed outcome (``target``: the proxied
        request, whose deny page links home, to sign-out and to the next step)."""
        if outcome.verdict is Verdict.UNAUTHENTICATED:
            return responses.unauthenticated(
                self.config.realm, html=html,
                error_description=outcome.error_description, decision=outcome.decision,
            )  # fmt: skip
        if outcome.verdict is Verdict.UNAVAILABLE:  # allowed, but not audited: fail closed
            return responses.error(503, "The service is temporarily unavailable.", html=html)
        context = self._deny_context(outcome, target) if html else None
        return responses.denied(outcome.decision or internal_deny(), html=html, context=context)

    def _deny_context(self, outcome: Outcome, target: HttpTarget | None) -> DenyContext:
        principal = outcome.principal
        if principal is None or not principal.authenticated:
            return DenyContext()
        who = principal.email or principal.id
        if target is None:  # forward-auth: the page is shown on the application's host
            return DenyContext(who=who)
        login = self.login
        again = None
        if login is not None and target.method in ("GET", "HEAD"):
            again = login.login_url(target.path)
        return DenyContext(
            who=who, principal_id=principal.id, method=target.method, path=target.path,
            home="/", sign_out=login.logout_url if login else None, sign_in_again=again,
            local_users=self.local_users,
        )  # fmt: skip

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        endpoint = self._internal.get(path)
        if endpoint is not None:
            await endpoint(scope, receive, send)
            return
        html = False
        try:
            inbound = read_inbound(scope, self.resolver, self.limits)
            html = inbound.html
            mounted = self._mounted(path)
            if mounted is not None:  # the gateway's own apps: login routes, embedded IdP
                await self._mount(mounted, mount_scope(scope, inbound.client), receive, send)
                return
            answer = await self._answer(request_line(scope), inbound)
        except BadRequestError as exc:
            client = scope.get("client")
            answer = await self._bad_request(exc, path, client[0] if client else None, html)
        if isinstance(answer, Forward):
            await self._forward(scope, receive, send, inbound, answer)
        else:
            await answer(scope, receive, send)

    def fast_path_enabled(self) -> bool:
        """True when ``gateway.fast_path`` is on: the HTTP protocol answers forward-auth
        checks and bodiless proxied requests itself (``verity.gateway.fast_path``)."""
        return self.config.fast_path

    def fast_path_serves(self, path: str) -> bool:
        """True when a bodiless request (no WebSocket upgrade) to the decoded ``path`` may
        be answered by ``answer_raw``: anything but the internal endpoints and mounts."""
        return path not in self._internal and self._mounted(path) is None

    async def answer_raw(self, line: RequestLine, headers: RawHeaders) -> Response | Forward:
        """The answer to a bodiless request read by the HTTP protocol itself: what the ASGI
        path (``_http``) answers for the same request, from the same functions."""
        html = False
        try:
            inbound = inbound_of(headers, line.peer, self.resolver, self.limits)
            html = inbound.html
            return await self._answer(line, inbound)
        except BadRequestError as exc:
            return await self._bad_request(exc, line.path, line.peer, html)

    async def open_upstream(
        self, line: RequestLine, headers: RawHeaders, forward: Forward
    ) -> tuple[UpstreamResponse | Response, float]:
        """Send an allowed bodiless request upstream (``answer_raw``'s ``Forward``): the
        response head to relay, or the error response; and when it was sent."""
        started = time.perf_counter()
        answer = await self.proxy.open(
            forward.route, method=line.method, query=line.query, raw=headers,
            added=forward.added, path=forward.path, html=forward.html,
            hidden_cookies=self.login.hidden_cookies if self.login else frozenset(),
        )  # fmt: skip
        return answer, started

    def observe_upstream(self, route: str, status: int, started: float) -> None:
        """The upstream's time to response headers, by status (as ``_timed``)."""
        if self.metrics is not None:
            self.metrics.upstream(route, status, time.perf_counter() - started)

    async def _bad_request(
        self, exc: BadRequestError, path: str, peer: str | None, html: bool
    ) -> Response:
        response = responses.error(exc.status, exc.public_message, html=html)
        if self.forward_auth.handles(path):  # a check refused unread (431): audited too
            response = await self.forward_auth.refuse_unread(path, peer, exc, response)
        return response

    async def _answer(self, line: RequestLine, inbound: Inbound) -> Response | Forward:
        """Forward-auth's answer, or the proxy's refusal, or what to forward (allowed)."""
        dialect = self.forward_auth.dialect(line.path)
        if dialect is not None:
            return await self.forward_auth.check(line, inbound, dialect=dialect)
        return await self._proxy(line, inbound)

    async def _mount(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        """Run a gateway app with the body deadline of forwarded bodies (before sign-in:
        a login form trickled one byte at a time must not hold a connection forever)."""
        deadline = BodyDeadline(receive, send, self.config.body_timeout_seconds)
        try:
            await app(scope, deadline.receive, deadline.send)
        except Exception:
            if not deadline.expired:
                raise  # (after the 408 the app's complaint about the lost body is moot)

    def _reserved(self, path: str) -> bool:
        """The gateway's own paths (endpoints, mounts, forward-auth): never proxied."""
        return (
            path in self._internal
            or self._mounted(path) is not None
            or self.forward_auth.handles(path)
        )

    def _mounted(self, path: str) -> ASGIApp | None:
        for prefix, app in self.mounts:
            if path == prefix or path.startswith(prefix + "/"):
                return app
        return None

    async def _proxy(self, line: RequestLine, inbound: Inbound) -> Response | Forward:
        host = _request_host(inbound, forwarded=False)
        route = None
        try:
            target = read_target(line.target)
            route = self.routes.match(host, target.decoded)
            if route is None or route.upstream is None:  # a deny like any other: audited
                decision = await refusals.unrouted(
                    self.enforcer, inbound.client, host=host, method=line.method,
                    path=target.decoded, route=route.name if route else refusals.NO_ROUTE,
                )  # fmt: skip
                return refusals.not_found(decision, html=inbound.html)
            http = http_target(
                route, host=host, method=line.method, target=target, headers=inbound.headers
            )
        except BadRequestError as exc:  # an ambiguous target or override: refused, audited
            if exc.reason_code is None:
                raise
            decision = await refusals.refused_target(
                self.enforcer, exc, inbound.client, host=host, method=line.method,
                untrusted_target=line.target.split("?", 1)[0],
                route=route.name if route else refusals.NO_ROUTE,
            )  # fmt: skip
            response = responses.error(exc.status, exc.public_message, html=inbound.html)
            return refusals.with_decision_id(response, decision)
        return await self._enforce(line, inbound, (route, host, http))

    async def _enforce(
        self, line: RequestLine, inbound: Inbound, decided: tuple[RouteConfig, str, HttpTarget]
    ) -> Response | Forward:
        """Decide the target on its route: what to forward (its canonical path) or the
        refusal."""
        route, host, target = decided
        peer = (
            self.certificates.peer({"extensions": {"tls": line.tls}})
            if route.mtls != "off"
            else None
        )
        base = self.proxy.base_path(route)
        bound = canonical_request_path(base + upstream_path(target.path)) if base else None
        outcome = await self.enforcer.authorize(
            Subject(route, target, inbound.client, inbound.headers, peer, bound)
        )
        if outcome.verdict is not Verdict.ALLOWED:
            redirect = self._login_redirect(line, inbound, outcome, host, route.issuers)
            return redirect or self.render(outcome, inbound.html, target)
        added = forwarding_headers(
            chain=inbound.client.chain, proto=self._proto(line, inbound), host=host,
            upstream_host=host if route.preserve_host else None,
        )  # fmt: skip
        added.extend(identity_pairs(outcome.identity_headers))
        return Forward(route, added, upstream_path(target.path), inbound.html)

    async def _forward(
        self, scope: Scope, receive: Receive, send: Send, inbound: Inbound, forward: Forward
    ) -> None:
        route = forward.route
        await self.proxy.forward(
            scope, receive, self._timed(send, route.name), route=route, raw=inbound.headers,
            added=forward.added, path=forward.path, html=forward.html,
            hidden_cookies=self.login.hidden_cookies if self.login else frozenset(),
        )  # fmt: skip

    def _login_redirect(
        self, line: RequestLine, inbound: Inbound, outcome: Outcome, host: str,
        issuers: Sequence[str] = (),
    ) -> Response | None:  # fmt: skip
        """An unauthenticated browser GET goes to the login page (APIs get the 401)."""
        if (
            self.login is None
            or outcome.verdict is not Verdict.UNAUTHENTICATED
            or outcome.error_description is not None  # a bad token is a 401, not a login
            or not inbound.html
            or line.method not in ("GET", "HEAD")
        ):
            return None
        query = line.query.decode("latin-1")
        original = f"{self._proto(line, inbound)}://{host}{line.path}" + (
            f"?{query}" if query else ""
        )
        notice = _notice(inbound.headers, self.login.hidden_cookies)
        url = self.login.login_url(original, issuers=issuers, notice=notice)
        return RedirectResponse(url, status_code=302)

    def _timed(self, send: Send, route: str) -> Send:
        """``send`` that observes the upstream's time to response headers, by status."""
        metrics = self.metrics
        if metrics is None:
            return send
        started = time.perf_counter()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                metrics.upstream(route, int(message["status"]), time.perf_counter() - started)
            await send(message)

        return timed_send

    @staticmethod
    def _proto(line: RequestLine, inbound: Inbound) -> str:
        if inbound.client.peer_trusted:
            value = single_header(inbound.headers, b"x-forwarded-proto")
            if value in ("http", "https"):
                return value
        return line.scheme

    async def _healthz(self, scope: Scope, receive: Receive, send: Send) -> None:
        await JSONResponse({"status": "ok"}, headers={"cache-control": "no-store"})(
            scope, receive, send
        )

    async def _favicon(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The gateway's own icon, before any decision: what every browser asks for on
        every page is not a decision to audit. Only this exact path is answered here
        (``_internal`` matches the whole decoded path); nothing is forwarded."""
        await Response(FAVICON, 200, FAVICON_HEADERS)(scope, receive, send)

    async def _readyz(self, scope: Scope, receive: Receive, send: Send) -> None:
        ready, checks = self.readiness.check()
        body = {"ready": ready, "checks": checks}
        headers = {"cache-control": "no-store"}
        await JSONResponse(body, 200 if ready else 503, headers)(scope, receive, send)

    async def _metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:  # the client IP through the configured trusted proxies, as for any request
            client_ip = read_inbound(scope, self.resolver, self.limits).client.ip
        except BadRequestError:
            client_ip = None
        await self.metrics_endpoint.response(client_ip)(scope, receive, send)

    async def _jwks(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {"cache-control": "public, max-age=300"}
        await JSONResponse(self.signer.jwks(), headers=headers)(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.readiness.warm_up()
                self._background = self.readiness.start_background()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for task in self._background:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                await self.transport.aclose()
                for hook in self._shutdown_hooks:
                    await asyncio.to_thread(hook)
                await send({"type": "lifespan.shutdown.complete"})
                return


def _upstream_tls(config: GatewayConfig) -> ssl.SSLContext | None:
    """The client TLS context for ``wss://`` upstreams (as for ``https://`` ones)."""
    secure = any((route.upstream or "").startswith("https:") for route in config.routes)
    return httpx.create_ssl_context() if secure else None
