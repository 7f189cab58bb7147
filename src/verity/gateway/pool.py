"""Upstream connections: what the proxy sends, what it gets back, and the keep-alive pool.

The proxy talks to an ``Upstream``: ``send(UpstreamRequest)`` returns an
``UpstreamResponse`` whose body streams in chunks, or raises an ``UpstreamError`` that
names the status the client gets (502 unavailable, 503 pool exhausted, 504 timeout).

The proxy's default is ``verity.gateway.upstream_client.LeanUpstreamPool`` (HTTP/1.1
spoken directly on asyncio; ``gateway.upstream_pool.client: lean``). ``UpstreamPool``
here is the other choice (``client: aiohttp``): aiohttp's HTTP/1.1 client (its C parser
and header writer cost a fraction of httpx/httpcore/h11's CPU per request;
benchmarks/upstream_client.py measures the three side by side), set up as a reverse
proxy needs it: no cookie jar (an upstream's ``Set-Cookie`` is never replayed for another
user), no redirects followed, no automatic decompression, no default headers, no proxy
from the environment, the request path and query exactly as given. A semaphore bounds the
requests in flight at ``max_connections``; waiting longer than the connect timeout for a
slot is a 503.

``HttpxUpstream`` adapts any ``httpx.AsyncBaseTransport`` (tests use
``httpx.ASGITransport`` to serve an upstream app in-process).
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import httpx
from yarl import URL

Headers = list[tuple[bytes, bytes]]
# aiohttp's defaults (and a streamed body's Content-Type) are never added: only the
# client's headers and the gateway's own reach an upstream.
_SKIPPED_DEFAULTS = frozenset({"Accept", "Accept-Encoding", "User-Agent", "Content-Type"})
_UNSAFE_QUERY = re.compile(rb"[^\x21-\x7e]")
_MAX_FIELD = 16 * 1024  # a response header line (h11's whole-block default was 16 KiB)


class UpstreamError(Exception):
    """The upstream request failed; ``status`` is what the client is answered."""

    status = 502
    public_message = "The upstream service is unavailable."


class UpstreamTimeoutError(UpstreamError):
    """Connecting to, or waiting for bytes from, the upstream took too long (504)."""

    status = 504
    public_message = "The upstream service did not answer in time."


class PoolExhaustedError(UpstreamError):
    """No upstream connection slot became free within the connect timeout (503)."""

    status = 503
    public_message = "The service is busy; try again shortly."


class MalformedHeaderError(UpstreamError):
    """A request header cannot be passed on byte for byte (400): not UTF-8 for aiohttp;
    not a token name, or a value with CR, LF or NUL, for any client."""

    status = 400
    public_message = "Malformed request header."


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """One request for an upstream: ``target`` is the percent-encoded path, sent as is."""

    method: str
    scheme: str
    host: str
    port: int | None
    target: str
    query: bytes
    headers: Headers
    body: AsyncIterator[bytes] | None
    connect_timeout: float
    read_timeout: float


class UpstreamResponse(Protocol):
    """An upstream's status line and headers; the body streams from ``read``."""

    status: int
    headers: Headers

    async def read(self) -> bytes:
        """The next body bytes as they arrive (de-chunked, never decompressed), ``b""`` at
        the end; ``UpstreamError`` when the upstream fails mid-body."""
        ...

    def done(self) -> bool:
        """True once the whole body was read."""
        ...

    async def aclose(self) -> None:
        """Give the connection back (or close it when the body was not read to its end)."""
        ...


class Upstream(Protocol):
    """Sends upstream requests (``UpstreamPool``, ``HttpxUpstream``)."""

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        """The upstream's response head; raises ``UpstreamError``."""
        ...

    async def aclose(self) -> None:
        """Close every idle connection."""
        ...


def encoded_query(raw: bytes) -> str:
    """The query string as sent; bytes outside printable ASCII are percent-encoded."""
    if _UNSAFE_QUERY.search(raw) is not None:
        raw = _UNSAFE_QUERY.sub(lambda m: b"%%%02X" % m[0][0], raw)
    return raw.decode("ascii")


def _header_values(headers: Headers) -> list[tuple[str, str]]:
    """aiohttp headers (it writes UTF-8): names and values keep their exact bytes."""
    try:
        return [(name.decode("ascii"), value.decode()) for name, value in headers]
    except UnicodeDecodeError:
        raise MalformedHeaderError("a request header is not UTF-8") from None


class _PooledResponse:
    """An aiohttp response that gives its pool slot back exactly once."""

    __slots__ = ("_pool", "_released", "_response", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse, pool: UpstreamPool) -> None:
        self._response = response
        self._pool = pool
        self._released = False
        self.status = response.status
        self.headers = list(response.raw_headers)

    async def read(self) -> bytes:
        try:
            return await self._response.content.readany()
        except TimeoutError:
            raise UpstreamTimeoutError("the upstream stopped sending mid-response") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"the upstream failed mid-response: {type(exc).__name__}") from None

    def done(self) -> bool:
        return self._response.content.at_eof()

    async def aclose(self) -> None:
        if self._released:
            return
        self._released = True
        try:
            self._response.release()  # closes the connection if the body was not all read
        finally:
            self._pool.release_slot()


class UpstreamPool:
    """aiohttp keep-alive connections to every upstream, at most ``max_connections`` busy.

    Idle connections close after ``keepalive_expiry`` seconds; ``max_idle`` 0 (or an
    expiry of 0) turns keep-alive off. Otherwise the idle connections are those left
    over from the busiest recent moment, so at most ``max_connections``. The aiohttp
    session is made on first use, in the event loop that serves requests.
    """

    def __init__(
        self,
        *,
        max_connections: int,
        max_idle: int,
        keepalive_expiry: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.keep_alive = max_idle > 0 and keepalive_expiry > 0
        self.keepalive_expiry = keepalive_expiry
        self._ssl = ssl_context
        self._slots = asyncio.Semaphore(max_connections)
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[float, float], aiohttp.ClientTimeout] = {}

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=0,  # the semaphore bounds busy connections (a full pool is a 503)
                force_close=not self.keep_alive,
                keepalive_timeout=self.keepalive_expiry if self.keep_alive else None,
                ssl=self._ssl if self._ssl is not None else True,
                ttl_dns_cache=10,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                trust_env=False,
                skip_auto_headers=_SKIPPED_DEFAULTS,
                max_line_size=_MAX_FIELD,
                max_field_size=_MAX_FIELD,
                timeout=aiohttp.ClientTimeout(),
            )
        return self._session

    def _timeout(self, connect: float, read: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get((connect, read))
        if timeout is None:
            timeout = aiohttp.ClientTimeout(sock_connect=connect, sock_read=read)
            self._timeouts[(connect, read)] = timeout
        return timeout

    async def _acquire(self, timeout: float) -> None:
        if not self._slots.locked():
            await self._slots.acquire()  # a free slot: returns without suspending
            return
        try:
            async with asyncio.timeout(timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise PoolExhaustedError("no upstream connection became free in time") from None

    def release_slot(self) -> None:
        """A request is done with its connection."""
        self._slots.release()

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        """Send ``request`` and wait for the response head; raises ``UpstreamError``."""
        headers = _header_values(request.headers)
        url = URL.build(
            scheme=request.scheme, host=request.host, port=request.port, path=request.target,
            query_string=encoded_query(request.query), encoded=True,
        )  # fmt: skip
        await self._acquire(request.connect_timeout)
        try:
            response = await self._client().request(
                request.method, url, headers=headers, data=request.body,
                allow_redirects=False,
                timeout=self._timeout(request.connect_timeout, request.read_timeout),
            )  # fmt: skip
        except BaseException as exc:
            self._slots.release()
            if isinstance(exc, TimeoutError):
                raise UpstreamTimeoutError("the upstream did not answer in time") from None
            if isinstance(exc, aiohttp.ClientError | OSError | ValueError):  # ValueError: a
                # header aiohttp refuses to write; never a partial request upstream
                raise UpstreamError(f"upstream request failed: {type(exc).__name__}") from None
            raise
        return _PooledResponse(response, self)

    async def aclose(self) -> None:
        """Close every connection (at shutdown)."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()


class _HttpxResponse:
    __slots__ = ("_done", "_parts", "_response", "headers", "status")

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._parts = response.aiter_raw()
        self._done = False
        self.status = response.status_code
        self.headers = list(response.headers.raw)

    async def read(self) -> bytes:
        chunk = b""
        try:
            while not chunk and not self._done:
                try:
                    chunk = await anext(self._parts)
                except StopAsyncIteration:
                    self._done = True
        except httpx.TimeoutException:
            raise UpstreamTimeoutError("the upstream stopped sending mid-response") from None
        except httpx.HTTPError as exc:
            raise UpstreamError(f"the upstream failed mid-response: {type(exc).__name__}") from None
        return chunk

    def done(self) -> bool:
        return self._done

    async def aclose(self) -> None:
        await self._response.aclose()


class HttpxUpstream:
    """An ``Upstream`` over an ``httpx.AsyncBaseTransport`` (no client: no cookies,
    redirects or default headers)."""

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self.transport = transport

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        url = httpx.URL(
            scheme=request.scheme, host=request.host, port=request.port, path=request.target,
            query=request.query,
        )  # fmt: skip
        outgoing = httpx.Request(request.method, url, headers=request.headers, content=request.body)
        connect, read = request.connect_timeout, request.read_timeout
        outgoing.extensions["timeout"] = {"connect": connect, "read": read, "write": read,
                                          "pool": connect}  # fmt: skip
        try:
            response = await self.transport.handle_async_request(outgoing)
        except httpx.PoolTimeout:
            raise PoolExhaustedError("no upstream connection became free in time") from None
        except httpx.TimeoutException:
            raise UpstreamTimeoutError("the upstream did not answer in time") from None
        except httpx.HTTPError as exc:
            raise UpstreamError(f"upstream request failed: {type(exc).__name__}") from None
        response.request = outgoing
        return _HttpxResponse(response)

    async def aclose(self) -> None:
        await self.transport.aclose()


def as_upstream(transport: Upstream | httpx.AsyncBaseTransport) -> Upstream:
    """``transport`` as an ``Upstream`` (an httpx transport is adapted)."""
    if isinstance(transport, httpx.AsyncBaseTransport):
        return HttpxUpstream(transport)
    return transport
