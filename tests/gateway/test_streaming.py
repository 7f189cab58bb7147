"""The proxy over real sockets: streaming both ways, 413 mid-stream, 502 and 504."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from verity.gateway.proxy import new_transport
from verity.gateway.settings import UpstreamPoolConfig

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
        if path.startswith("/echo"):
            await self._echo(scope, send)
            return
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

    async def _echo(self, scope: dict[str, Any], send: Any) -> None:
        """The request line and headers as the upstream saw them (JSON), a 204 on HEAD."""
        if scope["method"] == "HEAD":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        seen = {
            "method": scope["method"],
            "raw_path": scope["raw_path"].decode("latin-1"),
            "query": scope["query_string"].decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
        }
        body = json.dumps(seen).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"), (b"content-encoding", b"identity"),
            (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2"), (b"connection", b"x-hop"),
            (b"x-hop", b"1")]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})

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


@pytest.fixture(params=["lean", "aiohttp", "httpx"])
def gateway_url(
    make_gateway: MakeGateway,
    streaming_upstream: tuple[StreamingUpstream, str],
    request: pytest.FixtureRequest,
) -> Iterator[str]:
    """The gateway over real sockets, with each production client (the lean default and
    aiohttp) and with an httpx transport (the adapter tests use in-process)."""
    _, url = streaming_upstream
    routes = [
        {"name": "app", "host": "app.test", "upstream": url, "max_body_bytes": 2 * LARGE},
        {"name": "small", "host": "small.test", "upstream": url, "max_body_bytes": 100_000},
        {"name": "slow", "host": "slow.test", "upstream": url, "read_timeout_seconds": 0.3},
        {"name": "down", "host": "down.test", "upstream": f"http://127.0.0.1:{free_port()}",
         "connect_timeout_seconds": 1},
    ]  # fmt: skip
    transport = (
        httpx.AsyncHTTPTransport()
        if request.param == "httpx"
        else new_transport(UpstreamPoolConfig.model_validate({"client": request.param}))
    )
    gateway = make_gateway(config=gateway_config(routes=routes), transport=transport)
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


async def test_the_upstream_sees_exactly_the_cleaned_request(
    gateway_url: str, streaming_upstream: tuple[StreamingUpstream, str], issuer: Issuer
) -> None:
    headers = [("Host", "app.test"), ("Authorization", f"Bearer {issuer.token()}"),
               ("X-Verity-User", "mallory"), ("Remote_User", "mallory"), ("X-Dup", "1"),
               ("X-Dup", "2"), ("Connection", "keep-alive, X-Hop"), ("X-Hop", "1"),
               ("X-Forwarded-For", "6.6.6.6"), ("Accept", "application/json")]  # fmt: skip
    async with httpx.AsyncClient(timeout=10) as client:
        client.headers.clear()  # no User-Agent, Accept-Encoding...: only what is listed here
        response = await client.get(f"{gateway_url}/echo/%61/b/%7E/c?q=%zz&r=1",
                                    headers=headers)  # fmt: skip
    assert response.status_code == 200
    seen = response.json()
    assert seen["raw_path"] == "/echo/a/b/~/c"  # the canonical path the policy decided on
    assert seen["query"] == "q=%zz&r=1"
    names = [name for name, _ in seen["headers"]]
    values = {name: [v for n, v in seen["headers"] if n == name] for name in names}
    assert sorted(set(names)) == [  # nothing added by the gateway's HTTP client
        "accept", "host", "x-dup", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
        "x-verity-assertion", "x-verity-decision-id", "x-verity-email", "x-verity-groups",
        "x-verity-user",
    ]  # fmt: skip
    assert values["x-dup"] == ["1", "2"]
    assert values["accept"] == ["application/json"]
    assert values["host"] == [streaming_upstream[1].removeprefix("http://")]  # the upstream's
    assert values["x-forwarded-for"] == ["127.0.0.1"]  # an untrusted peer's XFF is replaced
    assert values["x-verity-user"] == ["alice"]
    assert len(values["x-verity-assertion"]) == 1
    assert "mallory" not in json.dumps(seen)
    assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert "x-hop" not in response.headers
    assert response.headers["content-encoding"] == "identity"


async def test_head_and_no_content_responses_pass_through(gateway_url: str, issuer: Issuer) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        headers = {"Host": "app.test", **bearer(issuer.token())}
        head = await client.head(f"{gateway_url}/echo", headers=headers)
        after = await client.get(f"{gateway_url}/echo", headers=headers)  # connection reused
    assert head.status_code == 204
    assert head.content == b""
    assert after.status_code == 200


async def test_declared_content_length_over_the_limit_is_413_before_the_upstream(
    gateway_url: str, streaming_upstream: tuple[StreamingUpstream, str], issuer: Issuer
) -> None:
    upstream, _ = streaming_upstream
    before = list(upstream.completed)
    async with httpx.AsyncClient(timeout=10) as client:
        headers = {"Host": "small.test", **bearer(issuer.token())}
        response = await client.post(f"{gateway_url}/big", content=b"x" * 200_000,
                                      headers=headers)  # fmt: skip
    assert response.status_code == 413
    assert response.json()["error"] == "request_too_large"
    assert upstream.completed == before


def test_non_utf8_header_value_is_400_on_aiohttp_and_sent_as_is_otherwise(
    gateway_url: str, issuer: Issuer, request: pytest.FixtureRequest
) -> None:
    host, port = gateway_url.removeprefix("http://").split(":")
    head = (f"GET /echo HTTP/1.1\r\nHost: app.test\r\nAuthorization: Bearer {issuer.token()}\r\n"
            "X-Latin1: caf\xe9\r\nConnection: close\r\n\r\n").encode("latin-1")  # fmt: skip
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        answer = sock.recv(65536)
    if "aiohttp" in request.node.callspec.id:  # it writes UTF-8: refused, never altered
        assert answer.startswith(b"HTTP/1.1 400"), answer[:100]
        assert b"Malformed request header." in answer
    else:  # the lean client and httpx send the bytes as they are
        assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
        assert b"caf\\u00e9" in answer  # as the echo's JSON escapes it


@pytest.mark.parametrize("transport", ["lean", "aiohttp", "httpx"])
def test_trickled_request_body_is_cut_at_the_body_deadline_and_frees_the_upstream(
    make_gateway: MakeGateway,
    streaming_upstream: tuple[StreamingUpstream, str],
    issuer: Issuer,
    transport: str,
) -> None:
    # the review: an allowed request whose body trickled in (one byte at a time) held a
    # gateway connection and an upstream slot forever; the route's read timeout never
    # fired, because the upstream was waiting for the body
    upstream, url = streaming_upstream
    routes = [{"name": "app", "host": "app.test", "upstream": url, "read_timeout_seconds": 60}]
    client = None
    if transport != "httpx":
        client = new_transport(UpstreamPoolConfig.model_validate({"client": transport}))
    gateway = make_gateway(
        config=gateway_config(routes=routes, body_timeout_seconds=1.0),
        transport=client or httpx.AsyncHTTPTransport(),
    )
    head = (f"POST /trickle HTTP/1.1\r\nHost: app.test\r\nAuthorization: Bearer {issuer.token()}"
            "\r\nContent-Length: 100000\r\n\r\n").encode()  # fmt: skip
    with (
        ThreadServer(gateway, lifespan="on") as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock,
    ):
        sock.sendall(head + b"x" * 100)
        sock.settimeout(0.1)
        started, answer = time.monotonic(), b""
        while not answer and time.monotonic() - started < 6:
            try:
                sock.sendall(b"x")  # 10 bytes a second: far below 1 KiB/s
                answer = sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert b"connection: close" in answer.lower()
    assert elapsed < 3.0, elapsed
    assert [c for c in upstream.completed if c[0] == "/trickle"] == []


def test_trickled_body_to_a_gateway_app_is_cut_at_the_body_deadline(
    make_gateway: MakeGateway,
) -> None:
    # the review: the login and IdP apps read form bodies before anyone signed in; one
    # trickled a byte at a time held the connection forever (the header deadline was over)
    async def login_form(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RuntimeError("client went away")  # what a form parser raises
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"%d" % len(body)})

    gateway = make_gateway(
        config=gateway_config(body_timeout_seconds=1.0), mounts=[("/verity/login", login_form)]
    )
    head = b"POST /verity/login/password HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5000\r\n\r\n"
    with (
        ThreadServer(gateway) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock,
    ):
        sock.sendall(head + b"a=1")
        sock.settimeout(0.1)
        started, answer = time.monotonic(), b""
        while not answer and time.monotonic() - started < 6:
            try:
                sock.sendall(b"x")
                answer = sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
        elapsed = time.monotonic() - started
        sock.settimeout(5)
        sock.sendall(b"x" * 4000)  # the rest, too late: nothing more is answered
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert elapsed < 3.0, elapsed
    with (
        ThreadServer(gateway) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock,
    ):  # a body that arrives in time is the app's as before
        sock.sendall(head.replace(b"5000", b"3") + b"a=1")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
