"""Resource limits before any authentication, over real sockets against the gateway served
as ``verity serve`` serves it (``uvicorn_options``), with each HTTP parser uvicorn may
use: header bytes, header time (slowloris), open connections and concurrent requests."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from verity.cli.serve import uvicorn_options
from verity.config import VerityConfig, parse_config
from verity.errors import ConfigError
from verity.gateway.http_limits import LimitedH11Protocol, LimitedHttpToolsProtocol

from .conftest import POLICY, ROUTES, MakeGateway, RecordingUpstream
from .servers import ThreadServer, free_port, serve_options

PARSERS = ["h11", "httptools"]
HEAD = b"GET /x HTTP/1.1\r\nHost: app.test\r\n"


def config_with(**gateway: Any) -> VerityConfig:
    section = {"public_url": "https://gateway.test", "routes": ROUTES, **gateway}
    return parse_config({"gateway": section})


@contextmanager
def served(make_gateway: MakeGateway, parser: str, **gateway: Any) -> Iterator[ThreadServer]:
    config = config_with(**gateway)
    options = serve_options(config)
    base = LimitedH11Protocol if parser == "h11" else LimitedHttpToolsProtocol
    assert base is not None
    assert issubclass(options["http"], base) or parser != "httptools"
    if parser == "h11":  # the same limits, on the h11 class
        options["http"] = type("H11", (LimitedH11Protocol,), {"limits": options["http"].limits})
    with ThreadServer(make_gateway(config=config.gateway), **options) as server:
        yield server


def connect(server: ThreadServer, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    return sock


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def read_response(reader: Any) -> int:
    """One HTTP/1.1 response from ``reader`` (``socket.makefile("rb")``): its status."""
    status = int(reader.readline().split()[1])
    length = 0
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    reader.read(length)
    return status


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.parametrize("parser", PARSERS)
def test_huge_header_block_is_cut_at_the_limit_without_being_buffered(
    make_gateway: MakeGateway, parser: str
) -> None:
    # the review: 4 connections x 150 MB of header grew the gateway by 570 MB
    piece = b"a" * 65536
    with served(make_gateway, parser) as server:
        before = rss_bytes()
        sent_per_connection = []
        for _ in range(2):
            sent = 0
            with connect(server) as sock:
                try:
                    sock.sendall(HEAD + b"X-Big: ")
                    while sent < 64 * 1024 * 1024:
                        sock.sendall(piece)
                        sent += len(piece)
                except OSError:  # reset / broken pipe: the gateway cut the connection
                    pass
            sent_per_connection.append(sent)
        grown = rss_bytes() - before
    # what the kernel's socket buffers took, not 64 MB; and the process did not keep it
    assert all(sent < 16 * 1024 * 1024 for sent in sent_per_connection), sent_per_connection
    assert grown < 24 * 1024 * 1024, grown


@pytest.mark.parametrize("parser", PARSERS)
def test_header_block_over_the_limit_is_answered_431(
    make_gateway: MakeGateway, parser: str
) -> None:
    with served(make_gateway, parser, max_header_bytes=4096) as server, connect(server) as sock:
        sock.sendall(HEAD + b"X-Big: " + b"a" * 20000)  # never ends: no blank line
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]


@pytest.mark.parametrize("parser", PARSERS)
def test_header_block_reaching_the_limit_exactly_then_one_more_byte_is_answered_431(
    make_gateway: MakeGateway, parser: str
) -> None:
    limit = 4096 + 8192  # max_header_bytes + room for the request line
    with served(make_gateway, parser, max_header_bytes=4096) as server, connect(server) as sock:
        start = HEAD + b"X-Big: "
        sock.sendall(start + b"a" * (limit - len(start)))  # exactly the limit, unfinished
        time.sleep(0.3)
        sock.sendall(b"a")
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]


@pytest.mark.parametrize("parser", PARSERS)
def test_large_body_in_the_same_packet_as_a_small_head_is_not_mistaken_for_headers(
    make_gateway: MakeGateway, parser: str
) -> None:
    body = b"b" * 300_000
    request = (
        b"POST /x HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n"
        b"X-Fill: " + b"f" * 3000 + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    with served(make_gateway, parser, max_header_bytes=4096) as server, connect(server) as sock:
        sock.sendall(request + body)
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:80]  # decided: no token


@pytest.mark.parametrize("parser", PARSERS)
def test_pipelined_and_keep_alive_requests_within_the_limits_are_all_answered(
    make_gateway: MakeGateway, parser: str
) -> None:
    request = HEAD + b"X-Fill: " + b"f" * 3000 + b"\r\n\r\n"  # 3 KB heads, 4 KB limit
    with served(make_gateway, parser, max_header_bytes=4096) as server, connect(server) as sock:
        sock.sendall(request * 3)  # one packet: more head bytes than the limit in total
        reader = sock.makefile("rb")
        statuses = [read_response(reader) for _ in range(3)]
        for _ in range(3):  # and one after another on the same connection, in pieces
            sock.sendall(request[:100])
            time.sleep(0.05)
            sock.sendall(request[100:])
            statuses.append(read_response(reader))
    assert statuses == [401] * 6


@pytest.mark.parametrize("parser", PARSERS)
def test_slowloris_header_trickle_is_closed_at_the_header_deadline(
    make_gateway: MakeGateway, parser: str
) -> None:
    with (
        served(make_gateway, parser, header_timeout_seconds=1.0) as server,
        connect(server) as sock,
    ):
        started = time.monotonic()
        sock.sendall(HEAD)
        try:
            for _ in range(40):  # one header byte every 0.1 s: 4 s if never cut
                sock.sendall(b"X")
                time.sleep(0.1)
        except OSError:
            pass
        answer = read_all(sock)
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 ") or answer == b"", answer[:80]
    assert elapsed < 3.0, elapsed


@pytest.mark.parametrize("parser", PARSERS)
def test_silent_connection_and_slow_second_request_are_closed_at_the_header_deadline(
    make_gateway: MakeGateway, parser: str
) -> None:
    with served(make_gateway, parser, header_timeout_seconds=1.0) as server:
        with connect(server) as silent:
            started = time.monotonic()
            answer = read_all(silent)  # sends nothing at all
            assert time.monotonic() - started < 3.0
            assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
        with connect(server) as keep_alive:
            keep_alive.sendall(HEAD + b"\r\n")
            first = keep_alive.recv(65536)
            assert first.startswith(b"HTTP/1.1 401 "), first[:80]
            keep_alive.sendall(HEAD)  # the next request's head never ends
            started = time.monotonic()
            answer = read_all(keep_alive)
            assert time.monotonic() - started < 3.0
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]


@pytest.mark.parametrize("parser", PARSERS)
def test_requests_beyond_the_concurrency_limit_are_answered_503(
    make_gateway: MakeGateway, parser: str
) -> None:
    limits = {"max_concurrent_requests": 3, "max_connections": 10}
    with served(make_gateway, parser, **limits) as server, ExitStack() as stack:
        holders = [stack.enter_context(connect(server)) for _ in range(2)]
        for holder in holders:  # two slow requests in progress (headers not finished)
            holder.sendall(HEAD)
        time.sleep(0.2)
        with connect(server) as third:
            third.sendall(HEAD + b"Connection: close\r\n\r\n")
            answer = read_all(third)
        assert answer.startswith(b"HTTP/1.1 503 "), answer[:80]
        for holder in holders:
            holder.close()
        time.sleep(0.2)
        with connect(server) as later:
            later.sendall(HEAD + b"Connection: close\r\n\r\n")
            assert read_all(later).startswith(b"HTTP/1.1 401 ")


@pytest.mark.parametrize("parser", PARSERS)
def test_connections_beyond_max_connections_are_refused_before_reading(
    make_gateway: MakeGateway, parser: str
) -> None:
    limits = {"max_concurrent_requests": 3, "max_connections": 3}
    with served(make_gateway, parser, **limits) as server, ExitStack() as stack:
        for _ in range(3):
            stack.enter_context(connect(server))
        time.sleep(0.2)
        with connect(server) as extra:
            answer = read_all(extra)  # without sending a byte
    assert answer.startswith(b"HTTP/1.1 503 "), answer[:80]


@pytest.mark.parametrize("tls", [False, True])
def test_every_serve_path_uses_the_capped_protocol(tls: bool, tmp_path: Path) -> None:
    gateway: dict[str, Any] = {"header_timeout_seconds": 2.5, "max_connections": 77,
                               "max_concurrent_requests": 50}  # fmt: skip
    if tls:
        gateway["tls"] = {"cert_file": str(tmp_path / "c.pem"), "key_file": str(tmp_path / "k")}
    options = uvicorn_options(config_with(**gateway), access_log=False)
    limits = options["http"].limits
    assert issubclass(options["http"], LimitedHttpToolsProtocol or LimitedH11Protocol)
    assert (limits.head_timeout_seconds, limits.max_connections) == (2.5, 77)
    assert limits.max_head_bytes == 32768 + 8192
    assert options["limit_concurrency"] == 50


@pytest.fixture
def verity_serve(tmp_path: Path) -> Iterator[int]:
    """``verity serve`` itself (the CLI's own uvicorn settings), with a 1 s header deadline."""
    port = free_port()
    (tmp_path / "policy.yaml").write_text(POLICY)
    config = tmp_path / "verity.yaml"
    config.write_text(
        f"server: {{port: {port}}}\n"
        "store: {url: 'sqlite:///verity.db'}\n"
        "policy: {path: policy.yaml, reload_seconds: 0}\n"
        "gateway:\n  public_url: https://gw.test\n  header_timeout_seconds: 1\n"
        "  max_header_bytes: 4096\n"
        "  routes:\n    - {name: app, host: app.test, upstream: 'http://127.0.0.1:9'}\n"
    )
    log = tmp_path / "stderr.log"
    verity = Path(sys.executable).parent / "verity"
    proc = subprocess.Popen(  # noqa: S603 - our own CLI
        [str(verity), "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL, stderr=log.open("wb"), cwd=tmp_path,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"verity serve did not start: {log.read_text()}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_verity_serve_cuts_huge_headers_and_slowloris_before_authentication(
    verity_serve: int,
) -> None:
    address = ("127.0.0.1", verity_serve)
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(HEAD + b"X-Big: " + b"a" * 20000)
        assert read_all(sock).startswith(b"HTTP/1.1 431 ")
    sent = 0
    with socket.create_connection(address, timeout=5) as sock:
        try:
            sock.sendall(HEAD + b"X-Big: ")
            while sent < 64 * 1024 * 1024:
                sock.sendall(b"a" * 65536)
                sent += 65536
        except OSError:
            pass
    assert sent < 16 * 1024 * 1024, sent
    with socket.create_connection(address, timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(HEAD)
        answer = read_all(sock)
        assert time.monotonic() - started < 3.0
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]


def test_limits_are_validated_with_their_key_path() -> None:
    with pytest.raises(ConfigError, match=r"gateway\.max_concurrent_requests"):
        config_with(max_connections=5, max_concurrent_requests=10)
    with pytest.raises(ConfigError, match=r"gateway\.header_timeout_seconds"):
        config_with(header_timeout_seconds=0)
    assert config_with().gateway.max_concurrent_requests <= config_with().gateway.max_connections


@pytest.mark.parametrize("parser", PARSERS)
def test_pipelined_requests_beyond_the_head_limit_in_one_packet_are_not_cut_as_431(
    make_gateway: MakeGateway, parser: str
) -> None:
    # the review: a cut inside a later pipelined head was taken for one oversized head
    request = HEAD + b"X-Fill: " + b"f" * 3000 + b"\r\n\r\n"  # 3 KB heads, 12 KB head cap
    with served(make_gateway, parser, max_header_bytes=4096) as server, connect(server) as sock:
        sock.sendall(request * 8)  # 24 KB in one write: every head well within the limit
        reader = sock.makefile("rb")
        statuses = [read_response(reader) for _ in range(8)]
    assert statuses == [401] * 8


@pytest.mark.parametrize("parser", PARSERS)
def test_refused_request_whose_body_trickles_on_is_closed_at_the_deadline(
    make_gateway: MakeGateway, parser: str
) -> None:
    # the review: the 401 is sent at once, then the never-ending body of the refused
    # request (one byte every few seconds) held the connection forever, before any sign-in
    head = b"POST /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 1000000000\r\n\r\n"
    with (
        served(make_gateway, parser, header_timeout_seconds=1.0) as server,
        connect(server) as sock,
    ):
        sock.sendall(head + b"b" * 1000)
        reader = sock.makefile("rb")
        assert read_response(reader) == 401
        started = time.monotonic()
        try:
            for _ in range(40):  # one body byte every 0.1 s: 4 s if never cut
                sock.sendall(b"b")
                time.sleep(0.1)
        except OSError:
            pass
        rest = reader.read()
        elapsed = time.monotonic() - started
    assert rest == b"", rest[:80]
    assert elapsed < 3.0, elapsed


@pytest.mark.parametrize("parser", PARSERS)
def test_body_that_ends_after_the_answer_keeps_the_connection_for_the_next_requests(
    make_gateway: MakeGateway, parser: str
) -> None:
    head = b"POST /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 10\r\n\r\n"
    with (
        served(make_gateway, parser, header_timeout_seconds=1.0) as server,
        connect(server) as sock,
    ):
        reader = sock.makefile("rb")
        sock.sendall(head + b"12345")
        assert read_response(reader) == 401  # answered before the body ended
        time.sleep(0.3)
        sock.sendall(b"67890")  # the body ends within the deadline
        statuses = []
        for _ in range(2):  # and the connection serves the next requests, past the deadline
            sock.sendall(HEAD + b"\r\n")
            statuses.append(read_response(reader))
            time.sleep(0.8)
    assert statuses == [401, 401]


@pytest.mark.parametrize("parser", PARSERS)
def test_content_length_with_transfer_encoding_is_refused_by_either_parser(
    make_gateway: MakeGateway, upstream: RecordingUpstream, parser: str
) -> None:
    # the review: h11 reads such a body as chunked and the gateway forwarded the client's
    # Content-Length with it, so the upstream connection's framing was the client's choice
    request = (b"POST /public/x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 40\r\n"
               b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n")  # fmt: skip
    with served(make_gateway, parser) as server, connect(server) as sock:
        sock.sendall(request)
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:80]
    assert upstream.seen == []
