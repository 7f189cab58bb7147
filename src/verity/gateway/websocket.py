"""WebSocket pass-through: decided like an HTTP GET, then relayed frame by frame.

For an ASGI ``websocket`` scope the gateway runs the HTTP pipeline first -- header
limits, client IP through trusted hops, routing by host and longest prefix, the client
certificate on ``mtls`` routes, the bearer token or session cookie, the policy decision
(method ``GET``, header ``upgrade: websocket``), audit -- and only an allowed request
ever reaches the upstream. Refusals are HTTP answers to the handshake (401/403 with the
usual JSON or HTML body, through the ASGI ``websocket.http.response`` extension; a server
without it gets close code 1008).

On allow, the gateway opens its own WebSocket to the route's upstream (``ws://`` for an
``http://`` upstream, ``wss://`` for ``https://``) with the cleaned request headers and
its identity headers, exactly as the HTTP proxy sends them; the client's subprotocols
are offered upstream and the client is accepted with the one the upstream chose. No
redirect is followed and no proxy is taken from the environment. Then text and binary
messages are relayed both ways until one side closes; its close code goes to the other
side. Messages over ``gateway.websocket.max_message_bytes`` close the connection with
1009; an upstream that cannot be reached is 502, one that does not complete the
handshake within ``connect_timeout_seconds`` is 504.

Browsers cannot set ``Authorization`` on a WebSocket, so their credentials (cookies,
client certificates) are ambient: a request without a bearer token whose ``Origin`` is
neither its own host nor in the route's ``websocket_origins`` is refused (403) before any
decision, against cross-site WebSocket hijacking.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.http11 import Request

from ..model import Reason
from ..observability import GatewayMetrics
from ..request_binding import canonical_request_path
from . import refusals, responses
from .enforce import Enforcer, Outcome, Subject, Verdict
from .errors import BadRequestError
from .headers import ClientResolver, single_header
from .inbound import (
    Inbound,
    Limits,
    read_inbound,
    read_target,
    request_host,
    scope_target,
)
from .mtls import ClientCertificates
from .proxy import forwarding_headers, identity_pairs
from .routing import RouteTable
from .settings import RouteConfig, WebSocketConfig
from .websocket_handshake import handshake_headers, origin_allowed, upstream_uri, websocket_target

log = logging.getLogger("verity.gateway")
Render = Callable[[Outcome, bool], Response]
HTTP_RESPONSE = "websocket.http.response"
# close codes a peer may send (RFC 6455 7.4, IANA registry); 1005/1006/1015 are not sent
_SENDABLE = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})
BAD_GATEWAY = 1014
CROSS_ORIGIN = Reason(
    "websocket.origin",
    "this WebSocket was opened from another site",
    hint="Open the WebSocket from a page of this application.",
)


def sendable(code: int | None, fallback: int) -> int:
    """``code`` if a close frame may carry it, else ``fallback``."""
    if code is None:
        return fallback
    if code in _SENDABLE or 3000 <= code <= 4999:
        return code
    return 1000 if code == 1005 else fallback  # 1005: the peer closed without a code


def upstream_close_code(exc: ConnectionClosed) -> tuple[int, str]:
    """The code (and reason) to give the client when the upstream connection ended."""
    rcvd, sent = exc.rcvd, exc.sent
    if rcvd is not None and (sent is None or exc.rcvd_then_sent):
        return sendable(rcvd.code, BAD_GATEWAY), rcvd.reason
    if sent is not None:  # the gateway closed it: message too big (1009), ping timeout...
        return sendable(sent.code, BAD_GATEWAY), sent.reason
    return BAD_GATEWAY, ""  # the upstream went away without a close frame


class _NoRedirects(connect):
    """``websockets`` ``connect`` that never follows a redirect: the identity headers
    must not reach any other address than the route's upstream."""

    def process_redirect(self, exc: Exception) -> Exception | str:
        return exc


def _connection_class(host: str | None) -> type[ClientConnection]:
    """The connection class; with ``host``, the handshake's ``Host`` is replaced by it."""
    if host is None:
        return ClientConnection
    preserved: str = host

    class PreservedHost(ClientConnection):
        async def handshake(self, *args: Any, **kwargs: Any) -> None:
            build = self.protocol.connect

            def with_host() -> Request:
                request = build()
                del request.headers["Host"]
                request.headers["Host"] = preserved
                return request

            self.protocol.connect = with_host  # type: ignore[method-assign]
            await super().handshake(*args, **kwargs)

    return PreservedHost


@dataclass(frozen=True, slots=True)
class Admitted:
    """An allowed handshake: where to connect and what to send."""

    route: RouteConfig
    uri: str
    headers: list[tuple[bytes, bytes]] = field(repr=False)
    subprotocols: tuple[str, ...]
    host: str | None  # the Host to send (preserve_host), else the upstream's
    subject: Subject = field(repr=False)  # decided again while the connection is open


class WebSocketProxy:
    """The ASGI handler of ``websocket`` scopes (the ``Gateway`` dispatches to it)."""

    def __init__(
        self,
        config: WebSocketConfig,
        *,
        routes: RouteTable,
        resolver: ClientResolver,
        limits: Limits,
        enforcer: Enforcer,
        render: Render,
        certificates: ClientCertificates,
        reserved: Callable[[str], bool],
        hidden_cookies: frozenset[str] = frozenset(),
        metrics: GatewayMetrics | None = None,
        hsts: str | None = None,
        upstream_tls: ssl.SSLContext | None = None,
    ) -> None:
        self.config = config
        self.routes = routes
        self.resolver = resolver
        self.limits = limits
        self.enforcer = enforcer
        self.render = render
        self.certificates = certificates
        self.reserved = reserved
        self.hidden_cookies = hidden_cookies
        self.metrics = metrics
        self.hsts = hsts
        self.upstream_tls = upstream_tls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return  # the client left before the handshake
        html = False
        try:
            inbound = read_inbound(scope, self.resolver, self.limits)
            html = inbound.html
            admitted = await self._admit(scope, inbound)
        except BadRequestError as exc:
            admitted = responses.error(exc.status, exc.public_message, html=html)
        if isinstance(admitted, Response):
            await self._refuse(scope, send, admitted)
            return
        upstream = await self._connect(admitted, html)
        if isinstance(upstream, Response):
            await self._refuse(scope, send, upstream)
            return
        try:
            await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
        except OSError:  # the client left while the upstream answered
            await upstream.close(1001)
            return
        await self._relay(receive, send, upstream, admitted.subject, scope)

    async def _admit(self, scope: Scope, inbound: Inbound) -> Admitted | Response:
        """Route, authenticate and decide; the refusal, or what to open upstream."""
        host = request_host(inbound, forwarded=False)
        sent = scope_target(scope)
        route = None
        try:
            read = read_target(sent)
            route = None if self.reserved(scope["path"]) else self.routes.match(host, read.decoded)
            if route is None or route.upstream is None or not route.websocket:
                decision = await refusals.unrouted(
                    self.enforcer, inbound.client, host=host, method="GET", path=read.decoded,
                    route=route.name if route else refusals.NO_ROUTE,
                )  # fmt: skip
                return refusals.not_found(decision, html=inbound.html)
            target = websocket_target(route, host=host, target=read, headers=inbound.headers)
        except BadRequestError as exc:  # an ambiguous target or override: refused, audited
            if exc.reason_code is None:
                raise
            decision = await refusals.refused_target(
                self.enforcer, exc, inbound.client, host=host, method="GET",
                untrusted_target=sent.split("?", 1)[0],
                route=route.name if route else refusals.NO_ROUTE,
            )  # fmt: skip
            response = responses.error(exc.status, exc.public_message, html=inbound.html)
            return refusals.with_decision_id(response, decision)
        peer = self.certificates.peer(scope) if route.mtls != "off" else None
        received = canonical_request_path(urlsplit(upstream_uri(route, target.path, b"")).path)
        bound = received if received != target.path else None  # an upstream base path
        subject = Subject(route, target, inbound.client, inbound.headers, peer, bound)
        if origin_allowed(route, host, inbound.headers):
            outcome = await self.enforcer.authorize(subject)
        else:
            outcome = await self.enforcer.refuse(subject, CROSS_ORIGIN)
        if outcome.verdict is not Verdict.ALLOWED:
            return self.render(outcome, inbound.html)
        headers = handshake_headers(inbound.headers, route, self.hidden_cookies)
        proto = self._proto(scope, inbound)
        chain = inbound.client.chain
        headers.extend(forwarding_headers(chain=chain, proto=proto, host=host, upstream_host=None))
        headers.extend(identity_pairs(outcome.identity_headers))
        query: bytes = scope.get("query_string", b"")
        return Admitted(
            route, upstream_uri(route, target.path, query), headers,
            tuple(scope.get("subprotocols") or ()), host if route.preserve_host else None,
            subject,
        )  # fmt: skip

    async def _connect(self, admitted: Admitted, html: bool) -> ClientConnection | Response:
        """The upstream connection, or the 502/504 (or the upstream's own refusal)."""
        route = admitted.route
        started = time.perf_counter()
        secure = admitted.uri.startswith("wss:")
        try:
            upstream = await _NoRedirects(
                admitted.uri,
                additional_headers=[(n.decode("latin-1"), v.decode("latin-1"))
                                    for n, v in admitted.headers],
                subprotocols=list(admitted.subprotocols) or None,  # type: ignore[arg-type]
                user_agent_header=None, proxy=None, open_timeout=route.connect_timeout_seconds,
                max_size=self.config.max_message_bytes,
                ping_interval=self.config.ping_interval_seconds,
                ping_timeout=self.config.ping_timeout_seconds,
                ssl=(self.upstream_tls or True) if secure else None,
                create_connection=_connection_class(admitted.host),
            )  # fmt: skip
        except InvalidStatus as exc:  # the upstream refused the handshake: pass it on
            status = exc.response.status_code
            self._observe(route, status, started)
            if 400 <= status <= 599:
                kind = exc.response.headers.get("Content-Type", "text/plain; charset=utf-8")
                headers = {**responses.SECURITY_HEADERS, "content-type": kind}
                return Response(bytes(exc.response.body or b""), status, headers)
            return self._failure(route, 502, started, html, "a redirect or odd status")
        except TimeoutError:
            return self._failure(route, 504, started, html, "handshake timeout")
        except (OSError, WebSocketException, ValueError) as exc:
            return self._failure(route, 502, started, html, type(exc).__name__)
        self._observe(route, 101, started)
        return upstream

    def _failure(
        self, route: RouteConfig, status: int, started: float, html: bool, what: str
    ) -> Response:
        log.warning("websocket upstream %s for route %s: %s", status, route.name, what)
        self._observe(route, status, started)
        if status == 504:
            return responses.error(504, "The upstream service did not answer in time.", html=html)
        return responses.error(502, "The upstream service is unavailable.", html=html)

    def _observe(self, route: RouteConfig, status: int, started: float) -> None:
        if self.metrics is not None:
            self.metrics.upstream(route.name, status, time.perf_counter() - started)

    async def _refuse(self, scope: Scope, send: Send, response: Response) -> None:
        """Answer the handshake with ``response`` (or close 1008/1011 without the
        ``websocket.http.response`` extension)."""
        if HTTP_RESPONSE not in (scope.get("extensions") or {}):
            code = 1008 if response.status_code < 500 else 1011
            with contextlib.suppress(OSError):
                await send({"type": "websocket.close", "code": code})
            return
        headers = [(n, v) for n, v in response.raw_headers]
        if self.hsts is not None and scope.get("scheme") == "wss":
            headers.append((b"strict-transport-security", self.hsts.encode("ascii")))
        with contextlib.suppress(OSError):
            await send({"type": "websocket.http.response.start",
                        "status": response.status_code, "headers": headers})  # fmt: skip
            await send({"type": "websocket.http.response.body", "body": response.body})

    async def _relay(
        self,
        receive: Receive,
        send: Send,
        upstream: ClientConnection,
        subject: Subject,
        scope: Scope,
    ) -> None:
        """Pump messages both ways until one side closes (the other gets its code), or
        until the connection is no longer allowed (both get closed)."""
        from_client = asyncio.create_task(self._from_client(receive, upstream))
        from_upstream = asyncio.create_task(self._from_upstream(send, upstream))
        watch = asyncio.create_task(self._watch(subject, scope))
        tasks = {from_client, from_upstream, watch}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if watch in done and from_client not in done and from_upstream not in done:
                reason = watch.result()
                with contextlib.suppress(OSError, RuntimeError):
                    await send({"type": "websocket.close", "code": 1008, "reason": reason})
                with contextlib.suppress(Exception):
                    await upstream.close(1001, "the client's access ended")
            elif from_client in done:  # the upstream is closing: let its task see the end
                await asyncio.wait({from_upstream}, timeout=upstream.close_timeout or 10)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await upstream.close()

    async def _watch(self, subject: Subject, scope: Scope) -> str:
        """Decide the open connection again every ``reauthorize_seconds`` (continuous
        verification: expired or revoked credentials, a new policy or an ended grant end
        it) and end it at ``max_lifetime_seconds``; returns the close reason."""
        started = time.monotonic()
        limit = self.config.max_lifetime_seconds
        while True:
            wait = self.config.reauthorize_seconds
            if limit is not None:
                wait = min(wait, max(0.0, started + limit - time.monotonic()))
            await asyncio.sleep(wait)
            if limit is not None and time.monotonic() - started >= limit:
                return "connection lifetime reached"
            if subject.route.mtls != "off":  # the certificate again: it may have expired
                subject = replace(subject, peer=self.certificates.peer(scope))
            outcome = await self.enforcer.authorize(subject)
            if outcome.verdict is not Verdict.ALLOWED:
                log.info("websocket on route %s closed: access re-checked and refused",
                         subject.route.name)  # fmt: skip
                return "access re-checked and refused"

    @staticmethod
    async def _from_client(receive: Receive, upstream: ClientConnection) -> None:
        try:
            while True:
                message = await receive()
                if message["type"] == "websocket.receive":
                    data = message.get("bytes")
                    await upstream.send(data if data is not None else message.get("text") or "")
                elif message["type"] == "websocket.disconnect":
                    code = sendable(message.get("code"), 1001)  # 1006: the client went away
                    await upstream.close(code, message.get("reason") or "")
                    return
        except ConnectionClosed:
            return  # the upstream ended first; its task tells the client

    @staticmethod
    async def _from_upstream(send: Send, upstream: ClientConnection) -> None:
        try:
            while True:
                data = await upstream.recv()
                if isinstance(data, str):
                    await send({"type": "websocket.send", "text": data})
                else:
                    await send({"type": "websocket.send", "bytes": data})
        except ConnectionClosed as exc:
            code, reason = upstream_close_code(exc)
            with contextlib.suppress(OSError, RuntimeError):
                await send({"type": "websocket.close", "code": code, "reason": reason})
        except OSError:
            return  # the client is gone; its task closes the upstream

    @staticmethod
    def _proto(scope: Scope, inbound: Inbound) -> str:
        if inbound.client.peer_trusted:
            value = single_header(inbound.headers, b"x-forwarded-proto")
            if value in ("http", "https"):
                return value
        return "https" if scope.get("scheme") == "wss" else "http"
