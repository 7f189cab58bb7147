"""The fast path (``gateway.fast_path``) against the ASGI path, over real sockets.

The same corpus of raw requests goes to the gateway served as ``verity serve`` serves it
(httptools protocol of ``verity.gateway.http_limits``), once with the fast path on and
once off; every answer (status, headers, body), every request the upstream received and
every audit event (real SQLite audit log, verified) must be the same, except the values
that are unique per request (decision ids, assertions, dates). Then what only the fast
path does is checked on its own: pipelined requests answered in order and never started
before the previous answer, one write per response, the connection limits.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.responses import StreamingResponse

from verity.audit import AuditLog, CheckpointSigner, Query, generate_key, open_store, verify
from verity.config import ServerConfig, parse_config
from verity.gateway import fast_path
from verity.gateway.proxy import new_transport
from verity.gateway.settings import UpstreamPoolConfig

from .conftest import ROUTES, Issuer, MakeGateway, RecordingUpstream
from .servers import ThreadServer, free_port, serve_options

TRUSTED = ServerConfig(trusted_proxies=["127.0.0.0/8"], trusted_hops=1)
_DECISION_ID = re.compile(r"d[0-9a-f]{12}-[0-9a-f]{9}")
_VOLATILE_HEADERS = {b"date", b"x-verity-decision-id", b"x-verity-assertion"}


@dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def normalized(self) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        headers = [(n, b"*" if n in _VOLATILE_HEADERS else v) for n, v in self.headers]
        return self.status, headers, _DECISION_ID.sub("ID", self.body.decode()).encode()


class Reader:
    """HTTP/1.1 responses from a socket, one at a time (``HEAD`` ones have no body)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError
        self.buffer += chunk

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def answer(self, *, head: bool = False) -> Answer:
        status = int(self._line().split()[1])
        headers = []
        while line := self._line():
            name, _, value = line.partition(b":")
            headers.append((name.strip().lower(), value.strip()))
        fields = dict(headers)
        body = b""
        if head or status in (204, 304):
            pass
        elif b"content-length" in fields:
            body = self._take(int(fields[b"content-length"]))
        elif fields.get(b"transfer-encoding") == b"chunked":
            while size := int(self._line(), 16):
                body += self._take(size)
                self._take(2)
            self._take(2)
        return Answer(status, headers, body)

    def closed(self) -> bool:
        """True when the server closed the connection (nothing more within 0.2 s)."""
        self.sock.settimeout(0.2)
        try:
            self._fill()
        except (EOFError, ConnectionResetError):
            return True
        except TimeoutError:
            return False
        return False


def request(target: str, host: str = "app.test", method: str = "GET", **headers: str) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def check(uri: str, *, method: str = "GET", host: str = "fa.test", **headers: str) -> bytes:
    """An nginx ``auth_request`` check."""
    return request("/verity/auth", host, X_Original_URI=uri, X_Original_Method=method, **headers)


def corpus(issuer: Issuer) -> list[tuple[str, list[bytes], list[bool]]]:
    """(name, what is sent on one connection (each item in one send), HEAD per answer)."""
    good = f"Bearer {issuer.token()}"
    bob = f"Bearer {issuer.token('bob', groups=())}"
    forged = {"X_Verity_User": "root", "X_Forwarded_User": "root", "Remote_User": "root",
              "X_Forwarded_For": "1.2.3.4"}  # fmt: skip
    single: list[tuple[str, bytes]] = [
        ("fa allowed", check("/x?a=1", Authorization=good)),
        ("fa denied", check("/x", Authorization=bob)),
        ("fa 401", check("/x")),
        ("fa bad token", check("/x", Authorization="Bearer nope")),
        ("fa unrouted", check("/x", host="nowhere.test", Authorization=good)),
        ("fa ambiguous", check("/a/%2e%2e/b", Authorization=good)),
        ("fa encoded slash", check("/a%2fb", Authorization=good)),
        ("fa override", check("/x", Authorization=good, X_HTTP_Method_Override="DELETE")),
        ("fa query override", check("/x?_method=DELETE", Authorization=good)),
        ("fa trace", check("/x", method="TRACE", Authorization=good)),
        ("fa missing uri", request("/verity/auth", "fa.test", Authorization=good)),
        ("fa other dialect", check("/x", Authorization=good, X_Forwarded_Uri="/y")),
        ("fa forged", check("/x", Authorization=good, **forged)),
        ("fa head", check("/x", Authorization=good).replace(b"GET", b"HEAD", 1)),
        ("fa html deny", check("/x", Authorization=bob, Accept="text/html")),
        ("fa bad host", check("/x", host="bad host", Authorization=good)),
        ("fa repeated uri", check("/x", Authorization=good).replace(
            b"\r\n\r\n", b"\r\nX-Original-URI: /y\r\n\r\n")),
        ("traefik", request("/verity/auth/traefik", "gateway.test", X_Forwarded_Method="GET",
                            X_Forwarded_Uri="/x", X_Forwarded_Host="fa.test",
                            X_Forwarded_Proto="https", Authorization=good)),
        ("envoy", request("/verity/ext_authz/x/y?z=1", "fa.test", Authorization=good)),
        ("envoy denied", request("/verity/ext_authz/x", "fa.test", Authorization=bob)),
        ("proxy allowed", request("/api/x?q=1&r=%20", Authorization=good)),
        ("proxy public", request("/public/page")),
        ("proxy denied", request("/api/x", Authorization=bob)),
        ("proxy 401", request("/api/x")),
        ("proxy unrouted", request("/x", "nowhere.test", Authorization=good)),
        ("proxy no upstream", request("/x", "fa.test", Authorization=good)),
        ("proxy ambiguous", request("/api/%2e%2e/admin", Authorization=good)),
        ("proxy override", request("/api/x", Authorization=good, X_HTTP_Method_Override="PUT")),
        ("proxy forged", request("/api/x", Authorization=good, **forged)),
        ("proxy absolute", request("http://app.test/api/abs?x=1", Authorization=good)),
        ("proxy head", request("/api/x", method="HEAD", Authorization=good)),
        ("proxy delete", request("/api/x", method="DELETE", Authorization=good)),
        ("proxy html 401", request("/api/x", Accept="text/html")),
        ("proxy connection close", request("/api/x", Authorization=good, Connection="close")),
        ("proxy http/1.0", request("/api/x", Authorization=good).replace(b"HTTP/1.1", b"HTTP/1.0")),
        ("proxy body (asgi)", request("/api/x", method="POST", Authorization=good,
                                      Content_Length="3") + b"abc"),
        ("healthz (asgi)", request("/healthz")),
    ]  # fmt: skip
    cases = [(name, [sent], [b"HEAD " in sent[:5]]) for name, sent in single]
    pair = check("/x", Authorization=good) + request("/api/y", Authorization=good)
    cases.append(("pipelined pair", [pair], [False, False]))
    sequence = [check("/x", Authorization=good), request("/api/z", Authorization=bob),
                request("/api/z", method="HEAD", Authorization=good),
                check("/x", Authorization=good, Connection="close")]  # fmt: skip
    cases.append(("keep-alive sequence", sequence, [False, False, True, False]))
    return cases


class Served:
    """The gateway with a real audit log, served on a socket."""

    def __init__(self, make_gateway: MakeGateway, tmp_path: Path, **gateway: Any) -> None:
        self.db = tmp_path / "audit.db"
        key = tmp_path / "audit.key"
        self.public_key = generate_key(key)
        self.audit = AuditLog(
            open_store(f"sqlite:///{self.db}"), signer=CheckpointSigner.from_file(key)
        )
        section = {"public_url": "https://gateway.test", "routes": ROUTES, **gateway}
        self.config = parse_config({"gateway": section})
        self.gateway = make_gateway(config=self.config.gateway, server=TRUSTED, audit=self.audit)

    def events(self) -> list[dict[str, Any]]:
        self.audit.close()
        store = open_store(f"sqlite:///{self.db}", create=False)
        try:
            assert verify(store, self.public_key).ok
            return [record.event() for record in store.query(Query())]
        finally:
            store.close()


@contextmanager
def served(
    make_gateway: MakeGateway, tmp_path: Path, **gateway: Any
) -> Iterator[tuple[Served, ThreadServer]]:
    setup = Served(make_gateway, tmp_path, **gateway)
    with ThreadServer(setup.gateway, lifespan="on", **serve_options(setup.config)) as server:
        yield setup, server
    setup.audit.close()


def run_corpus(
    server: ThreadServer, cases: list[tuple[str, list[bytes], list[bool]]]
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, sends, heads in cases:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            reader = Reader(sock)
            answers = []
            if len(sends) == 1:
                sock.sendall(sends[0])
                answers = [reader.answer(head=head) for head in heads]
            else:
                for sent, head in zip(sends, heads, strict=True):
                    sock.sendall(sent)
                    answers.append(reader.answer(head=head))
            closed = reader.closed() if "close" in name or "1.0" in name else None
        results[name] = ([a.normalized() for a in answers], closed)
    return results


def normalized_event(event: dict[str, Any]) -> Any:
    def scrub(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: scrub(v, k) for k, v in value.items() if k not in ("time", "metadata")}
        if isinstance(value, list):
            return [scrub(v) for v in value]
        if isinstance(value, str):
            return _DECISION_ID.sub("ID", value)
        return value

    return scrub(event)


def seen_upstream(upstream: RecordingUpstream) -> list[Any]:
    return [
        (s.method, s.path, s.query, [(k, "*" if k in ("x-verity-assertion", "x-verity-decision-id")
                                     else v) for k, v in s.headers], s.body)
        for s in upstream.seen
    ]  # fmt: skip


def test_fast_path_answers_decides_and_audits_exactly_as_the_asgi_path(
    make_gateway: MakeGateway,
    issuer: Issuer,
    upstream: RecordingUpstream,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cases = corpus(issuer)
    answered = []
    original = fast_path.FastCycle.run_asgi

    async def counted(self: fast_path.FastCycle, app: object) -> None:
        answered.append(self.line.target)
        await original(self, app)

    monkeypatch.setattr(fast_path.FastCycle, "run_asgi", counted)
    outcomes = {}
    for mode in (True, False):
        upstream.seen.clear()
        folder = tmp_path / str(mode)
        folder.mkdir()
        with served(make_gateway, folder, fast_path=mode) as (setup, server):
            answers = run_corpus(server, cases)
        events = [normalized_event(e) for e in setup.events()]
        outcomes[mode] = (answers, events, seen_upstream(upstream))
        if mode:
            fast_count = len(answered)
    fast, slow = outcomes[True], outcomes[False]
    for name, _, _ in cases:
        assert fast[0][name] == slow[0][name], name
    assert fast[2] == slow[2]
    assert len(fast[1]) == len(slow[1]) >= len(cases)
    for one, other in zip(fast[1], slow[1], strict=True):
        assert one == other
    # the fast path did answer (all but the body, the health check and the HTTP/1.0
    # request counted once each), and only when on
    assert fast_count == len(answered) >= sum(len(h) for _, _, h in cases) - 2
    statuses = {name: [a[0] for a in answers] for name, (answers, _) in fast[0].items()}
    expected = {"fa allowed": [200], "proxy allowed": [200], "fa denied": [403],
                "fa 401": [401], "proxy ambiguous": [400], "fa ambiguous": [400],
                "proxy unrouted": [404], "pipelined pair": [200, 200],
                "keep-alive sequence": [200, 403, 200, 200]}  # fmt: skip
    assert {name: statuses[name] for name in expected} == expected
    closed = {name: fast[0][name][1] for name in ("proxy http/1.0", "proxy connection close")}
    assert closed == {"proxy http/1.0": True, "proxy connection close": True}


def test_forged_identity_headers_never_reach_the_upstream_on_the_fast_path(
    make_gateway: MakeGateway, issuer: Issuer, upstream: RecordingUpstream, tmp_path: Path
) -> None:
    forged = request("/api/x", Authorization=f"Bearer {issuer.token()}", X_Verity_User="root",
                     X_Forwarded_User="root", Remote_User="root", X_Verity_Email="x@y")  # fmt: skip
    with (
        served(make_gateway, tmp_path) as (_, server),
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock,
    ):
        sock.sendall(forged)
        assert Reader(sock).answer().status == 200
    seen = upstream.seen[0]
    assert seen.header("x-verity-user") == ["alice"]
    assert seen.header("x-verity-email") == ["alice@example.com"]
    assert seen.header("remote-user") == []
    assert seen.header("x-forwarded-user") == []


class SlowUpstream:
    """An upstream that takes ``delay`` seconds per request and records when each ran;
    its answers have a ``Content-Length``."""

    def __init__(self, delay: float = 0.3) -> None:
        self.delay = delay
        self.ran: list[tuple[str, float, float]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        started = time.monotonic()
        await asyncio.sleep(self.delay)
        self.ran.append((scope["path"], started, time.monotonic()))
        body = b"x" * 100_000 if scope["path"].endswith("big") else b"ok"
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})


def test_pipelined_requests_are_answered_in_order_each_after_the_previous_answer(
    make_gateway: MakeGateway, issuer: Issuer, tmp_path: Path
) -> None:
    slow = SlowUpstream()

    def make(**kwargs: Any) -> Any:
        return make_gateway(transport=httpx.ASGITransport(app=slow), **kwargs)

    good = f"Bearer {issuer.token()}"
    pipelined = (request("/api/one-big", Authorization=good) + check("/x", Authorization=good)
                 + request("/api/two", Authorization=good))  # fmt: skip
    with (
        served(make, tmp_path) as (_, server),
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock,
    ):
        sock.sendall(pipelined)
        reader = Reader(sock)
        first, second, third = (reader.answer() for _ in range(3))
    assert (first.status, second.status, third.status) == (200, 200, 200)
    assert (len(first.body), second.body, third.body) == (100_000, b"", b"ok")
    (one, _, one_end), (two, two_start, _) = slow.ran
    assert (one, two) == ("/api/one-big", "/api/two")
    assert two_start >= one_end  # not started before the first was answered


def test_each_fast_response_is_one_write(
    make_gateway: MakeGateway, issuer: Issuer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (an upstream answer without a length is chunked: its end is a write of its own)
    fast_upstream = SlowUpstream(delay=0)

    def make(**kwargs: Any) -> Any:
        return make_gateway(transport=httpx.ASGITransport(app=fast_upstream), **kwargs)

    writes: list[bytes] = []
    original = fast_path.FastCycle.__init__

    def recording(self: fast_path.FastCycle, protocol: Any, *args: Any, **kwargs: Any) -> None:
        original(self, protocol, *args, **kwargs)
        transport = self.transport

        class Recorder:
            def write(self, data: bytes) -> None:
                writes.append(data)
                transport.write(data)

            def __getattr__(self, name: str) -> Any:
                return getattr(transport, name)

        self.transport = Recorder()  # type: ignore[assignment]

    monkeypatch.setattr(fast_path.FastCycle, "__init__", recording)
    good = f"Bearer {issuer.token()}"
    with (
        served(make, tmp_path) as (_, server),
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock,
    ):
        reader = Reader(sock)
        for sent in (check("/x", Authorization=good), check("/x"),
                     request("/api/x", Authorization=good), request("/api/x")):  # fmt: skip
            sock.sendall(sent)
            reader.answer()
    assert len(writes) == 4
    assert all(w.startswith(b"HTTP/1.1 ") and w.count(b"HTTP/1.1 ") == 1 for w in writes)
    for write in writes:  # each one whole response: head and body
        with socket.socket() as unused:
            reader = Reader(unused)
            reader.buffer = write
            answer = reader.answer()
        assert reader.buffer == b""
        assert answer.status == 200 or b"decision_id" in answer.body


@contextmanager
def connections(server: ThreadServer, count: int) -> Iterator[list[socket.socket]]:
    with ExitStack() as stack:
        yield [stack.enter_context(socket.create_connection(("127.0.0.1", server.port), timeout=5))
               for _ in range(count)]  # fmt: skip


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def test_limits_hold_on_the_fast_path(
    make_gateway: MakeGateway, issuer: Issuer, tmp_path: Path
) -> None:
    good = f"Bearer {issuer.token()}"
    limits = {"max_header_bytes": 4096, "header_timeout_seconds": 0.5,
              "max_concurrent_requests": 3, "max_connections": 10}  # fmt: skip
    with served(make_gateway, tmp_path, **limits) as (_, server):
        with connections(server, 1) as [sock]:  # a huge check head: 431
            sock.sendall(check("/x", Authorization=good)[:-2] + b"X-Big: " + b"a" * 20000)
            assert read_all(sock).startswith(b"HTTP/1.1 431 ")
        with connections(server, 1) as [sock]:  # a check trickled: 408 at the deadline
            sock.sendall(check("/x", Authorization=good)[:20])
            started = time.monotonic()
            assert read_all(sock).startswith(b"HTTP/1.1 408 ")
            assert time.monotonic() - started < 3
        with connections(server, 1) as [sock]:  # keep-alive, then a slow second head: 408
            reader = Reader(sock)
            sock.sendall(check("/x", Authorization=good))
            assert reader.answer().status == 200
            sock.sendall(b"GET /verity/auth HTTP/1.1\r\n")  # the next head never ends
            assert (reader.buffer + read_all(sock)).startswith(b"HTTP/1.1 408 ")
        with connections(server, 2) as holders:  # two requests in progress: the third 503
            for holder in holders:
                holder.sendall(b"GET /verity/auth HTTP/1.1\r\nHost: fa.test\r\n")
            time.sleep(0.1)
            with connections(server, 1) as [third]:
                third.sendall(check("/x", Authorization=good, Connection="close"))
                assert read_all(third).startswith(b"HTTP/1.1 503 ")
        with connections(server, 1) as [sock]:  # and after them, answered again
            sock.sendall(check("/x", Authorization=good, Connection="close"))
            assert read_all(sock).startswith(b"HTTP/1.1 200 ")


def test_fast_path_can_be_turned_off_and_defaults_on() -> None:
    assert parse_config({}).gateway.fast_path is True
    assert parse_config({"gateway": {"fast_path": False}}).gateway.fast_path is False
    with pytest.raises(Exception):  # noqa: B017, PT011
        parse_config({"gateway": {"fast_path": "sometimes"}})


class LateUpstream:
    """A real upstream whose answers start at once and end later: ``/late`` sends its
    head, then a body chunk 0.6 s later (no length: chunked); ``/big`` 4 MiB at once."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        if scope["path"] == "/slow":
            await asyncio.sleep(2)
        if scope["path"] == "/big":
            body = b"b" * (4 * 1024 * 1024)
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", str(len(body)).encode())]})  # fmt: skip
            await send({"type": "http.response.body", "body": body})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0.6)
        await send({"type": "http.response.body", "body": b"late", "more_body": True})
        await send({"type": "http.response.body", "body": b""})


@pytest.mark.parametrize("fast", [True, False])
def test_a_head_is_not_held_back_by_a_slow_body_and_large_bodies_stream(
    make_gateway: MakeGateway, issuer: Issuer, tmp_path: Path, fast: bool
) -> None:
    good = f"Bearer {issuer.token()}"
    with ThreadServer(LateUpstream()) as upstream:
        routes = [{"name": "app", "host": "app.test", "upstream": upstream.url}]

        def make(**kwargs: Any) -> Any:
            return make_gateway(transport=new_transport(UpstreamPoolConfig()), **kwargs)

        with (
            served(make, tmp_path, routes=routes, fast_path=fast) as (_, server),
            socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock,
        ):
            reader = Reader(sock)
            for sent in (request("/late", Authorization=good),  # fast path (when on)
                         request("/late", method="POST", Authorization=good,
                                 Content_Length="1") + b"x"):  # ASGI path  # fmt: skip
                started = time.monotonic()
                sock.sendall(sent)
                assert reader._line().startswith(b"HTTP/1.1 200 ")
                assert time.monotonic() - started < 0.5  # the head came before the body
                reader.buffer = b"HTTP/1.1 200 OK\r\n" + reader.buffer
                late = reader.answer()
                assert late.body == b"late"
                assert (b"transfer-encoding", b"chunked") in late.headers
            sock.sendall(request("/big", Authorization=good))
            assert len(reader.answer().body) == 4 * 1024 * 1024


def test_asgi_path_responses_are_one_write_too(
    make_gateway: MakeGateway, issuer: Issuer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[bytes] = []
    original = fast_path.HeldHead.__init__

    def recording(self: fast_path.HeldHead, transport: Any, *args: Any) -> None:
        class Recorder:
            def write(self, data: bytes) -> None:
                writes.append(data)
                transport.write(data)

            def __getattr__(self, name: str) -> Any:
                return getattr(transport, name)

        original(self, Recorder(), *args)  # type: ignore[arg-type]

    monkeypatch.setattr(fast_path.HeldHead, "__init__", recording)
    good = f"Bearer {issuer.token()}"
    upstream = SlowUpstream(delay=0)

    def make(**kwargs: Any) -> Any:
        return make_gateway(transport=httpx.ASGITransport(app=upstream), **kwargs)

    asgi = [request("/healthz"), request("/api/x", method="POST", Authorization=good,
                                         Content_Length="2") + b"hi",
            request("/api/x", method="POST", Content_Length="2") + b"hi"]  # fmt: skip
    with (
        served(make, tmp_path) as (_, server),
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock,
    ):
        reader = Reader(sock)
        for sent in asgi:
            sock.sendall(sent)
            reader.answer()
    writes = [w for w in writes if w]  # (uvicorn's b"" for the end of a body: no syscall)
    assert [w[9:12] for w in writes] == [b"200", b"200", b"401"]
    for write in writes:  # each one whole response: head and body
        with socket.socket() as unused:
            reader = Reader(unused)
            reader.buffer = write
            reader.answer()
        assert reader.buffer == b""


def test_upstream_failures_and_errors_are_answered_alike_on_both_paths(
    make_gateway: MakeGateway, issuer: Issuer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = f"Bearer {issuer.token()}"
    answers: dict[bool, list[Any]] = {}
    with ThreadServer(LateUpstream()) as upstream:
        routes = [
            {"name": "down", "host": "down.test", "upstream": f"http://127.0.0.1:{free_port()}",
             "connect_timeout_seconds": 1},
            {"name": "slow", "host": "slow.test", "upstream": upstream.url,
             "read_timeout_seconds": 0.3},
            {"name": "app", "host": "app.test", "upstream": upstream.url},
        ]  # fmt: skip

        def make(**kwargs: Any) -> Any:
            return make_gateway(transport=new_transport(UpstreamPoolConfig()), **kwargs)

        for fast in (True, False):
            folder = tmp_path / str(fast)
            folder.mkdir()
            with served(make, folder, routes=routes, fast_path=fast) as (setup, server):
                sent = [request("/x", "down.test", Authorization=good),
                        request("/slow", "slow.test", Authorization=good),
                        request("/slow", "slow.test", method="HEAD", Authorization=good)]  # fmt: skip
                got = []
                for one in sent:
                    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                        sock.sendall(one)
                        got.append(Reader(sock).answer(head=one.startswith(b"HEAD")).normalized())

                async def broken(*_: Any) -> Any:
                    raise RuntimeError("boom")

                monkeypatch.setattr(setup.gateway, "_answer", broken)
                with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                    sock.sendall(request("/api/x", Authorization=good))
                    reader = Reader(sock)
                    got.append((reader.answer().normalized(), reader.closed()))
            answers[fast] = got
    assert answers[True] == answers[False]
    statuses = [answer[0] for answer in answers[True][:3]]
    assert statuses == [502, 504, 504]
    error, closed = answers[True][3]
    assert (error[0], error[2], closed) == (500, b"Internal Server Error", True)


def test_an_answer_the_fast_path_cannot_send_whole_fails_closed_with_500(
    make_gateway: MakeGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def streamed(*_: Any) -> Any:  # no such answer today: a future one must not leak
        return StreamingResponse(iter([b"allowed?"]))

    with served(make_gateway, tmp_path) as (setup, server):
        monkeypatch.setattr(setup.gateway, "_answer", streamed)
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(request("/api/x"))
            reader = Reader(sock)
            answer = reader.answer()
            assert (answer.status, answer.body, reader.closed()) == (
                500,
                b"Internal Server Error",
                True,
            )
