"""Forwarding an allowed request upstream and streaming the answer back.

Bodies stream both ways in chunks: nothing is buffered whole. The request body is
counted as it streams; a declared ``Content-Length`` over the route's limit is refused
with 413 before any connection to the upstream, and a chunked body that grows past it is
cut off (the upstream sees an aborted request, the client 413). A body must arrive within
``gateway.body_timeout_seconds`` plus one second per KiB (1 KiB/s on average): a slower
one is cut off the same way (the client 408, its connection closed), so that a trickled
body cannot hold a connection and an upstream slot forever. A connect failure or an
upstream that closes early is 502, a timeout 504, an exhausted pool 503 (see ``pool``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from . import responses
from .headers import RawHeaders, response_headers, upstream_headers
from .pool import (
    Upstream,
    UpstreamError,
    UpstreamPool,
    UpstreamRequest,
    UpstreamResponse,
    as_upstream,
)
from .settings import RouteConfig, UpstreamPoolConfig
from .upstream_client import LeanUpstreamPool

log = logging.getLogger("verity.gateway")
_TOO_LARGE = "The request body is too large."
_TOO_SLOW = "The request body was not received in time."
MIN_BODY_RATE = 1024  # bytes per second a body must average beyond body_timeout_seconds


class BodyTooLargeError(Exception):
    """The request body grew past the route's limit while streaming."""


class BodyTimeoutError(Exception):
    """The request body did not arrive in time (``body_timeout_seconds``, ``MIN_BODY_RATE``)."""


class ClientGoneError(Exception):
    """The client disconnected before its request body was complete."""


def new_transport(pool: UpstreamPoolConfig) -> Upstream:
    """The upstream connection pool: the lean HTTP/1.1 client (``upstream_client``) or,
    with ``client: aiohttp``, aiohttp's (``pool``)."""
    kind = LeanUpstreamPool if pool.client == "lean" else UpstreamPool
    return kind(
        max_connections=pool.max_connections,
        max_idle=pool.max_keepalive_connections,
        keepalive_expiry=pool.keepalive_expiry_seconds,
        ssl_context=httpx.create_ssl_context(),  # the same CA bundle as the rest of Verity
    )


def declared_length(raw: RawHeaders) -> int | None:
    """The request's ``Content-Length`` (the server already rejected malformed ones)."""
    for name, value in raw:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def has_body(raw: RawHeaders) -> bool:
    """True when the request declares a body (a length above 0, or chunked)."""
    length = declared_length(raw)
    return (length is not None and length > 0) or any(n == b"transfer-encoding" for n, _ in raw)


class RequestBody:
    """The client's request body, chunk by chunk, refusing to go past ``limit`` bytes or to
    take longer than ``timeout`` seconds plus one per ``MIN_BODY_RATE`` bytes received.

    The upstream client reads ``chunks()`` (possibly in a task of its own), so how the
    body ended is also kept here: ``too_large``, ``timed_out`` or ``client_gone``.
    """

    __slots__ = ("client_gone", "limit", "receive", "timed_out", "timeout", "too_large")

    def __init__(self, receive: Receive, limit: int, timeout: float = 30.0) -> None:
        self.receive = receive
        self.limit = limit
        self.timeout = timeout
        self.too_large = False
        self.timed_out = False
        self.client_gone = False

    async def chunks(self) -> AsyncIterator[bytes]:
        total = 0
        deadline = asyncio.get_running_loop().time() + self.timeout
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    message = await self.receive()
            except TimeoutError:
                self.timed_out = True
                raise BodyTimeoutError from None
            if message["type"] == "http.disconnect":
                self.client_gone = True
                raise ClientGoneError
            chunk: bytes = message.get("body", b"")
            total += len(chunk)
            if total > self.limit:
                self.too_large = True
                raise BodyTooLargeError
            deadline += len(chunk) / MIN_BODY_RATE
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return


class BodyDeadline:
    """``receive``/``send`` for the gateway's own apps (login, embedded IdP), which read
    request bodies themselves: the body must arrive as fast as a forwarded one
    (``timeout`` plus one second per ``MIN_BODY_RATE`` bytes). When it does not, the
    client gets 408 with ``Connection: close``, the app ``http.disconnect``, and what the
    app sends or raises afterwards is dropped (``expired``)."""

    __slots__ = ("_body_done", "_deadline", "_receive", "_send", "_started", "expired")

    def __init__(self, receive: Receive, send: Send, timeout: float) -> None:
        self._receive = receive
        self._send = send
        self._deadline = asyncio.get_running_loop().time() + timeout
        self._started = False
        self._body_done = False
        self.expired = False

    async def receive(self) -> Message:
        if self.expired:
            return {"type": "http.disconnect"}
        if self._body_done:  # waiting for a disconnect (streaming responses): no deadline
            return await self._receive()
        try:
            async with asyncio.timeout_at(self._deadline):
                message = await self._receive()
        except TimeoutError:
            self.expired = True
            if not self._started:
                await self._send({"type": "http.response.start", "status": 408,
                                  "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                              (b"connection", b"close")]})  # fmt: skip
                await self._send({"type": "http.response.body", "body": _TOO_SLOW.encode()})
            return {"type": "http.disconnect"}
        self._deadline += len(message.get("body", b"")) / MIN_BODY_RATE
        self._body_done = message["type"] != "http.request" or not message.get("more_body")
        return message

    async def send(self, message: Message) -> None:
        if self.expired:
            return
        self._started = True
        await self._send(message)


def stream_body(receive: Receive, limit: int, timeout: float = 30.0) -> AsyncIterator[bytes]:
    """The request body chunk by chunk, refusing to go past ``limit`` bytes (or slow)."""
    return RequestBody(receive, limit, timeout).chunks()


class UpstreamProxy:
    """Sends allowed requests to their route's upstream through one ``Upstream`` (pool)."""

    def __init__(
        self, transport: Upstream | httpx.AsyncBaseTransport, *, body_timeout: float = 30.0
    ) -> None:
        self.upstream = as_upstream(transport)
        self.body_timeout = body_timeout
        self._bases: dict[str, tuple[str, str, int | None, str]] = {}

    def _base(self, upstream: str) -> tuple[str, str, int | None, str]:
        base = self._bases.get(upstream)
        if base is None:
            parts = urlsplit(upstream)
            base = (parts.scheme, parts.hostname or "", parts.port, parts.path.rstrip("/"))
            self._bases[upstream] = base
        return base

    def base_path(self, route: RouteConfig) -> str:
        """The path of ``route.upstream`` (``""`` for none): what the upstream receives
        before the canonical path."""
        return self._base(route.upstream or "")[3]

    def build(
        self,
        route: RouteConfig,
        *,
        method: str,
        path: str,
        query: bytes,
        headers: list[tuple[bytes, bytes]],
        content: AsyncIterator[bytes] | None,
    ) -> UpstreamRequest:
        """The upstream request (``route.upstream`` must be set)."""
        scheme, host, port, prefix = self._base(route.upstream or "")
        return UpstreamRequest(
            method, scheme, host, port, prefix + path, query, headers, content,
            route.connect_timeout_seconds, route.read_timeout_seconds,
        )  # fmt: skip

    async def forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        route: RouteConfig,
        raw: RawHeaders,
        added: list[tuple[bytes, bytes]],
        path: str,
        html: bool,
        hidden_cookies: frozenset[str] = frozenset(),
    ) -> None:
        """Forward the request and stream the response; answer errors as 4xx/5xx."""
        length = declared_length(raw)
        if length is not None and length > route.max_body_bytes:
            await responses.error(413, _TOO_LARGE, html=html)(scope, receive, send)
            return
        headers = self._headers(route, raw, added, hidden_cookies)
        body = (
            RequestBody(receive, route.max_body_bytes, self.body_timeout) if has_body(raw) else None
        )
        request = self.build(
            route, method=scope["method"], path=path, query=scope.get("query_string", b""),
            headers=headers, content=body.chunks() if body is not None else None,
        )  # fmt: skip
        try:
            upstream = await self.upstream.send(request)
        except (UpstreamError, BodyTooLargeError, BodyTimeoutError, ClientGoneError) as exc:
            if body is None or not body.client_gone:
                await self._failure(exc, route, body, html)(scope, receive, send)
            return
        if body is not None and (body.too_large or body.timed_out or body.client_gone):
            await upstream.aclose()  # answered, but the body was cut off: never relayed
            if not body.client_gone:
                await self._failure(None, route, body, html)(scope, receive, send)
            return
        await relay(upstream, route.name, send)

    async def open(
        self,
        route: RouteConfig,
        *,
        method: str,
        query: bytes,
        raw: RawHeaders,
        added: list[tuple[bytes, bytes]],
        path: str,
        html: bool,
        hidden_cookies: frozenset[str] = frozenset(),
    ) -> UpstreamResponse | Response:
        """Send a request without a body (``verity.gateway.fast_path``): the upstream's
        response head to relay, or the error response (502/503/504) for the client."""
        request = self.build(
            route, method=method, path=path, query=query,
            headers=self._headers(route, raw, added, hidden_cookies), content=None,
        )  # fmt: skip
        try:
            return await self.upstream.send(request)
        except UpstreamError as exc:
            return self._failure(exc, route, None, html)

    @staticmethod
    def _headers(
        route: RouteConfig,
        raw: RawHeaders,
        added: list[tuple[bytes, bytes]],
        hidden_cookies: frozenset[str],
    ) -> list[tuple[bytes, bytes]]:
        """The client's headers as cleaned for ``route``, then the gateway's own."""
        headers = upstream_headers(
            raw, forward_authorization=route.forward_authorization, hidden_cookies=hidden_cookies
        )
        headers.extend(added)
        return headers

    def _failure(
        self, exc: Exception | None, route: RouteConfig, body: RequestBody | None, html: bool
    ) -> Response:
        if isinstance(exc, BodyTooLargeError) or (body is not None and body.too_large):
            return responses.error(413, _TOO_LARGE, html=html)
        if isinstance(exc, BodyTimeoutError) or (body is not None and body.timed_out):
            response = responses.error(408, _TOO_SLOW, html=html)
            response.headers["connection"] = "close"  # the rest of the body is not read
            return response
        status, message = 502, UpstreamError.public_message
        if isinstance(exc, UpstreamError):
            status, message = exc.status, exc.public_message
        if status >= 500:
            log.warning("upstream %s for route %s: %s", status, route.name, exc)
        return responses.error(status, message, html=html)


async def relay(upstream: UpstreamResponse, route: str, send: Send) -> None:
    """Stream ``upstream`` to the client as it arrives; a failure mid-body aborts it."""
    try:
        headers = response_headers(upstream.headers)
        await send({"type": "http.response.start", "status": upstream.status,
                    "headers": headers})  # fmt: skip
        more = True
        while more:
            chunk = await upstream.read()
            more = not upstream.done()  # the last bytes go with more_body False
            await send({"type": "http.response.body", "body": chunk, "more_body": more})
    except UpstreamError as exc:
        log.warning("upstream for route %s failed mid-response: %s", route, exc)
        raise
    finally:
        await upstream.aclose()


def forwarding_headers(
    *, chain: tuple[str, ...], proto: str, host: str, upstream_host: str | None
) -> list[tuple[bytes, bytes]]:
    """X-Forwarded-For/Proto/Host (as verified by the gateway) and, if set, Host."""
    pairs = [
        (b"x-forwarded-for", ", ".join(chain).encode("latin-1")),
        (b"x-forwarded-proto", proto.encode("latin-1")),
        (b"x-forwarded-host", host.encode("latin-1")),
    ]
    if upstream_host is not None:
        pairs.append((b"host", upstream_host.encode("latin-1")))
    return pairs


def identity_pairs(headers: Mapping[str, str] | tuple[tuple[str, str], ...]) -> list[Any]:
    """Identity headers as ASGI byte pairs."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in items]
