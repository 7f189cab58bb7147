"""Resource limits in the HTTP protocol layer, enforced before any request is parsed.

uvicorn's HTTP/1.1 protocols buffer a request's header block until it ends: with
httptools there is no bound at all (one 150 MB header line is kept in memory), and
neither protocol has a deadline for the header block (a client sending one byte every few
seconds holds its connection forever). The protocol classes here are uvicorn's own
(httptools and h11) with three bounds, checked in ``data_received`` before the parser
sees a byte:

- **header bytes**: the bytes of a request head (request line, headers, the blank line)
  are counted as they arrive; the parser is fed at most ``max_head_bytes`` of them, and a
  head still incomplete at that point is answered ``431`` and the connection closed, so
  nothing beyond the limit is ever buffered. The parser is fed in pieces of at most that
  size, and pipelined requests are counted head by head (a head that ends inside a piece
  does not make the next one "too large"); the start of a pipelined head that arrives in
  the same piece as the end of the previous request is not counted, so a head is cut at
  twice the limit at worst;
- **header time**: a request head must be complete ``head_timeout_seconds`` after the
  connection opened (first request) or after the first byte of the request (later
  requests on a keep-alive connection); otherwise ``408`` and the connection is closed
  (slowloris). Idle keep-alive connections are closed by uvicorn's ``timeout_keep_alive``;
- **body after the answer**: a request answered before its body ended (refused, 401,
  413...) has ``head_timeout_seconds`` after the answer for the rest of its body, then the
  connection is closed (uvicorn would read it forever, one byte at a time);
- **connections**: beyond ``max_connections`` open connections (WebSockets included), a
  new connection is answered ``503`` and closed at once, without reading it.

Every class also adds the ASGI TLS extension on TLS connections (``verity.gateway.asgi_tls``);
``http_protocol(limits)`` returns the class ``verity serve`` passes to uvicorn as ``http``.
The httptools class also runs the gateway's fast path (``verity.gateway.fast_path``):
once a request head is complete, an eligible request is answered without the ASGI cycle.
"""

from __future__ import annotations

import asyncio
import http
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import unquote

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .asgi_tls import with_tls_extension
from .inbound import RequestLine, sent_target
from .proxy import has_body

_REFUSALS = {
    status: (
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n"
        "content-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(http.HTTPStatus(status).phrase)}\r\n"
        "connection: close\r\n\r\n"
        f"{http.HTTPStatus(status).phrase}"
    ).encode("ascii")
    for status in (408, 431, 503)
}


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The bounds of every client connection (``gateway.max_header_bytes`` + 8 KiB,
    ``gateway.header_timeout_seconds``, ``gateway.max_connections``)."""

    max_head_bytes: int = 40960
    head_timeout_seconds: float = 15.0
    max_connections: int = 2048


class _HeadGuard:
    """The bounds of ``ConnectionLimits`` for one connection (shared by both protocols).

    The concrete class says whether the parser is reading a request head (``_in_head``)
    and feeds it (``_feed``, uvicorn's own ``data_received``)."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()
    transport: asyncio.Transport
    connections: set[Any]
    _head_bytes: int = 0
    _heads: int = 0  # request heads completed on this connection
    _head_timer: asyncio.TimerHandle | None = None
    _drain_timer: asyncio.TimerHandle | None = None
    _refused: bool = False

    def _in_head(self) -> bool:
        raise NotImplementedError

    def _feed(self, data: bytes) -> None:
        raise NotImplementedError

    def _body_pending(self) -> bool:
        """True while the current request's body has not ended."""
        raise NotImplementedError

    def _answered(self) -> None:
        """After a response is complete: a request body still arriving (the request was
        refused or answered early) has ``head_timeout_seconds`` more to end, not forever."""
        self._stop_drain_timer()
        if self._body_pending() and not self.transport.is_closing():
            loop = asyncio.get_running_loop()
            cycle = getattr(self, "cycle", None)
            timeout = self.limits.head_timeout_seconds
            self._drain_timer = loop.call_later(timeout, self._drain_expired, cycle)

    def _drain_expired(self, cycle: object) -> None:
        self._drain_timer = None
        same = getattr(self, "cycle", None) is cycle  # not a later request's body
        if same and self._body_pending() and not self.transport.is_closing():
            self._refused = True  # answered already: nothing more to say, only close
            self._stop_head_timer()
            self.transport.close()

    def _stop_drain_timer(self) -> None:
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None

    def _opened(self) -> None:
        """After ``connection_made``: refuse beyond ``max_connections``, else start the
        deadline of the first request head."""
        if len(self.connections) > self.limits.max_connections:
            self._refuse(503)
        else:
            self._start_head_timer()

    def _guarded_data(self, data: bytes) -> None:
        cap = self.limits.max_head_bytes
        while data and not self._refused and not self.transport.is_closing():
            handler: Any = self.transport.get_protocol()
            if handler is not self:  # upgraded to a WebSocket inside the last piece
                handler.data_received(data)
                return
            if not self._in_head():  # a body (or, for h11, a request being answered)
                piece, data = data[:cap], data[cap:]  # so that at most ``cap`` bytes of
                self._feed(piece)  # the next head can arrive with the end of this one
                self._after_feed()
                continue
            self._start_head_timer()
            room = cap - self._head_bytes
            piece, data = data[:room], data[room:]
            heads = self._heads
            self._head_bytes += len(piece)
            if piece:  # (an empty feed would mean end of stream to h11)
                self._feed(piece)  # at most the limit reaches the parser
            if self._in_head() and self._heads == heads and data:
                # the same head is still incomplete and more is coming: over the limit
                if not self.transport.is_closing():  # (the parser may have refused)
                    self._refuse(431)
                return
            self._after_feed()  # (pipelined: a head that ended inside ``piece`` was
            # followed by the start of the next one, counted from the following bytes)

    def _after_feed(self) -> None:
        if not self._in_head():
            self._head_done()

    def _head_done(self) -> None:
        self._heads += 1
        self._head_bytes = 0
        self._stop_head_timer()

    def _start_head_timer(self) -> None:
        if self._head_timer is None and not self._refused:
            loop = asyncio.get_running_loop()
            self._head_timer = loop.call_later(self.limits.head_timeout_seconds, self._expired)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _expired(self) -> None:
        self._head_timer = None
        cycle = getattr(self, "cycle", None)
        if cycle is not None and not cycle.response_complete:
            self._start_head_timer()  # a pipelined head waits for the answer in progress
        elif self._in_head() and not self.transport.is_closing():
            self._refuse(408)

    def _refuse(self, status: int) -> None:
        self._refused = True
        self._stop_head_timer()
        self.transport.write(_REFUSALS[status])
        self.transport.close()


class LimitedH11Protocol(_HeadGuard, H11Protocol):
    """uvicorn's h11 protocol with the bounds of ``ConnectionLimits`` (and ASGI TLS)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.app = with_tls_extension(self.app, transport)
        self._opened()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        self._stop_drain_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._guarded_data(data)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._answered()

    def _in_head(self) -> bool:
        return self.conn.their_state is h11.IDLE

    def _body_pending(self) -> bool:
        return self.conn.their_state is h11.SEND_BODY

    def _feed(self, data: bytes) -> None:
        H11Protocol.data_received(self, data)


LimitedHttpToolsProtocol: type[asyncio.Protocol] | None
try:
    import httptools
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from .fast_path import FastCycle, FastGateway, HeldHead, fast_gateway
except ImportError:  # pragma: no cover - httptools is part of uvicorn[standard]
    LimitedHttpToolsProtocol = None
else:

    class _LimitedHttpTools(_HeadGuard, HttpToolsProtocol):
        """uvicorn's httptools protocol with the bounds of ``ConnectionLimits`` (and TLS),
        and the gateway's fast path (``verity.gateway.fast_path``)."""

        _reading_head = True
        _fast: FastGateway | None = None
        _tls: Mapping[str, Any] | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            app = self.app
            self.app = with_tls_extension(app, transport)
            self._fast = fast_gateway(app)
            self._tls = getattr(self.app, "extension", None) if self.app is not app else None
            self._opened()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_head_timer()
            self._stop_drain_timer()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._answered()

        def data_received(self, data: bytes) -> None:
            self._guarded_data(data)

        def on_headers_complete(self) -> None:
            self._reading_head = False
            self._head_done()  # before a WebSocket upgrade hands the transport over
            fast = self._fast
            if fast is not None and self._answer_fast(fast):
                return
            existing = self.cycle
            super().on_headers_complete()
            if fast is not None and self.cycle is not existing:  # the ASGI path: one write too
                self.cycle.transport = HeldHead(self.transport, self.cycle, self.loop)  # type: ignore[assignment]

        def _answer_fast(self, gateway: FastGateway) -> bool:
            """Queue the request on the fast path if it is eligible (False: it is not, and
            uvicorn's ASGI cycle takes it, as without the fast path)."""
            parser = self.parser
            limit = self.limit_concurrency
            if (
                parser.should_upgrade()
                or has_body(self.headers)
                or self.root_path
                or (limit is not None and max(len(self.connections), len(self.tasks)) >= limit)
            ):
                return False
            try:  # the path as uvicorn's scope has it; anything odd: uvicorn's own answer
                parsed = httptools.parse_url(self.url)
                raw_path: bytes = parsed.path
                path = raw_path.decode("ascii")
            except (httptools.HttpParserError, ValueError):
                return False
            if "%" in path:
                path = unquote(path)
            if not gateway.fast_path_serves(path):
                return False
            query: bytes = parsed.query or b""
            http_version = parser.get_http_version()
            line = RequestLine(
                parser.get_method().decode("ascii"), sent_target(raw_path, path, query),
                path, query, self.scheme or "http", self.client[0] if self.client else None,
                self._tls,
            )  # fmt: skip
            cycle = FastCycle(
                self, gateway, line, self.headers, raw_path=raw_path, http_version=http_version,
                keep_alive=http_version != "1.0" and parser.should_keep_alive(),
            )  # fmt: skip
            existing = self.cycle
            self.cycle = cycle  # type: ignore[assignment]
            if existing is None or existing.response_complete:
                self._start_asgi_task(cycle, self.app)  # type: ignore[arg-type]
            else:  # pipelined: answered in order, reading paused meanwhile (as uvicorn)
                self.flow.pause_reading()
                self.pipeline.appendleft((cycle, self.app))  # type: ignore[arg-type]
            return True

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._reading_head = True  # the next bytes start the next request's head
            self._head_bytes = 0

        def _in_head(self) -> bool:
            return self._reading_head

        def _body_pending(self) -> bool:
            return not self._reading_head

        def _feed(self, data: bytes) -> None:
            HttpToolsProtocol.data_received(self, data)

    LimitedHttpToolsProtocol = _LimitedHttpTools


def http_protocol(limits: ConnectionLimits, *, parser: str | None = None) -> type[asyncio.Protocol]:
    """The HTTP protocol class for uvicorn's ``http`` option, bound to ``limits``:
    httptools when installed (or ``parser="httptools"``), else h11 (``parser="h11"``)."""
    base: type[asyncio.Protocol]
    if parser == "h11" or (parser is None and LimitedHttpToolsProtocol is None):
        base = LimitedH11Protocol
    elif LimitedHttpToolsProtocol is not None:
        base = LimitedHttpToolsProtocol
    else:
        raise ValueError(f"HTTP parser {parser!r} is not installed")
    return type(base.__name__, (base,), {"limits": limits})
