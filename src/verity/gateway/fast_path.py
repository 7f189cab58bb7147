"""The fast path: forward-auth checks and bodiless proxied requests answered by the HTTP
protocol itself, without the ASGI cycle (``gateway.fast_path``, on by default).

Under uvicorn every request costs a scope dict, a ``RequestResponseCycle``, ASGI
messages, Starlette ``Request``/``Response`` plumbing and two socket writes (head, then
body). The requests that carry the traffic (an nginx ``auth_request`` check, a ``GET``
through the proxy) need none of it. When the httptools protocol of
``verity.gateway.http_limits`` has read a request head, it hands the request to a
``FastCycle`` instead of the ASGI application when all of these hold:

- the application is the ``Gateway`` with ``gateway.fast_path: true``;
- the request has no body (no ``Transfer-Encoding``, no ``Content-Length`` above 0) and
  is not a WebSocket upgrade;
- its path is not an internal endpoint (``/healthz``, ``/readyz``, JWKS, metrics) nor a
  mount (login routes, embedded IdP): forward-auth endpoints and proxied routes only;
- uvicorn's concurrency limit is not reached (otherwise its own 503, as before).

Everything else takes the ASGI path unchanged, and so does every request under the h11
parser. A ``FastCycle`` stands in for uvicorn's ``RequestResponseCycle`` (the protocol
queues it for pipelining, counts it as a task for the concurrency limit and graceful
shutdown, tells it about a lost connection), runs in one asyncio task, and decides with
the same functions as the ASGI path (``Gateway.answer_raw``: the same inbound checks,
canonical target, routes, ``Enforcer.authorize``, refusals and rendering, hence the same
audit events). It writes the whole response (status line, headers, body) in ONE
``transport.write``, with the framing rules of uvicorn's cycle: its ``Date`` header, the
same header checks, ``Connection: close`` when the connection is not kept alive
(HTTP/1.0, a client's ``Connection: close``, shutdown), no body for ``HEAD``, chunked
encoding when an upstream gives no length, HSTS on TLS. A proxied response streams: the
head and the first body chunk go in one write (a small body entirely), later chunks as
they come, waiting for the transport to drain like uvicorn.

The requests that stay on the ASGI path get one write per response too (``HeldHead``:
uvicorn's head is held until the first body bytes, or the end of the event-loop step).
With ``gateway.fast_path: false`` the protocol is uvicorn's, as before (two writes).

An exception while answering is handled as uvicorn handles one from the application:
logged, 500 with ``Connection: close`` when nothing was sent yet, else the connection is
closed (a failed upstream mid-body).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from starlette.responses import Response
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE, STATUS_LINE
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

from .headers import RawHeaders, response_headers
from .inbound import RequestLine
from .pool import UpstreamError, UpstreamResponse

if TYPE_CHECKING:
    from .app import Forward

log = logging.getLogger("verity.gateway")
_STS = b"strict-transport-security"
_ERROR_500 = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", b"21"),
    (b"connection", b"close"),
]


class FastGateway(Protocol):
    """What the fast path needs of the gateway (``verity.gateway.app.Gateway``)."""

    hsts: str | None

    def fast_path_enabled(self) -> bool: ...

    def fast_path_serves(self, path: str) -> bool: ...

    async def answer_raw(self, line: RequestLine, headers: RawHeaders) -> Response | Forward: ...

    async def open_upstream(
        self, line: RequestLine, headers: RawHeaders, forward: Forward
    ) -> tuple[UpstreamResponse | Response, float]: ...

    def observe_upstream(self, route: str, status: int, started: float) -> None: ...


def fast_gateway(app: object) -> FastGateway | None:
    """``app`` when it is a gateway with the fast path on, else None."""
    enabled = getattr(app, "fast_path_enabled", None)
    if callable(enabled) and enabled() is True:
        return app  # type: ignore[return-value]
    return None


class _NoEvent:
    """The cycle's ``message_event``: nothing waits on a bodiless request's body."""

    __slots__ = ()

    def set(self) -> None:
        pass


_NO_EVENT = _NoEvent()


class HeldHead:
    """The transport of uvicorn's cycle on the ASGI path, for one write per response there
    too: the response head is held until the first body bytes, and both go in one write.
    The head is written alone at the end of the event-loop step that produced it if no
    body followed by then (a streamed body that comes later, a ``HEAD`` answer), so
    nothing waits on a slow body."""

    __slots__ = ("_cycle", "_held", "_loop", "_started", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: Any, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._cycle = cycle
        self._loop = loop
        self._held: bytes | None = None
        self._started = False

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif not self._started and self._cycle.response_started:  # the head: hold it
            self._started = True
            self._held = data
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _nothing() -> None:
    pass


class FastCycle:
    """One request answered on the fast path, in the place of uvicorn's cycle.

    The attributes the protocol reads and writes (``response_complete``,
    ``disconnected``, ``keep_alive``, ``more_body``, ``body``, ``message_event``) are
    uvicorn's; ``run_asgi`` is what the protocol's task runs (the ASGI app is ignored).
    """

    __slots__ = (
        "_chunked", "_head", "_http_version", "_length", "_loop", "_raw_path", "access_logger",
        "body",
        "client", "default_headers", "disconnected", "flow", "gateway", "headers", "keep_alive",
        "line", "logger", "message_event", "more_body", "on_response", "response_complete",
        "response_started", "transport",
    )  # fmt: skip

    def __init__(
        self,
        protocol: Any,
        gateway: FastGateway,
        line: RequestLine,
        headers: RawHeaders,
        *,
        raw_path: bytes,
        http_version: str,
        keep_alive: bool,
    ) -> None:
        self.gateway = gateway
        self.line = line
        self.headers = headers
        self.transport: asyncio.Transport = protocol.transport
        self.flow: FlowControl = protocol.flow
        self.logger: logging.Logger = protocol.logger
        self.access_logger: logging.Logger | None = (
            protocol.access_logger if protocol.access_log else None
        )
        self.client: tuple[str, int] | None = protocol.client
        self.default_headers: list[tuple[bytes, bytes]] = protocol.server_state.default_headers
        self.on_response = protocol.on_response_complete
        self._raw_path = raw_path
        self._http_version = http_version
        self.keep_alive = keep_alive
        self.disconnected = False
        self.response_started = False
        self.response_complete = False
        self.more_body = True
        self.body = bytearray()  # (never filled: the request has no body)
        self.message_event = _NO_EVENT
        self._head: list[bytes] = []
        self._loop: asyncio.AbstractEventLoop = protocol.loop
        self._chunked: bool | None = None
        self._length = 0

    async def run_asgi(self, app: object) -> None:
        """Answer the request (as uvicorn's ``run_asgi`` runs an application)."""
        try:
            answer = await self.gateway.answer_raw(self.line, self.headers)
            if isinstance(answer, Response):
                await self._respond(answer)
            else:
                await self._proxy(answer)
        except BaseException as exc:  # as uvicorn: logged, 500 or closed
            self.logger.error("Exception in ASGI application\n", exc_info=exc)  # noqa: TRY400
            if not self.response_started:
                self.respond(500, _ERROR_500, b"Internal Server Error")
            else:
                self.transport.close()
        finally:
            self.on_response = _nothing

    async def _respond(self, response: Response) -> None:
        """A complete Starlette ``Response``, sent as its ``__call__`` would send it."""
        if type(response).__call__ is not Response.__call__:  # streaming, file: not here
            raise TypeError(f"the fast path cannot send a {type(response).__name__}")
        self.respond(response.status_code, response.raw_headers, response.body)
        if response.background is not None:
            await response.background()

    async def _proxy(self, forward: Forward) -> None:
        gateway, route = self.gateway, forward.route.name
        answer, started = await gateway.open_upstream(self.line, self.headers, forward)
        if isinstance(answer, Response):  # 502/503/504: the upstream was not reached
            gateway.observe_upstream(route, answer.status_code, started)
            await self._respond(answer)
            return
        upstream = answer
        try:
            gateway.observe_upstream(route, upstream.status, started)
            self.start(upstream.status, response_headers(upstream.headers))
            self._loop.call_soon(self._flush)  # (a body that is slow to come: the head now)
            more = True
            while more:
                chunk = await upstream.read()
                more = not upstream.done()  # the last bytes go with the end of the body
                if self.flow.write_paused and not self.disconnected:
                    await self.flow.drain()
                self.send_body(chunk, more=more)
        except UpstreamError as exc:
            log.warning("upstream for route %s failed mid-response: %s", route, exc)
            raise
        finally:
            await upstream.aclose()

    def respond(
        self, status: int, headers: Iterable[tuple[bytes, bytes]], body: bytes | memoryview
    ) -> None:
        """A complete response, in one write."""
        self.start(status, headers)
        self.send_body(bytes(body), more=False)

    def start(self, status: int, headers: Iterable[tuple[bytes, bytes]]) -> None:
        """Build the response head (uvicorn's rules); it is written with the first body."""
        if self.disconnected:
            return
        self.response_started = True
        pairs = self.default_headers + list(headers)
        if self.gateway.hsts is not None and self.line.scheme == "https":
            pairs = [h for h in pairs if h[0].lower() != _STS]
            pairs.append((_STS, self.gateway.hsts.encode("ascii")))
        if self.access_logger is not None:
            self._access_log(self.access_logger, status)
        # uvicorn's checks of every name and value, in one search each (no separator is
        # needed: each pattern matches single forbidden bytes)
        if HEADER_RE.search(b"".join([name for name, _ in pairs])):
            raise RuntimeError("Invalid HTTP header name.")
        if HEADER_VALUE_RE.search(b"".join([value for _, value in pairs])):
            raise RuntimeError("Invalid HTTP header value.")
        content = [STATUS_LINE[status]]
        has_close = False
        for name, value in pairs:
            name = name.lower()  # noqa: PLW2901
            if name == b"content-length" and self._chunked is None:
                self._length = int(value.decode())
                self._chunked = False
            elif name == b"transfer-encoding" and value.lower() == b"chunked":
                self._length = 0
                self._chunked = True
            elif name == b"connection" and b"close" in [
                token.lower().strip() for token in value.split(b",")
            ]:
                self.keep_alive = False
                has_close = True
            content.extend((name, b": ", value, b"\r\n"))
        if not self.keep_alive and not has_close:
            content.append(b"connection: close\r\n")
        if self._chunked is None and self.line.method != "HEAD" and status not in (204, 304):
            self._chunked = True
            content.append(b"transfer-encoding: chunked\r\n")
        content.append(b"\r\n")
        self._head = content

    def _flush(self) -> None:
        """Write what is held (the head, or the whole body but its end) if the next body
        bytes did not follow in the same event-loop step."""
        if self._head and not self.disconnected and not self.transport.is_closing():
            data, self._head = b"".join(self._head), []
            self.transport.write(data)

    def send_body(self, body: bytes, *, more: bool) -> None:
        """Write the head (if not yet written) and ``body``, framed, in one write."""
        if self.disconnected:
            return
        content, self._head = self._head, []
        if self.line.method == "HEAD":
            self._length = 0
        elif self._chunked:
            if body:
                content.extend((b"%x\r\n" % len(body), body, b"\r\n"))
            if not more:
                content.append(b"0\r\n\r\n")
        else:
            if len(body) > self._length:
                raise RuntimeError("Response content longer than Content-Length")
            self._length -= len(body)
            content.append(body)
        if more and not self._chunked and self._length == 0 and self.line.method != "HEAD":
            self._head = content  # the declared length is all here: written with the end
            self._loop.call_soon(self._flush)  # (or at the end of this event-loop step)
            return
        data = b"".join(content)
        if data:
            self.transport.write(data)
        if not more:
            if self._length != 0:
                raise RuntimeError("Response content shorter than Content-Length")
            self.response_complete = True
            if not self.keep_alive:
                self.transport.close()
            self.on_response()

    def _access_log(self, logger: logging.Logger, status: int) -> None:
        scope = {"client": self.client, "raw_path": self._raw_path, "query_string": self.line.query}
        logger.info(
            '%s - "%s %s HTTP/%s" %d',
            get_client_addr(scope),  # type: ignore[arg-type]
            self.line.method,
            get_path_with_query_string(scope),  # type: ignore[arg-type]
            self._http_version,
            status,
        )
