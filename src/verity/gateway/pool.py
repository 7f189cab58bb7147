"""A keep-alive connection pool for upstream requests, under httpx's transport API.

httpcore's own pool assigns every queued request to every idle connection at once and
retries the losers (``ConnectionNotAvailable``); under concurrency a proxied request
went round that loop about nine times (measured: benchmarks/gateway.py). This pool hands
each request one connection exclusively: a LIFO stack of idle HTTP/1.1 connections per
origin, a semaphore for ``max_connections`` (waiting at most the ``pool`` timeout), and
connections that expired or were closed by the server are dropped at checkout.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterable, AsyncIterator
from types import TracebackType

import httpcore
import httpx

Origin = httpcore.Origin
Connection = httpcore.AsyncHTTPConnection


def _key(origin: Origin) -> tuple[bytes, bytes, int]:
    return origin.scheme, origin.host, origin.port


class _Released:
    """A response body that gives its connection back when closed."""

    def __init__(
        self,
        stream: AsyncIterable[bytes],
        pool: UpstreamPool,
        conn: httpcore.AsyncHTTPConnection,
        origin: Origin,
    ) -> None:
        self._stream = stream
        self._pool = pool
        self._conn = conn
        self._origin = origin
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for part in self._stream:
                yield part
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close = getattr(self._stream, "aclose", None)
            if close is not None:
                await close()
        finally:
            await self._pool.release(self._conn, self._origin)


class UpstreamPool:
    """Exclusive checkout of keep-alive connections (the ``httpcore`` pool interface)."""

    def __init__(
        self,
        *,
        max_connections: int,
        max_idle: int,
        keepalive_expiry: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.max_idle = max_idle
        self.keepalive_expiry = keepalive_expiry
        self._ssl = ssl_context
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[tuple[bytes, bytes, int], list[Connection]] = {}
        self._idle_count = 0

    def _checkout(self, origin: Origin) -> tuple[Connection | None, list[Connection]]:
        stack = self._idle.get(_key(origin))
        expired: list[Connection] = []
        while stack:
            conn = stack.pop()
            self._idle_count -= 1
            if conn.is_available() and not conn.has_expired():
                return conn, expired
            expired.append(conn)
        return None, expired

    def _new(self, origin: Origin) -> httpcore.AsyncHTTPConnection:
        context = self._ssl if origin.scheme == b"https" else None
        return httpcore.AsyncHTTPConnection(
            origin, ssl_context=context, keepalive_expiry=self.keepalive_expiry
        )

    async def _acquire(self, request: httpcore.Request) -> None:
        timeout = request.extensions.get("timeout", {}).get("pool")
        try:
            await asyncio.wait_for(self._slots.acquire(), timeout)
        except TimeoutError:
            raise httpcore.PoolTimeout("no upstream connection became free in time") from None

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        """Send ``request`` on an exclusive connection; the body releases it when closed."""
        await self._acquire(request)
        conn, expired = self._checkout(request.url.origin)
        for old in expired:
            await old.aclose()
        conn = conn or self._new(request.url.origin)
        try:
            response = await conn.handle_async_request(request)
        except BaseException:
            self._slots.release()
            await conn.aclose()
            raise
        stream = response.stream
        if not isinstance(stream, AsyncIterable):  # pragma: no cover - httpcore always streams
            raise TypeError("upstream response stream is not async")
        response.stream = _Released(stream, self, conn, request.url.origin)
        return response

    async def release(self, conn: httpcore.AsyncHTTPConnection, origin: Origin) -> None:
        """Return ``conn`` to the idle stack if it can be reused, else close it."""
        self._slots.release()
        if conn.is_idle() and self._idle_count < self.max_idle:
            self._idle.setdefault(_key(origin), []).append(conn)
            self._idle_count += 1
        else:
            await conn.aclose()

    async def aclose(self) -> None:
        """Close every idle connection."""
        stacks, self._idle, self._idle_count = self._idle, {}, 0
        for stack in stacks.values():
            for conn in stack:
                await conn.aclose()

    async def __aenter__(self) -> UpstreamPool:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class PooledTransport(httpx.AsyncHTTPTransport):
    """``httpx.AsyncHTTPTransport`` whose connection pool is an ``UpstreamPool``."""

    def __init__(self, *, max_connections: int, max_idle: int, keepalive_expiry: float) -> None:
        super().__init__(trust_env=False)
        self._pool = UpstreamPool(  # type: ignore[assignment]
            max_connections=max_connections,
            max_idle=max_idle,
            keepalive_expiry=keepalive_expiry,
            ssl_context=httpx.create_ssl_context(),
        )
