"""The lean upstream client: HTTP/1.1 keep-alive connections spoken directly on asyncio.

``LeanUpstreamPool`` implements ``Upstream`` (``verity.gateway.pool``) with one
``asyncio.Protocol`` per connection and ``httptools.HttpResponseParser`` (llhttp, strict:
no leniency is turned on) for the responses. It is the proxy's default client
(``gateway.upstream_pool.client: lean``); aiohttp remains selectable (``aiohttp``). A
proxied request costs one ``transport.write`` for its head (and a first body chunk of up
to 16 KiB), no task, and a handful of parser callbacks: no URL object, no header
multidict, no cookie jar, no default headers, no redirects, no decompression.

Requests. The request line is ``METHOD target[?query] HTTP/1.1`` with the target exactly
as the proxy built it (the query's bytes outside printable ASCII percent-encoded, as
``encoded_query`` does for aiohttp). Header names and values are written byte for byte
as the proxy built them, after one final check: a name that is not a token, or a value
holding CR, LF or NUL, is refused before anything is sent (``MalformedHeaderError``, 400).
``Host`` is the upstream's (``host[:port]``) unless the proxy set one. A body with a
``Content-Length`` goes as is, and must be exactly that long (a longer or shorter one is
cut off: the connection is closed, the client gets 502); a body without one goes chunked
(any ``Transfer-Encoding`` the caller passed is dropped: framing is the client's, never
the caller's). Bodies stream from the async iterator with backpressure: when the socket
buffer is over its high-water mark the writer waits (``pause_writing``/``resume_writing``)
at most ``read_timeout`` seconds (then 504). A response that starts before the body is
all sent stops the sending; that connection is not reused.

Responses. The head must arrive within ``read_timeout``, and so must every later part
of the body (``UpstreamTimeoutError``, 504). A head over 64 KiB, a header line over
16 KiB or more than 100 headers, a value with CR/LF/NUL (obs-fold included),
``Content-Length`` together with ``Transfer-Encoding``, two differing or malformed
``Content-Length`` values, a ``Transfer-Encoding`` other than ``chunked``, ``101`` or
an upgrade are refused as ``MalformedResponseError`` (502) and the connection is closed:
a response whose framing two parsers could read differently is never relayed, and
never leaves bytes behind on a pooled connection (response smuggling/desync). 1xx
interim responses are skipped. HEAD, 204 and 304 responses have no body; a response
with neither length nor chunking is read until the upstream closes. Body bytes are
buffered up to 256 KiB per connection, then reading pauses until the proxy takes them.

Reuse. A connection goes back to the pool only after its response was read to its end
and both sides keep it alive (HTTP/1.1 without ``Connection: close``); after a HEAD it
is closed (the parser cannot be told the response has no body, so it is not trusted to
know where the next response starts). Bytes arriving on an idle connection close it.
Idle connections are reused newest first and closed after ``keepalive_expiry`` seconds;
at most ``max_idle`` are kept (0 turns keep-alive off: every request says
``Connection: close``). An idle connection the upstream closed is dropped when taken;
one it closes just as a request is written (no byte of a response came back) is tried
again once on a new connection, but only for an idempotent method without a body: a
POST, or any request whose body bytes were sent, is never sent twice.

Limits and errors. ``max_connections`` bounds the requests in flight; waiting longer
than the connect timeout for a slot is ``PoolExhaustedError`` (503). It bounds the open
connections too: a new connection first closes the oldest idle one (of any upstream)
when busy and idle ones together would exceed it. Connecting (TCP and
TLS) must finish within the connect timeout (504); a refused connection, a TLS failure,
a reset, or an upstream that closes early is ``UpstreamError`` (502). https upstreams
use the given ``ssl.SSLContext`` (the proxy passes the same verifying context as the
rest of Verity) with SNI and host name checks for the upstream's host.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import AsyncIterator

import httptools

from .pool import (
    Headers,
    MalformedHeaderError,
    PoolExhaustedError,
    UpstreamError,
    UpstreamRequest,
    UpstreamResponse,
    UpstreamTimeoutError,
    encoded_query,
)

MAX_RESPONSE_HEAD = 64 * 1024  # status line and headers together
MAX_RESPONSE_FIELD = 16 * 1024  # one header line (as aiohttp's max_field_size in ``pool``)
MAX_RESPONSE_HEADERS = 100
READ_BUFFER = 256 * 1024  # response body bytes buffered before reading pauses
SMALL_BODY = 16 * 1024  # a first body chunk up to this size goes in the head's write
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_BAD_VALUE = re.compile(rb"[\r\n\x00]")
_NOT_TOKEN = re.compile(rb"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f-\U0010ffff]")
_CHUNK_END = b"0\r\n\r\n"


class MalformedResponseError(UpstreamError):
    """The upstream's response is malformed or ambiguously framed (502)."""

    public_message = "The upstream service sent a malformed response."


class _HeadDoneError(Exception):
    """Raised from ``on_headers_complete`` of a HEAD response: its body is never parsed."""


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class _Connection(asyncio.Protocol):
    """One upstream connection: the protocol, the response parser and its state."""

    __slots__ = (
        "_body", "_buffered", "_cl", "_drain", "_field_count", "_head_bytes", "_interim",
        "_loop", "_paused_reading", "_te", "_waiter", "_write_paused", "active",
        "closed", "complete", "error", "head_done", "head_request", "headers", "idle_since",
        "keep_alive", "key", "no_reuse", "parser", "received", "status", "transport",
        "until_close",
    )  # fmt: skip

    def __init__(self, key: tuple[str, str, int], loop: asyncio.AbstractEventLoop) -> None:
        self.key = key
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self.active = False
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused_reading = False
        self._reset(head_request=False)

    def _reset(self, *, head_request: bool) -> None:
        self.head_request = head_request
        self.error: UpstreamError | None = None
        self.received = False
        self.status = 0
        self.headers: Headers = []
        self._head_bytes = 0
        self._field_count = 0
        self._cl: bytes | None = None
        self._te: bytes | None = None
        self._interim = False
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.until_close = False
        self.no_reuse = False
        self._body: list[bytes] = []
        self._buffered = 0

    # The request side.

    def start(self, *, head_request: bool) -> None:
        """A new request is about to be written on this connection."""
        self._reset(head_request=head_request)
        self.active = True
        if self._paused_reading and self.transport is not None:
            self._paused_reading = False  # the last response ended with its body unread
            self.transport.resume_reading()

    def write(self, data: bytes) -> None:
        if self.closed or self.transport is None:
            raise self.error or UpstreamError("the upstream connection is closed")
        self.transport.write(data)

    async def drain(self, timeout: float) -> None:
        """Wait until the socket takes more bytes (at most ``timeout``; a head or a
        closed connection also ends the wait)."""
        if not self._write_paused or self.head_done or self.closed:
            return
        waiter = self._loop.create_future()
        self._drain = waiter
        handle = self._loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        except TimeoutError:
            raise UpstreamTimeoutError("the upstream did not take the request body") from None
        finally:
            handle.cancel()
            self._drain = None

    async def wait(self, timeout: float) -> None:
        """Wait for more of the response (``TimeoutError`` after ``timeout``)."""
        waiter = self._loop.create_future()
        self._waiter = waiter
        handle = self._loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            handle.cancel()
            self._waiter = None

    def take_body(self) -> bytes:
        parts = self._body
        chunk = parts[0] if len(parts) == 1 else b"".join(parts)
        self._body = []
        self._buffered = 0
        if self._paused_reading and self.transport is not None and not self.closed:
            self._paused_reading = False
            self.transport.resume_reading()
        return chunk

    def has_body(self) -> bool:
        return bool(self._body)

    def reusable(self) -> bool:
        return (
            self.complete
            and self.keep_alive
            and not self.no_reuse
            and not self.head_request
            and not self.closed
            and self.error is None
        )

    def close(self) -> None:
        self.active = False
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.abort()  # nothing more is owed to this upstream

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.active or self.complete:
            self._fail(MalformedResponseError("the upstream sent bytes nobody asked for"))
            self.close()
            return
        self.received = True
        if not self.head_done:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _HeadDoneError):
                self.complete = True  # a HEAD response: the connection is not reused
            elif isinstance(cause, UpstreamError):
                self._fail(cause)
            else:
                self._fail(MalformedResponseError(f"bad response: {type(cause).__name__}"))
        except httptools.HttpParserUpgrade:
            self._fail(MalformedResponseError("the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(MalformedResponseError(f"unparseable response: {exc}"))
        if not self.head_done and self._head_bytes > MAX_RESPONSE_HEAD:
            self._fail(MalformedResponseError("the response head is too large"))
        _wake(self._waiter)
        if self.head_done:
            _wake(self._drain)

    def eof_received(self) -> bool:
        return False  # the transport closes; connection_lost settles the response

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.active and not self.complete and self.error is None:
            if self.until_close and self.head_done:
                self.complete = True  # the body ran until the upstream closed
            elif self.received:
                self.error = UpstreamError("the upstream closed the connection mid-response")
            else:
                self.error = UpstreamError("the upstream closed the connection unanswered")
        _wake(self._waiter)
        _wake(self._drain)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        _wake(self._drain)

    def _fail(self, error: UpstreamError) -> None:
        if self.error is None:
            self.error = error
        self.close()
        _wake(self._waiter)
        _wake(self._drain)

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self.complete:  # bytes after the response: never read as another one
            raise MalformedResponseError("the upstream sent more than one response")
        self.headers = []
        self._field_count = 0
        self._cl = self._te = None

    def on_header(self, name: bytes, value: bytes) -> None:
        self._field_count += 1
        if self._field_count > MAX_RESPONSE_HEADERS:
            raise MalformedResponseError("the response has too many headers")
        if len(name) + len(value) > MAX_RESPONSE_FIELD:
            raise MalformedResponseError("a response header is too large")
        if _BAD_VALUE.search(value) is not None:
            raise MalformedResponseError("a response header value holds CR, LF or NUL")
        lower = name.lower()
        if lower == b"content-length":
            if not value.isdigit() or (self._cl is not None and value != self._cl):
                raise MalformedResponseError("a malformed or repeated Content-Length")
            self._cl = value
        elif lower == b"transfer-encoding":
            if self._te is not None:
                raise MalformedResponseError("a repeated Transfer-Encoding")
            self._te = value
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            if status == 101:
                raise MalformedResponseError("the upstream switched protocols")
            self._interim = True  # 100 Continue, 103 Early Hints: the answer follows
            return
        if self._cl is not None and self._te is not None:
            raise MalformedResponseError("Content-Length and Transfer-Encoding together")
        if self._te is not None and self._te.strip().lower() != b"chunked":
            raise MalformedResponseError("a Transfer-Encoding other than chunked")
        self.status = status
        self.head_done = True
        if self.head_request:
            raise _HeadDoneError
        self.until_close = self._cl is None and self._te is None and status not in (204, 304)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered > READ_BUFFER and not self._paused_reading:
            self._paused_reading = True
            if self.transport is not None:
                self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()


class _LeanResponse:
    """The response of one connection; ``aclose`` gives the connection back once."""

    __slots__ = ("_conn", "_pool", "_released", "_timeout", "headers", "status")

    def __init__(self, conn: _Connection, pool: LeanUpstreamPool, timeout: float) -> None:
        self._conn = conn
        self._pool = pool
        self._timeout = timeout
        self._released = False
        self.status = conn.status
        self.headers = conn.headers

    async def read(self) -> bytes:
        conn = self._conn
        while True:
            if conn.has_body():
                return conn.take_body()
            if conn.complete:
                return b""
            if conn.error is not None:
                raise conn.error
            try:
                await conn.wait(self._timeout)
            except TimeoutError:
                conn.close()
                raise UpstreamTimeoutError("the upstream stopped sending mid-response") from None

    def done(self) -> bool:
        return self._conn.complete and not self._conn.has_body()

    async def aclose(self) -> None:
        if not self._released:
            self._released = True
            self._pool.release(self._conn)


class LeanUpstreamPool:
    """HTTP/1.1 keep-alive connections per (scheme, host, port), at most
    ``max_connections`` busy and ``max_idle`` idle (see the module docstring)."""

    def __init__(
        self,
        *,
        max_connections: int,
        max_idle: int,
        keepalive_expiry: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.max_idle = max_idle
        self.keep_alive = max_idle > 0 and keepalive_expiry > 0
        self.keepalive_expiry = keepalive_expiry
        self._ssl = ssl_context
        self._slots = asyncio.Semaphore(max_connections)
        self._busy = 0  # requests holding a slot
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._idle_count = 0
        self._sweeper: asyncio.TimerHandle | None = None
        self._hosts: dict[tuple[str, str, int | None], tuple[tuple[str, str, int], bytes]] = {}

    # Requests

    def _origin(self, request: UpstreamRequest) -> tuple[tuple[str, str, int], bytes]:
        """The pool key and the ``Host`` value of the request's upstream."""
        cached = self._hosts.get((request.scheme, request.host, request.port))
        if cached is None:
            scheme, host = request.scheme, request.host
            if scheme not in _DEFAULT_PORTS or not host:
                raise UpstreamError(f"unsupported upstream {scheme}://{host}")
            port = request.port or _DEFAULT_PORTS[scheme]
            name = f"[{host}]" if ":" in host else host
            value = name if port == _DEFAULT_PORTS[scheme] else f"{name}:{port}"
            cached = ((scheme, host, port), value.encode("ascii" if value.isascii() else "idna"))
            self._hosts[(request.scheme, request.host, request.port)] = cached
        return cached

    def _head(self, request: UpstreamRequest, host: bytes, chunked: bool) -> bytes:
        """The request line and headers, checked once more: nothing unsafe is written."""
        target = request.target
        if request.query:
            target = f"{target}?{encoded_query(request.query)}"
        if not target or _BAD_TARGET.search(target) is not None:
            raise MalformedHeaderError("the request target is not printable ASCII")
        method = request.method.encode("ascii", "replace")
        headers = request.headers
        if _NOT_TOKEN.search(method) is not None or (
            headers
            and (
                _NOT_TOKEN.search(b"".join([name for name, _ in headers])) is not None
                or _BAD_VALUE.search(b"".join([value for _, value in headers])) is not None
                or not all([name for name, _ in headers])
            )
        ):
            raise MalformedHeaderError("a request header cannot be written as it is")
        parts = [method, b" ", target.encode("ascii"), b" HTTP/1.1\r\n"]
        has_host = False
        for name, value in headers:
            lower = name.lower()
            if lower == b"transfer-encoding":
                continue  # the framing is this client's
            if lower == b"host":
                has_host = True
            parts += (name, b": ", value, b"\r\n")
        if not has_host:
            parts += (b"host: ", host, b"\r\n")
        if chunked:
            parts.append(b"transfer-encoding: chunked\r\n")
        if not self.keep_alive:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    async def _acquire(self, timeout: float) -> None:
        if not self._slots.locked():
            await self._slots.acquire()  # a free slot: returns without suspending
            return
        try:
            async with asyncio.timeout(timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise PoolExhaustedError("no upstream connection became free in time") from None

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        """Send ``request`` and wait for the response head; raises ``UpstreamError``."""
        key, host = self._origin(request)
        length = _content_length(request.headers)
        if request.body is None and length:
            raise MalformedHeaderError("a Content-Length without a body")
        head = self._head(request, host, request.body is not None and length is None)
        await self._acquire(request.connect_timeout)
        self._busy += 1
        conn: _Connection | None = None
        try:
            conn, reused = await self._connection(key, request.connect_timeout)
            try:
                await self._exchange(conn, request, head, length)
            except UpstreamError as exc:
                retry = (
                    reused
                    and not conn.received
                    and request.body is None
                    and request.method in _IDEMPOTENT
                    and not isinstance(exc, UpstreamTimeoutError | MalformedResponseError)
                )
                conn.close()
                if not retry:
                    raise
                conn = await self._new_connection(key, request.connect_timeout)
                await self._exchange(conn, request, head, length)
        except BaseException:
            if conn is not None:
                conn.close()
            self._slots.release()
            self._busy -= 1
            raise
        return _LeanResponse(conn, self, request.read_timeout)

    async def _exchange(
        self, conn: _Connection, request: UpstreamRequest, head: bytes, length: int | None
    ) -> None:
        """Write the request (streaming its body) and wait for the response head."""
        conn.start(head_request=request.method == "HEAD")
        body = request.body
        if body is None:
            conn.write(head)
        else:
            await self._write_body(conn, head, body, length, request.read_timeout)
        while not conn.head_done:
            if conn.error is not None:
                raise conn.error
            try:
                await conn.wait(request.read_timeout)
            except TimeoutError:
                raise UpstreamTimeoutError("the upstream did not answer in time") from None
        if conn.error is not None and not conn.complete:
            raise conn.error

    async def _write_body(
        self,
        conn: _Connection,
        head: bytes,
        body: AsyncIterator[bytes],
        length: int | None,
        timeout: float,
    ) -> None:
        pending = head
        sent = 0
        async for chunk in body:
            if not chunk:
                continue
            sent += len(chunk)
            if length is not None and sent > length:
                raise UpstreamError("the request body is longer than its Content-Length")
            framed = chunk if length is not None else b"%x\r\n%s\r\n" % (len(chunk), chunk)
            if pending and len(framed) <= SMALL_BODY:
                conn.write(pending + framed)
            else:
                if pending:
                    conn.write(pending)
                conn.write(framed)
            pending = b""
            await conn.drain(timeout)
            if conn.head_done or conn.error is not None:
                conn.no_reuse = True  # answered (or failed) before the body was all sent
                return
        if length is not None and sent != length:
            raise UpstreamError("the request body is shorter than its Content-Length")
        end = _CHUNK_END if length is None else b""
        if pending or end:
            conn.write(pending + end)

    async def _connection(
        self, key: tuple[str, str, int], timeout: float
    ) -> tuple[_Connection, bool]:
        """An idle connection to ``key`` (``True``) or a new one (``False``)."""
        idle = self._idle.get(key)
        if idle:
            now = asyncio.get_running_loop().time()
            while idle:
                conn = idle.pop()
                self._idle_count -= 1
                if not conn.closed and now - conn.idle_since < self.keepalive_expiry:
                    return conn, True
                conn.close()
        if self._idle_count and self._busy + self._idle_count > self.max_connections:
            self._evict_oldest()  # open connections stay within max_connections
        return await self._new_connection(key, timeout), False

    def _evict_oldest(self) -> None:
        key = min(self._idle, key=lambda k: self._idle[k][0].idle_since)
        idle = self._idle[key]
        idle.pop(0).close()
        self._idle_count -= 1
        if not idle:
            del self._idle[key]

    async def _new_connection(self, key: tuple[str, str, int], timeout: float) -> _Connection:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        tls: ssl.SSLContext | None = None
        if scheme == "https":
            tls = self._ssl if self._ssl is not None else ssl.create_default_context()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(key, loop), host, port,
                    ssl=tls, server_hostname=host if tls is not None else None,
                    ssl_handshake_timeout=timeout if tls is not None else None,
                ),
                timeout,
            )  # fmt: skip
        except TimeoutError:
            raise UpstreamTimeoutError("connecting to the upstream took too long") from None
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise UpstreamError(f"cannot connect to the upstream: {type(exc).__name__}") from None
        return conn

    def release(self, conn: _Connection) -> None:
        """A response is done with its connection: keep it idle or close it."""
        self._slots.release()
        self._busy -= 1
        if not (self.keep_alive and conn.reusable() and self._idle_count < self.max_idle):
            conn.close()
            return
        conn.active = False
        loop = asyncio.get_running_loop()
        conn.idle_since = loop.time()
        self._idle.setdefault(conn.key, []).append(conn)
        self._idle_count += 1
        if self._sweeper is None:
            self._sweeper = loop.call_later(self.keepalive_expiry, self._sweep)

    def _sweep(self) -> None:
        """Close the connections idle for ``keepalive_expiry`` (or closed upstream)."""
        self._sweeper = None
        loop = asyncio.get_running_loop()
        cutoff = loop.time() - self.keepalive_expiry
        count = 0
        for key, idle in list(self._idle.items()):
            keep = []
            for conn in idle:
                if conn.closed or conn.idle_since <= cutoff:
                    conn.close()
                else:
                    keep.append(conn)
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
            count += len(keep)
        self._idle_count = count
        if count:
            self._sweeper = loop.call_later(self.keepalive_expiry, self._sweep)

    async def aclose(self) -> None:
        """Close every idle connection (at shutdown)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        idle, self._idle = self._idle, {}
        self._idle_count = 0
        for connections in idle.values():
            for conn in connections:
                conn.close()


def _content_length(headers: Headers) -> int | None:
    """The request's declared body length (the proxy passes the client's, validated)."""
    for name, value in headers:
        if name.lower() == b"content-length":
            if not value.isdigit():
                raise MalformedHeaderError("a malformed Content-Length")
            return int(value)
    return None
