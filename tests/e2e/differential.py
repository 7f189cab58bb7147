"""Helpers of ``test_target_differential``: a raw echo upstream, a raw client, the audit
log read back by decision id, and the oracle that judges one request the upstream got.

The oracle restates the test policy (``policy_allows``) and lists the ways real upstream
servers read a request path (``READINGS``); it uses nothing of Verity's own path code, so
it cannot share a bug with the code under test.
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import unquote

from verity.audit import Query, open_store

Headers = list[tuple[str, str]]
PROBE = "x-probe"  # the client's label of one request, forwarded untouched to the upstream


@dataclass(frozen=True)
class Received:
    """One request as the upstream got it: the request line's target, byte for byte."""

    method: str
    target: str  # latin-1 decoding of the raw bytes between the two spaces of the line
    headers: Headers

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]

    @property
    def raw_path(self) -> str:
        return self.target.split("?", 1)[0]


class RawEchoUpstream:
    """``with RawEchoUpstream() as up:`` an HTTP/1.1 server on 127.0.0.1 (asyncio, in a
    thread) that records each request's raw target and headers and answers 200.

    No HTTP library parses the request line, so nothing normalises the target before it
    is recorded. Keep-alive is honoured (nginx and the gateway pool connections).
    """

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = int(self.sock.getsockname()[1])
        self._received: list[Received] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._writers: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> RawEchoUpstream:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the echo upstream did not start")
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._thread.join(10)
        self.sock.close()

    def take(self, probe: str) -> list[Received]:
        """The requests labelled ``probe`` (removed from the record)."""
        with self._lock:
            mine = [r for r in self._received if r.header(PROBE) == [probe]]
            self._received = [r for r in self._received if r.header(PROBE) != [probe]]
        return mine

    def unlabelled(self) -> list[Received]:
        """Requests without exactly one probe label (none should ever arrive)."""
        with self._lock:
            return [r for r in self._received if len(r.header(PROBE)) != 1]

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, sock=self.sock)
        )
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _shutdown(self) -> None:
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        current = asyncio.current_task()
        for task in asyncio.all_tasks():
            if task is not current:
                task.cancel()
        self._loop.call_soon(self._loop.stop)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, *fields = head[:-4].split(b"\r\n")
                method, target, _version = line.split(b" ", 2)
                headers = [(k.strip().lower().decode("latin-1"), v.strip().decode("latin-1"))
                           for k, _, v in (f.partition(b":") for f in fields)]  # fmt: skip
                length = sum(int(v) for k, v in headers if k == "content-length")
                if length:
                    await reader.readexactly(length)
                with self._lock:
                    self._received.append(
                        Received(method.decode("latin-1"), target.decode("latin-1"), headers)
                    )
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n"
                             b"content-length: 4\r\n\r\necho")  # fmt: skip
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


def send_raw(port: int, host: str, target: str, headers: Headers) -> int:
    """GET ``target`` exactly as written (no client library normalises it); the status."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.putrequest("GET", target, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host)
        for name, value in headers:
            conn.putheader(name, value)
        conn.putheader("Connection", "close")
        conn.endheaders()
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


class AuditIndex:
    """The gateway's SQLite audit log, read back while it runs, by decision id."""

    def __init__(self, url: str) -> None:
        self.store = open_store(url, create=False)
        self.after = 0
        self.events: dict[str, dict[str, Any]] = {}

    def find(self, decision_id: str, wait: float = 2.0) -> dict[str, Any] | None:
        """The decision event with ``decision_id`` (an allow is durable before the
        upstream is called; ``wait`` only covers the reader's view catching up)."""
        deadline = time.monotonic() + wait
        while True:
            for record in self.store.query(Query(after_seq=self.after)):
                self.after = record.seq
                event = record.event()
                decision = event.get("unmapped", {}).get("verity", {}).get("decision")
                if decision is not None:
                    self.events[decision["decision_id"]] = event
            if decision_id in self.events or time.monotonic() > deadline:
                return self.events.get(decision_id)
            time.sleep(0.05)

    def close(self) -> None:
        self.store.close()


# -- the oracle --------------------------------------------------------------------------


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def policy_allows(caller: str, path: str) -> bool:
    """The test policy, restated: ``/admin/**`` for admins only (no caller here is one),
    ``/public/**`` for anyone, everything else for the ``staff`` caller."""
    if _under(path, "/admin"):
        return False
    return caller == "staff" or _under(path, "/public")


def _resolve(path: str) -> str:
    """Dot segments and empty segments resolved (RFC 3986 5.2.4, plus ``//`` -> ``/``)."""
    out: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if out:
                out.pop()
        elif segment not in ("", "."):
            out.append(segment)
    return "/" + "/".join(out)


def _drop_params(path: str) -> str:
    return "/".join(segment.split(";", 1)[0] for segment in path.split("/"))


def _trim_dots(path: str) -> str:
    return "/".join(
        s if s in (".", "..") else s.rstrip(". ") for s in path.split("/")
    )  # fmt: skip


def _everything(raw: str) -> str:
    path = unquote(unquote(raw)).replace("\\", "/")
    path = unicodedata.normalize("NFKC", path).lower()
    return _resolve(_trim_dots(_drop_params(path)))


# How upstream servers read the raw path of the request line. Each is a real behaviour:
# if any reading of the forwarded bytes is a path the policy does not allow this caller,
# the upstream may serve what the decision did not allow. The gateway runs its routes'
# default ``path_matching.case: consistent``, so case-folding upstreams are covered too.
READINGS: dict[str, Callable[[str], str]] = {
    "decode once (Starlette)": unquote,
    "decode, resolve dots (nginx, Apache)": lambda r: _resolve(unquote(r)),
    "resolve dots, then decode (Go, Apache NoDecode)": lambda r: unquote(_resolve(r)),
    "decode twice (a second decoder)": lambda r: _resolve(unquote(unquote(r))),
    "backslash as slash (IIS, Windows)": lambda r: _resolve(unquote(r).replace("\\", "/")),
    "drop ;params (Tomcat, Jetty, Spring)": lambda r: _resolve(_drop_params(unquote(r))),
    "trim trailing dots (Windows, IIS)": lambda r: _resolve(_trim_dots(unquote(r))),
    "NFKC (Unicode look-alikes)": lambda r: _resolve(unicodedata.normalize("NFKC", unquote(r))),
    "case-insensitive (Express, ASP.NET, IIS)": lambda r: _resolve(unquote(r).lower()),
    "all of these at once": _everything,
}


def denied_readings(caller: str, raw_path: str) -> dict[str, list[str]]:
    """``{path: [readings]}`` for the readings of ``raw_path`` that the policy denies."""
    denied: dict[str, list[str]] = {}
    for reading, read in READINGS.items():
        path = read(raw_path)
        if not policy_allows(caller, path):
            denied.setdefault(path, []).append(reading)
    return denied


def judge(audit: AuditIndex, caller: str, host: str, received: Received) -> list[str]:
    """What is wrong with ``received`` having reached the upstream (empty: nothing)."""
    ids = received.header("x-verity-decision-id")
    if len(ids) != 1 or not ids[0]:
        return [f"the upstream got it with decision ids {ids}: no single decision allowed it"]
    event = audit.find(ids[0])
    if event is None:
        return [f"no audit event has the decision id {ids[0]} the upstream got"]
    decision = event["unmapped"]["verity"]["decision"]
    http = event.get("http_request", {})
    audited = http.get("url", {}).get("path")
    problems: list[str] = []
    if decision["effect"] != "allow":
        problems.append(f"audit event {ids[0]} is a {decision['effect']}, not an allow")
    if http.get("url", {}).get("hostname") != host or http.get("http_method") != "GET":
        problems.append(f"audit event {ids[0]} is for {http}")
    raw = received.raw_path
    if unquote(raw) != audited:
        problems.append(
            f"audited allow {audited!r}, upstream got {raw!r} = {unquote(raw)!r} decoded once"
        )
    for path, readings in denied_readings(caller, raw).items():
        problems.append(
            f"audited allow {audited!r}, upstream got {raw!r}, read as the denied {path!r} "
            f"by: {', '.join(readings)}"
        )
    return problems
