"""The proxy over real sockets: streaming both ways, 413 mid-stream, 502 and 504."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from .conftest import Issuer, MakeGateway, bearer, gateway_config
from .servers import ThreadServer, free_port

pytestmark = pytest.mark.anyio
CHUNK = 64 * 1024
LARGE = 32 * 1024 * 1024


class StreamingUpstream:
    """Upload counts chunks and flags the first; download pauses after the first chunk."""

    def __init__(self) -> None:
        self.first_chunk = threading.Event()
        self.release = threading.Event()
        self.download_done = threading.Event()
        self.completed: list[tuple[str, int, int]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"]
        if path == "/slow":
            await asyncio.sleep(3)
        if path == "/download":
            await self._download(send)
            return
        total = chunks = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            if message.get("body"):
                total += len(message["body"])
                chunks += 1
                self.first_chunk.set()
            if not message.get("more_body", False):
                break
        self.completed.append((path, total, chunks))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": f"{total} {chunks}".encode()})

    async def _download(self, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(CHUNK + LARGE).encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": b"a" * CHUNK, "more_body": True})
        for _ in range(500):
            if self.release.is_set():
                break
            await asyncio.sleep(0.01)
        block = b"b" * (1024 * 1024)
        for _ in range(LARGE // len(block)):
            await send({"type": "http.response.body", "body": block, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        self.download_done.set()


@pytest.fixture(scope="module")
def streaming_upstream() -> Iterator[tuple[StreamingUpstream, str]]:
    app = StreamingUpstream()
    with ThreadServer(app) as server:
        yield app, server.url


@pytest.fixture
def gateway_url(
    make_gateway: MakeGateway, streaming_upstream: tuple[StreamingUpstream, str]
) -> Iterator[str]:
    _, url = streaming_upstream
    routes = [
        {"name": "app", "host": "app.test", "upstream": url, "max_body_bytes": 2 * LARGE},
        {"name": "small", "host": "small.test", "upstream": url, "max_body_bytes": 100_000},
        {"name": "slow", "host": "slow.test", "upstream": url, "read_timeout_seconds": 0.3},
        {"name": "down", "host": "down.test", "upstream": f"http://127.0.0.1:{free_port()}",
         "connect_timeout_seconds": 1},
    ]  # fmt: skip
    gateway = make_gateway(
        config=gateway_config(routes=routes), transport=httpx.AsyncHTTPTransport()
    )
    with ThreadServer(gateway, lifespan="on") as server:
        yield server.url


async def test_request_body_streams_to_upstream_without_buffering(
    gateway_url: str, streaming_upstream: tuple[StreamingUpstream, str], issuer: Issuer
) -> None:
    upstream, _ = streaming_upstream
    upstream.first_chunk.clear()

    async def body() -> AsyncIterator[bytes]:
        yield b"x" * CHUNK
        for _ in range(500):  # the upstream has the first chunk before we send the rest
            if upstream.first_chunk.is_set():
                break
            await asyncio.sleep(0.01)
        assert upstream.first_chunk.is_set(), "the gateway buffered the request body"
        for _ in range(LARGE // CHUNK):
            yield b"y" * CHUNK

    async with httpx.AsyncClient(timeout=30) as client:
        headers = {"Host": "app.test", **bearer(issuer.token())}
        response = await client.post(f"{gateway_url}/upload", content=body(), headers=headers)
    total, chunks = map(int, response.text.split())
    assert response.status_code == 200
    assert total == CHUNK + LARGE
    assert chunks > 16


async def test_response_body_streams_to_client_without_buffering(
    gateway_url: str, streaming_upstream: tuple[StreamingUpstream, str], issuer: Issuer
) -> None:
    upstream, _ = streaming_upstream
    upstream.release.clear()
    upstream.download_done.clear()
    received = 0
    async with httpx.AsyncClient(timeout=30) as client:
        headers = {"Host": "app.test", **bearer(issuer.token())}
        async with client.stream("GET", f"{gateway_url}/download", headers=headers) as response:
            async for chunk in response.aiter_raw():
                if received == 0:
                    assert not upstream.download_done.is_set()
                    upstream.release.set()  # the first bytes arrived before the rest existed
                received += len(chunk)
    assert received == CHUNK + LARGE


def test_chunked_body_over_the_limit_is_413_and_never_completes_upstream(
    gateway_url: str, streaming_upstream: tuple[StreamingUpstream, str], issuer: Issuer
) -> None:
    upstream, _ = streaming_upstream
    before = [c for c in upstream.completed if c[0] == "/too-big"]
    host, port = gateway_url.removeprefix("http://").split(":")
    chunk = b"z" * 16384
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(13)) + b"0\r\n\r\n"
    head = (f"POST /too-big HTTP/1.1\r\nHost: small.test\r\nAuthorization: Bearer {issuer.token()}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()  # fmt: skip
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + body)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
    time.sleep(0.2)
    assert [c for c in upstream.completed if c[0] == "/too-big"] == before


async def test_upstream_down_is_502(gateway_url: str, issuer: Issuer) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(
            f"{gateway_url}/", headers={"Host": "down.test", **bearer(issuer.token())}
        )
    assert response.status_code == 502
    assert response.json()["error"] == "bad_gateway"


async def test_slow_upstream_is_504_within_the_read_timeout(
    gateway_url: str, issuer: Issuer
) -> None:
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(
            f"{gateway_url}/slow", headers={"Host": "slow.test", **bearer(issuer.token())}
        )
    assert response.status_code == 504
    assert time.monotonic() - started < 2.5


async def test_unauthenticated_over_real_sockets(gateway_url: str) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(
            f"{gateway_url}/", headers={"Host": "app.test", "X-Verity-User": "x"}
        )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="verity"'
