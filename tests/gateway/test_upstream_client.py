"""The lean upstream client against real local servers: reuse, framing both ways,
backpressure, retries, timeouts, response smuggling, limits and TLS."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from verity.gateway.pool import (
    MalformedHeaderError,
    PoolExhaustedError,
    UpstreamError,
    UpstreamRequest,
    UpstreamTimeoutError,
)
from verity.gateway.proxy import new_transport
from verity.gateway.settings import UpstreamPoolConfig
from verity.gateway.upstream_client import (
    MAX_RESPONSE_HEADERS,
    LeanUpstreamPool,
    MalformedResponseError,
)

from .servers import SilentServer, ThreadServer
from .test_pool import OK, PeerEcho, RawUpstream, parts

pytestmark = pytest.mark.anyio


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """Every case on asyncio's own loop and on uvloop (what ``verity serve`` runs)."""
    return request.param


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def lean(max_connections: int = 8, max_idle: int = 8, **options: Any) -> LeanUpstreamPool:
    return LeanUpstreamPool(
        max_connections=max_connections, max_idle=max_idle, keepalive_expiry=30, **options
    )


def request(
    url: str,
    target: str = "/",
    *,
    method: str = "GET",
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    body: AsyncIterator[bytes] | None = None,
    connect: float = 5,
    read: float = 5,
) -> UpstreamRequest:
    scheme, rest = url.split("://")
    host, port = rest.rsplit(":", 1)
    return UpstreamRequest(
        method, scheme, host, int(port), target, query, headers or [], body, connect, read
    )


async def fetch(upstream: LeanUpstreamPool, outgoing: UpstreamRequest) -> tuple[int, bytes]:
    response = await upstream.send(outgoing)
    body = b""
    try:
        while not response.done():
            body += await response.read()
    finally:
        await response.aclose()
    return response.status, body


class Scripted:
    """An asyncio server running ``handler`` per connection; counts the connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.url = ""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> Scripted:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.close()


def replies(*answers: bytes) -> Handler:
    """Answers each request head, on whichever connection, with the next of ``answers``;
    after the last one the connection closes."""
    pending = list(answers)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while pending:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(pending.pop(0))
            await writer.drain()

    return handler


# Keep-alive and framing


async def test_sequential_requests_reuse_one_connection() -> None:
    upstream = lean()
    with ThreadServer(PeerEcho()) as server:
        ports = {(await fetch(upstream, request(server.url)))[1] for _ in range(5)}
        await upstream.aclose()
    assert len(ports) == 1


async def test_concurrent_requests_get_their_own_connections_then_reuse_them() -> None:
    upstream = lean()
    with ThreadServer(PeerEcho()) as server:
        slow = request(server.url, "/slow")
        ports = await asyncio.gather(*(fetch(upstream, slow) for _ in range(4)))
        again = await asyncio.gather(*(fetch(upstream, request(server.url)) for _ in range(4)))
        await upstream.aclose()
    assert len(set(ports)) == 4
    assert set(again) == set(ports)


async def test_no_keep_alive_when_no_idle_connection_may_be_kept() -> None:
    upstream = lean(4, 0)
    async with RawUpstream(OK) as raw:
        for _ in range(3):
            assert await fetch(upstream, request(raw.url)) == (200, b"ok")
        await upstream.aclose()
    assert all(b"\r\nconnection: close\r\n" in wire for wire in raw.requests)


async def test_connection_close_from_the_upstream_is_not_reused() -> None:
    closing = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"
    async with Scripted(replies(closing, OK)) as server:
        upstream = lean()
        assert await fetch(upstream, request(server.url)) == (200, b"ok")
        assert await fetch(upstream, request(server.url)) == (200, b"ok")
        await upstream.aclose()
    assert server.connections == 2


async def test_chunked_response_is_dechunked_and_the_connection_reused() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    async with Scripted(replies(chunked, chunked)) as server:
        upstream = lean()
        assert await fetch(upstream, request(server.url)) == (200, b"abcde")
        assert await fetch(upstream, request(server.url)) == (200, b"abcde")
        await upstream.aclose()
    assert server.connections == 1


async def test_response_without_length_is_read_until_close_and_not_reused() -> None:
    async with Scripted(replies(b"HTTP/1.1 200 OK\r\n\r\nall of it")) as server:
        upstream = lean()
        assert await fetch(upstream, request(server.url)) == (200, b"all of it")
        assert upstream._idle_count == 0
        await upstream.aclose()


async def test_head_204_and_304_have_no_body() -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n"
    empty = b"HTTP/1.1 204 No Content\r\n\r\n"
    unchanged = b"HTTP/1.1 304 Not Modified\r\ncontent-length: 1000\r\n\r\n"
    async with Scripted(replies(empty, unchanged, head)) as server:
        upstream = lean()
        assert await fetch(upstream, request(server.url)) == (204, b"")
        assert await fetch(upstream, request(server.url)) == (304, b"")
        response = await upstream.send(request(server.url, method="HEAD", read=0.5))
        assert response.done()
        assert await response.read() == b""
        assert (b"content-length", b"1000") in response.headers
        await response.aclose()
        await upstream.aclose()
    assert server.connections == 1  # 204 and 304 kept it; after HEAD it is closed


async def test_interim_100_continue_is_skipped() -> None:
    reply = b"HTTP/1.1 100 Continue\r\n\r\n" + OK
    async with Scripted(replies(reply)) as server:
        upstream = lean()
        assert await fetch(upstream, request(server.url)) == (200, b"ok")
        await upstream.aclose()


async def test_request_is_sent_exactly_in_one_write_without_default_headers() -> None:
    headers = [(b"x-dup", b"1"), (b"x-dup", b"2"), (b"x-utf8", "caf\u00e9".encode()),
               (b"x-latin1", b"caf\xe9"), (b"transfer-encoding", b"chunked")]  # fmt: skip
    upstream = lean()
    async with RawUpstream(OK) as raw:
        outgoing = request(raw.url, "/a%2Fb/%7Ex", query=b"q=%zz&r=\xe9 1", headers=headers)
        assert await fetch(upstream, outgoing) == (200, b"ok")
        await upstream.aclose()
    port = raw.url.rsplit(":", 1)[1]
    assert raw.requests[0] == (
        b"GET /a%2Fb/%7Ex?q=%zz&r=%E9%201 HTTP/1.1\r\nx-dup: 1\r\nx-dup: 2\r\n"
        + "x-utf8: caf\u00e9\r\n".encode()
        + b"x-latin1: caf\xe9\r\nhost: 127.0.0.1:"
        + port.encode()
        + b"\r\n\r\n"
    )


@pytest.mark.parametrize(
    "header",
    [
        (b"x-a", b"1\r\nx-injected: 2"),
        (b"x-a", b"1\x00"),
        (b"x-a", b"1\n"),
        (b"x a", b"1"),
        (b"x-a:", b"1"),
        (b"", b"1"),
    ],
)
async def test_unsafe_request_header_is_refused_before_anything_is_sent(
    header: tuple[bytes, bytes],
) -> None:
    upstream = lean()
    async with RawUpstream(OK) as raw:
        with pytest.raises(MalformedHeaderError) as caught:
            await fetch(upstream, request(raw.url, headers=[header]))
        assert await fetch(upstream, request(raw.url)) == (200, b"ok")  # the slot is free
        await upstream.aclose()
    assert caught.value.status == 400
    assert len(raw.requests) == 1


async def test_unsafe_target_is_refused() -> None:
    upstream = lean()
    with pytest.raises(MalformedHeaderError):
        await upstream.send(request("http://127.0.0.1:9", "/a b HTTP/1.1\r\nx: y"))


async def test_content_length_body_and_chunked_body_go_framed() -> None:
    upstream = lean()
    async with RawUpstream(OK) as raw:
        sized = [(b"content-length", b"6")]
        await fetch(upstream, request(raw.url, method="PUT", headers=sized,
                                      body=parts(b"abc", b"def")))  # fmt: skip
        await fetch(upstream, request(raw.url, method="POST", body=parts(b"abc", b"", b"def")))
        await fetch(upstream, request(raw.url, method="POST", body=parts()))
        await upstream.aclose()
    sized_wire, chunked_wire, empty_wire = raw.requests
    assert sized_wire.endswith(b"\r\ncontent-length: 6\r\n" + b"host: " + raw.url[7:].encode()
                               + b"\r\n\r\nabcdef")  # fmt: skip
    assert b"transfer-encoding" not in sized_wire
    assert chunked_wire.endswith(
        b"transfer-encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n"
    )
    assert empty_wire.endswith(b"\r\n\r\n0\r\n\r\n")


async def test_body_longer_or_shorter_than_its_content_length_is_cut_off() -> None:
    upstream = lean()
    async with RawUpstream(OK) as raw:
        sized = [(b"content-length", b"3")]
        with pytest.raises(UpstreamError):
            await fetch(upstream, request(raw.url, method="PUT", headers=sized,
                                          body=parts(b"ab", b"cd")))  # fmt: skip
        with pytest.raises(UpstreamError):
            await fetch(upstream, request(raw.url, method="PUT", headers=sized, body=parts(b"a")))
        with pytest.raises(MalformedHeaderError):  # a length without a body: never sent
            await fetch(upstream, request(raw.url, headers=sized))
        await upstream.aclose()
    assert raw.requests == []


async def test_large_bodies_stream_both_ways_with_backpressure() -> None:
    size, piece = 32 * 1024 * 1024, b"x" * 65536
    produced = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal produced
        while produced < size:
            produced += len(piece)
            yield piece

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(0.3)  # not reading: the client must stop producing meanwhile
        seen_while_stalled.append(produced)
        received = 0
        while received < size:
            received += len(await reader.read(1 << 20))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
        for _ in range(size // len(piece)):
            writer.write(piece)
            await writer.drain()

    seen_while_stalled: list[int] = []
    async with Scripted(handler) as server:
        upstream = lean()
        headers = [(b"content-length", str(size).encode())]
        response = await upstream.send(request(server.url, method="PUT", headers=headers,
                                               body=body()))  # fmt: skip
        await asyncio.sleep(0.3)  # not reading: the connection stops reading too
        conn = response._conn  # type: ignore[attr-defined]
        assert conn._buffered <= 2 * 1024 * 1024
        got = 0
        while not response.done():
            got += len(await response.read())
        await response.aclose()
        await upstream.aclose()
    assert got == size
    assert seen_while_stalled[0] < size // 2  # backpressure held the body back


async def test_an_early_answer_stops_the_body_and_the_connection_is_not_reused() -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while True:
            sent += 65536
            yield b"x" * 65536

    refusal = b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 4\r\n\r\nbig!"

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(refusal)  # answers without reading the body
        await writer.drain()
        await asyncio.sleep(1)

    async with Scripted(handler) as server:
        upstream = lean()
        status, body = await fetch(upstream, request(server.url, method="POST", body=endless()))
        assert upstream._idle_count == 0
        await upstream.aclose()
    assert (status, body) == (413, b"big!")
    assert sent < 64 * 1024 * 1024  # it stopped


async def test_a_response_closed_before_its_end_closes_the_connection() -> None:
    long = b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n" + b"x" * 1000
    async with Scripted(replies(long, OK)) as server:
        upstream = lean()
        response = await upstream.send(request(server.url))
        assert await response.read()
        await response.aclose()  # the client went away: the rest is never read
        assert upstream._idle_count == 0
        assert await fetch(upstream, request(server.url)) == (200, b"ok")
        await upstream.aclose()
    assert server.connections == 2


async def test_a_whole_response_left_unread_leaves_the_connection_usable() -> None:
    big = b"HTTP/1.1 200 OK\r\ncontent-length: 307200\r\n\r\n" + b"x" * 307200
    async with Scripted(replies(big, OK)) as server:
        upstream = lean()
        response = await upstream.send(request(server.url))
        await asyncio.sleep(0.2)  # all of it arrives (reading pauses past 256 KiB)
        await response.aclose()
        assert await fetch(upstream, request(server.url, read=2)) == (200, b"ok")
        await upstream.aclose()


# Idle connections closed by the upstream, retries


def close_after_one(answer: bytes) -> Handler:
    """Answers one request, then closes the connection a moment later (as an upstream's
    keep-alive timeout does)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()

    return handler


async def test_idle_connection_closed_by_the_upstream_is_replaced() -> None:
    async with Scripted(close_after_one(OK)) as server:
        upstream = lean()
        assert await fetch(upstream, request(server.url)) == (200, b"ok")
        await asyncio.sleep(0.1)  # the upstream closed it meanwhile
        assert await fetch(upstream, request(server.url)) == (200, b"ok")
        await upstream.aclose()
    assert server.connections == 2


def assert_one_live_idle(upstream: LeanUpstreamPool) -> None:
    """The one idle connection looks alive (its upstream closes it when the next request
    arrives: the race an upstream's keep-alive timeout leaves)."""
    idle = next(iter(upstream._idle.values()))
    assert len(idle) == 1
    assert not idle[0].closed


def read_then_close_answer_then(answer: bytes) -> Handler:
    """First connection: answers one request, then reads the next one and closes without
    answering. Later connections: answer every request."""
    first = True

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal first
        if first:
            first = False
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
            await reader.readuntil(b"\r\n\r\n")
            return  # closed, unanswered
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()

    return handler


async def test_get_on_a_connection_closed_unanswered_is_retried_once() -> None:
    async with Scripted(read_then_close_answer_then(OK)) as server:
        upstream = lean()
        assert await fetch(upstream, request(server.url)) == (200, b"ok")
        assert_one_live_idle(upstream)
        assert await fetch(upstream, request(server.url)) == (200, b"ok")
        await upstream.aclose()
    assert server.connections == 2


async def test_post_is_not_retried_after_its_bytes_were_sent() -> None:
    async with Scripted(read_then_close_answer_then(OK)) as server:
        upstream = lean()
        assert await fetch(upstream, request(server.url)) == (200, b"ok")
        assert_one_live_idle(upstream)
        with pytest.raises(UpstreamError) as caught:
            await fetch(upstream, request(server.url, method="POST", body=parts(b"pay")))
        await upstream.aclose()
    assert caught.value.status == 502
    assert server.connections == 1


async def test_a_fresh_connection_closed_unanswered_is_502_not_retried() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")

    async with Scripted(handler) as server:
        upstream = lean()
        with pytest.raises(UpstreamError) as caught:
            await fetch(upstream, request(server.url))
        await upstream.aclose()
    assert caught.value.status == 502
    assert server.connections == 1


async def test_bytes_on_an_idle_connection_close_it() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK)
        await asyncio.sleep(0.05)
        writer.write(OK)  # nobody asked: never read as the next request's answer
        await reader.read()

    async with Scripted(handler) as server:
        upstream = lean()
        assert await fetch(upstream, request(server.url)) == (200, b"ok")
        await asyncio.sleep(0.2)
        idle = next(iter(upstream._idle.values()))
        assert idle[0].closed
        await upstream.aclose()


async def test_idle_connections_expire() -> None:
    upstream = LeanUpstreamPool(max_connections=4, max_idle=4, keepalive_expiry=0.1)
    async with RawUpstream(OK) as raw:
        await fetch(upstream, request(raw.url))
        assert upstream._idle_count == 1
        await asyncio.sleep(0.3)
        assert upstream._idle_count == 0
        await fetch(upstream, request(raw.url))
        await upstream.aclose()


# Timeouts and limits


async def test_open_connections_stay_within_max_connections() -> None:
    upstream = lean(1, 1)
    async with RawUpstream(OK) as first, RawUpstream(OK) as second:
        await fetch(upstream, request(first.url))
        (kept,) = next(iter(upstream._idle.values()))
        await fetch(upstream, request(second.url))  # the idle one to ``first`` makes room
        assert kept.closed
        assert upstream._idle_count == 1
        await upstream.aclose()


async def test_connect_timeout_is_504() -> None:
    upstream = lean()
    with SilentServer() as port, pytest.raises(UpstreamTimeoutError) as caught:
        # TCP connects, the TLS handshake is never answered: connecting takes too long
        await fetch(upstream, request(f"https://127.0.0.1:{port}", connect=0.2))
    assert caught.value.status == 504
    assert upstream._slots._value == 8  # the slot came back
    await upstream.aclose()


async def test_refused_connection_is_502() -> None:
    upstream = lean()
    with SilentServer() as port:
        pass  # the listener is gone: the port refuses
    with pytest.raises(UpstreamError) as caught:
        await fetch(upstream, request(f"http://127.0.0.1:{port}"))
    assert caught.value.status == 502
    assert upstream._slots._value == 8


async def test_no_answer_is_504_after_the_read_timeout() -> None:
    with SilentServer() as port:
        upstream = lean()
        with pytest.raises(UpstreamTimeoutError):
            await fetch(upstream, request(f"http://127.0.0.1:{port}", read=0.2))
        await upstream.aclose()


async def test_read_timeout_mid_body_fails_and_drops_the_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf")
        await writer.drain()
        await asyncio.sleep(2)

    async with Scripted(handler) as server:
        upstream = lean()
        response = await upstream.send(request(server.url, read=0.2))
        assert await response.read() == b"half"
        with pytest.raises(UpstreamTimeoutError):
            await response.read()
        await response.aclose()
        assert upstream._idle_count == 0
        await upstream.aclose()


async def test_upstream_closing_mid_body_is_502() -> None:
    cut = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf"
    async with Scripted(replies(cut)) as server:
        upstream = lean()
        response = await upstream.send(request(server.url))
        assert await response.read() == b"half"
        with pytest.raises(UpstreamError) as caught:
            await response.read()
        await response.aclose()
        await upstream.aclose()
    assert caught.value.status == 502


async def test_full_pool_is_pool_exhausted_within_the_connect_timeout() -> None:
    upstream = lean(1, 1)
    with ThreadServer(PeerEcho()) as server:
        slow = asyncio.ensure_future(fetch(upstream, request(server.url, "/slow")))
        await asyncio.sleep(0.1)
        with pytest.raises(PoolExhaustedError) as caught:
            await fetch(upstream, request(server.url, connect=0.1))
        assert caught.value.status == 503
        assert (await slow)[0] == 200
        assert (await fetch(upstream, request(server.url)))[0] == 200  # the slot came back
        await upstream.aclose()


async def test_response_header_limits() -> None:
    many = b"".join(b"x-%d: 1\r\n" % i for i in range(MAX_RESPONSE_HEADERS + 1))
    too_many = b"HTTP/1.1 200 OK\r\n" + many + b"content-length: 0\r\n\r\n"
    too_long = b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * 17000 + b"\r\ncontent-length: 0\r\n\r\n"
    huge = b"HTTP/1.1 200 OK\r\n" + b"".join(b"x: " + b"a" * 8000 + b"\r\n" for _ in range(9))
    for reply in (too_many, too_long, huge):
        async with Scripted(replies(reply)) as server:
            upstream = lean()
            with pytest.raises(MalformedResponseError) as caught:
                await fetch(upstream, request(server.url))
            await upstream.aclose()
        assert caught.value.status == 502


# Response smuggling: ambiguous framing is refused and the connection never reused


SMUGGLING = {
    "cl_and_te": b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n"
    b"0\r\n\r\n",
    "te_and_cl": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n"
    b"0\r\n\r\n",
    "differing_cl": b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 7\r\n\r\nok",
    "same_cl_twice": b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\nok",
    "bad_cl": b"HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\nok",
    "cl_list": b"HTTP/1.1 200 OK\r\ncontent-length: 2, 2\r\n\r\nok",
    "gzip_te": b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nok",
    "obs_fold": b"HTTP/1.1 200 OK\r\nx-a: 1\r\n folded\r\ncontent-length: 2\r\n\r\nok",
    "nul_value": b"HTTP/1.1 200 OK\r\nx-a: 1\x002\r\ncontent-length: 2\r\n\r\nok",
    "bare_cr": b"HTTP/1.1 200 OK\r\nx-a: 1\r2\r\ncontent-length: 2\r\n\r\nok",
    "switching": b"HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\n\r\n",
    "two_responses": OK + b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nevil!",
}


@pytest.mark.parametrize("shape", sorted(SMUGGLING))
async def test_smuggling_shaped_response_is_refused_not_reused(shape: str) -> None:
    async with Scripted(replies(SMUGGLING[shape], OK)) as server:
        upstream = lean()
        if shape == "two_responses":  # the first is whole and relayed; the rest is dropped
            assert await fetch(upstream, request(server.url)) == (200, b"ok")
        else:
            with pytest.raises(MalformedResponseError) as caught:
                await fetch(upstream, request(server.url))
            assert caught.value.status == 502
        assert upstream._idle_count == 0
        assert await fetch(upstream, request(server.url)) == (200, b"ok")
        await upstream.aclose()
    assert server.connections == 2


async def test_response_with_cl_and_te_is_refused_not_reused() -> None:
    async with Scripted(replies(SMUGGLING["cl_and_te"], OK)) as server:
        upstream = lean()
        with pytest.raises(MalformedResponseError):
            await fetch(upstream, request(server.url))
        assert upstream._idle_count == 0
        await upstream.aclose()
    assert server.connections == 1


# TLS


def _certificate(
    subject: str, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None, *, ca: bool
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer if issuer is not None else (name, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256()), key


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tls")
    ca, ca_key = _certificate("Test CA", None, ca=True)
    leaf, leaf_key = _certificate("localhost", (ca.subject, ca_key), ca=False)
    files = {"ca": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


async def test_tls_upstream_is_verified_with_sni(tls_files: dict[str, Path]) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(tls_files["cert"], tls_files["key"])
    names: list[str | None] = []

    def seen(sock: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
        names.append(name)

    server_context.sni_callback = seen  # type: ignore[assignment]
    server = await asyncio.start_server(replies(OK, OK), "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    trusting = ssl.create_default_context(cafile=str(tls_files["ca"]))
    upstream = lean(ssl_context=trusting)
    assert await fetch(upstream, request(f"https://localhost:{port}")) == (200, b"ok")
    assert await fetch(upstream, request(f"https://localhost:{port}")) == (200, b"ok")
    await upstream.aclose()
    untrusting = lean(ssl_context=ssl.create_default_context())  # the test CA is unknown
    with pytest.raises(UpstreamError) as caught:
        await fetch(untrusting, request(f"https://localhost:{port}"))
    await untrusting.aclose()
    server.close()
    # one handshake for the two requests (kept alive), one refused: both with SNI
    assert names == ["localhost", "localhost"]
    assert caught.value.status == 502
    assert "SSLCertVerificationError" in str(caught.value)


# Selection


def test_the_proxy_uses_the_lean_client_unless_aiohttp_is_chosen() -> None:
    from verity.gateway.pool import UpstreamPool

    assert isinstance(new_transport(UpstreamPoolConfig()), LeanUpstreamPool)
    assert isinstance(new_transport(UpstreamPoolConfig(client="aiohttp")), UpstreamPool)
    with pytest.raises(ValueError, match="client"):
        UpstreamPoolConfig(client="curl")  # type: ignore[arg-type]
