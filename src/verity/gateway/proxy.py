"""Forwarding an allowed request upstream and streaming the answer back (httpx).

Bodies stream both ways in chunks: nothing is buffered whole. The request body is
counted as it streams; a declared ``Content-Length`` over the route's limit is refused
with 413 before any connection to the upstream, and a chunked body that grows past it is
cut off (the upstream sees an aborted request, the client 413). A connect failure or an
upstream that closes early is 502, a timeout 504, an exhausted pool 503.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from . import responses
from .headers import RawHeaders, response_headers, upstream_headers
from .pool import PooledTransport
from .settings import RouteConfig, UpstreamPoolConfig

log = logging.getLogger("verity.gateway")


class BodyTooLargeError(Exception):
    """The request body grew past the route's limit while streaming."""


class ClientGoneError(Exception):
    """The client disconnected before its request body was complete."""


def new_transport(pool: UpstreamPoolConfig) -> httpx.AsyncBaseTransport:
    """The upstream transport: an exclusive-checkout keep-alive pool, no proxy from env.

    Requests go to the transport directly, not through ``httpx.AsyncClient``: no cookie
    jar (an upstream's ``Set-Cookie`` must never be replayed for another user), no
    redirects, no auth, no default headers.
    """
    return PooledTransport(
        max_connections=pool.max_connections,
        max_idle=pool.max_keepalive_connections,
        keepalive_expiry=pool.keepalive_expiry_seconds,
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


async def stream_body(receive: Receive, limit: int) -> AsyncIterator[bytes]:
    """The request body chunk by chunk, refusing to go past ``limit`` bytes."""
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGoneError
        chunk: bytes = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise BodyTooLargeError
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


def _timeout(route: RouteConfig) -> dict[str, float]:
    read = route.read_timeout_seconds
    connect = route.connect_timeout_seconds
    return {"connect": connect, "read": read, "write": read, "pool": connect}


class UpstreamProxy:
    """Sends allowed requests to their route's upstream through one transport (pool)."""

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self.transport = transport

    def build(
        self,
        route: RouteConfig,
        *,
        method: str,
        path: str,
        query: bytes,
        headers: list[tuple[bytes, bytes]],
        content: AsyncIterator[bytes] | None,
    ) -> httpx.Request:
        """The upstream request (``route.upstream`` must be set)."""
        base = urlsplit(route.upstream or "")
        target = base.path.rstrip("/") + path
        url = httpx.URL(
            scheme=base.scheme, host=base.hostname or "", port=base.port,
            path=target, query=query,
        )  # fmt: skip
        request = httpx.Request(method, url, headers=headers, content=content)
        request.extensions["timeout"] = _timeout(route)
        return request

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
        """Forward the request and stream the response; answer errors as 413/502/503/504."""
        length = declared_length(raw)
        if length is not None and length > route.max_body_bytes:
            await responses.error(413, "The request body is too large.", html=html)(
                scope, receive, send
            )
            return
        headers = upstream_headers(
            raw, forward_authorization=route.forward_authorization, hidden_cookies=hidden_cookies
        )
        headers.extend(added)
        content = stream_body(receive, route.max_body_bytes) if has_body(raw) else None
        request = self.build(
            route, method=scope["method"], path=path, query=scope.get("query_string", b""),
            headers=headers, content=content,
        )  # fmt: skip
        try:
            upstream = await self.transport.handle_async_request(request)
            upstream.request = request
        except ClientGoneError:
            return
        except (BodyTooLargeError, httpx.HTTPError) as exc:
            await self._failure(exc, route, html)(scope, receive, send)
            return
        await relay(upstream, route.name, send)

    def _failure(self, exc: Exception, route: RouteConfig, html: bool) -> Response:
        if isinstance(exc, BodyTooLargeError):
            return responses.error(413, "The request body is too large.", html=html)
        if isinstance(exc, httpx.PoolTimeout):
            status, message = 503, "The service is busy; try again shortly."
        elif isinstance(exc, httpx.TimeoutException):
            status, message = 504, "The upstream service did not answer in time."
        else:
            status, message = 502, "The upstream service is unavailable."
        log.warning("upstream %s for route %s: %s", status, route.name, type(exc).__name__)
        return responses.error(status, message, html=html)


async def relay(upstream: httpx.Response, route: str, send: Send) -> None:
    """Stream ``upstream`` to the client as it arrives; a failure mid-body aborts it."""
    try:
        headers = response_headers(upstream.headers.raw)
        await send({"type": "http.response.start", "status": upstream.status_code,
                    "headers": headers})  # fmt: skip
        async for chunk in upstream.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except httpx.HTTPError as exc:
        log.warning("upstream for route %s failed mid-response: %s", route, type(exc).__name__)
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
