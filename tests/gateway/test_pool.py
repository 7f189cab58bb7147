"""The upstream pool (aiohttp): keep-alive reuse, slots, timeouts, and exact requests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from verity.gateway.pool import (
    MalformedHeaderError,
    PoolExhaustedError,
    UpstreamError,
    UpstreamPool,
    UpstreamRequest,
    UpstreamTimeoutError,
)

from .servers import ThreadServer, free_port

pytestmark = pytest.mark.anyio


class PeerEcho:
    """Answers with the client port it saw (one port = one connection), slowly on /slow."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/slow":
            await asyncio.sleep(0.5)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(scope["client"][1]).encode()})


def pool(max_connections: int = 8, max_idle: int = 8) -> UpstreamPool:
    return UpstreamPool(max_connections=max_connections, max_idle=max_idle, keepalive_expiry=30)


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
    host, port = url.removeprefix("http://").split(":")
    return UpstreamRequest(
        method, "http", host, int(port), target, query, headers or [], body, connect, read
    )


async def fetch(upstream: UpstreamPool, outgoing: UpstreamRequest) -> tuple[int, bytes]:
    response = await upstream.send(outgoing)
    body = b""
    try:
        while not response.done():
            body += await response.read()
    finally:
        await response.aclose()
    return response.status, body


async def test_sequential_requests_reuse_one_connection() -> None:
    upstream = pool(4, 4)
    with ThreadServer(PeerEcho()) as server:
        ports = {(await fetch(upstream, request(server.url)))[1] for _ in range(5)}
        await upstream.aclose()
    assert len(ports) == 1


async def test_concurrent_requests_each_get_their_own_connection() -> None:
    upstream = pool()
    with ThreadServer(PeerEcho()) as server:
        slow = request(server.url, "/slow")
        ports = await asyncio.gather(*(fetch(upstream, slow) for _ in range(4)))
        again = await asyncio.gather(*(fetch(upstream, request(server.url)) for _ in range(4)))
        await upstream.aclose()
    assert len(set(ports)) == 4
    assert set(again) == set(ports)


async def test_no_keep_alive_when_no_idle_connection_may_be_kept() -> None:
    upstream = pool(4, 0)
    with ThreadServer(PeerEcho()) as server:
        ports = {(await fetch(upstream, request(server.url)))[1] for _ in range(3)}
        await upstream.aclose()
    assert len(ports) == 3


async def test_full_pool_is_pool_exhausted_within_the_connect_timeout() -> None:
    upstream = pool(1, 1)
    with ThreadServer(PeerEcho()) as server:
        slow = asyncio.ensure_future(fetch(upstream, request(server.url, "/slow")))
        await asyncio.sleep(0.1)
        with pytest.raises(PoolExhaustedError) as caught:
            await fetch(upstream, request(server.url, connect=0.1))
        assert caught.value.status == 503
        assert (await slow)[0] == 200
        assert (await fetch(upstream, request(server.url)))[0] == 200  # the slot came back
        await upstream.aclose()


async def test_refused_connection_is_502() -> None:
    upstream = pool()
    with pytest.raises(UpstreamError) as caught:
        await fetch(upstream, request(f"http://127.0.0.1:{free_port()}"))
    assert caught.value.status == 502
    assert (await asyncio.wait_for(upstream._slots.acquire(), 1)) is True  # slot released
    await upstream.aclose()


async def test_slow_upstream_is_504_after_the_read_timeout() -> None:
    upstream = pool()
    with ThreadServer(PeerEcho()) as server:
        with pytest.raises(UpstreamTimeoutError) as caught:
            await fetch(upstream, request(server.url, "/slow", read=0.1))
        await upstream.aclose()
    assert caught.value.status == 504


class RawUpstream:
    """A socket server that records each request's bytes and answers ``reply``."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> RawUpstream:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                body = b""
                lower = head.lower()
                if b"content-length:" in lower:
                    length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
                    body = await reader.readexactly(length)
                elif b"transfer-encoding: chunked" in lower:
                    body = await reader.readuntil(b"0\r\n\r\n")
                self.requests.append(head + body)
                writer.write(self.reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


async def test_request_is_sent_exactly_no_default_headers_duplicates_kept() -> None:
    headers = [(b"x-dup", b"1"), (b"x-dup", b"2"), (b"x-utf8", "caf\u00e9".encode()),
               (b"x-forwarded-for", b"203.0.113.9")]  # fmt: skip
    upstream = pool()
    async with RawUpstream(OK) as raw:
        outgoing = request(raw.url, "/a%2Fb/%7Ex", query=b"q=%zz&r=1", headers=headers)
        assert await fetch(upstream, outgoing) == (200, b"ok")
        await upstream.aclose()
    wire = raw.requests[0]
    lines = wire.split(b"\r\n")
    assert lines[0] == b"GET /a%2Fb/%7Ex?q=%zz&r=1 HTTP/1.1"
    names = [line.split(b":")[0].lower() for line in lines[1:] if line]
    assert sorted(names) == [b"host", b"x-dup", b"x-dup", b"x-forwarded-for", b"x-utf8"]
    assert b"x-dup: 1\r\nx-dup: 2\r\n" in wire.lower()
    assert "x-utf8: caf\u00e9".encode() in wire.lower()
    port = raw.url.rsplit(":", 1)[1]
    assert f"host: 127.0.0.1:{port}".encode() in wire.lower()


async def test_unsafe_query_bytes_are_percent_encoded() -> None:
    upstream = pool()
    async with RawUpstream(OK) as raw:
        await fetch(upstream, request(raw.url, query=b"a=\xe9\x7f b"))
        await upstream.aclose()
    assert raw.requests[0].startswith(b"GET /?a=%E9%7F%20b HTTP/1.1\r\n")


async def test_non_utf8_header_value_is_refused_before_sending() -> None:
    upstream = pool()
    async with RawUpstream(OK) as raw:
        with pytest.raises(MalformedHeaderError) as caught:
            await fetch(upstream, request(raw.url, headers=[(b"x-latin1", b"caf\xe9")]))
        await upstream.aclose()
    assert caught.value.status == 400
    assert raw.requests == []


async def parts(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def test_streamed_body_keeps_content_length_or_goes_chunked() -> None:
    upstream = pool()
    async with RawUpstream(OK) as raw:
        sized = [(b"content-length", b"6")]
        await fetch(upstream, request(raw.url, method="PUT", headers=sized,
                                      body=parts(b"abc", b"def")))  # fmt: skip
        await fetch(upstream, request(raw.url, method="POST", body=parts(b"abc", b"def")))
        await upstream.aclose()
    sized_wire, chunked_wire = raw.requests
    assert sized_wire.endswith(b"\r\n\r\nabcdef")
    assert b"transfer-encoding" not in sized_wire.lower()
    assert b"content-type" not in sized_wire.lower()
    assert b"transfer-encoding: chunked" in chunked_wire.lower()
    assert chunked_wire.endswith(b"0\r\n\r\n")


async def test_redirects_cookies_and_encodings_pass_through_untouched() -> None:
    gz = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"
    reply = (b"HTTP/1.1 302 Found\r\nlocation: /elsewhere\r\nset-cookie: s=1\r\n"
             b"set-cookie: t=2\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n%s"
             % (len(gz), gz))  # fmt: skip
    upstream = pool()
    async with RawUpstream(reply) as raw:
        response = await upstream.send(request(raw.url))
        body = await response.read()
        await response.aclose()
        await fetch(upstream, request(raw.url))
        await upstream.aclose()
    assert response.status == 302
    assert body == gz  # not decompressed
    assert (b"set-cookie", b"s=1") in response.headers
    assert (b"set-cookie", b"t=2") in response.headers
    assert len(raw.requests) == 2  # the redirect was not followed
    assert b"cookie" not in raw.requests[1].lower()  # and no cookie jar replays it
