"""``verity serve`` with ``gateway.workers: 2``: a real supervisor and two forked workers.

Each test starts ``python -m verity.cli.serve`` on 127.0.0.1 (forward-auth only, a
SQLite store and audit log in ``tmp_path``) and stops it. Which worker serves a
connection is read from ``/proc``: the worker whose file descriptors hold the server
side of that TCP connection.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import sqlite3
import ssl
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import platform_feature
from tests.e2e.test_nginx_forward_auth import HOST, ISSUER, write_verity
from tests.gateway.servers import ThreadServer, free_port
from verity.audit.keys import generate_key
from verity.identity.dev import generate_private_key, mint


@pytest.fixture(autouse=True)
def _linux_proc() -> None:
    """Which worker holds a connection is read from Linux's /proc/net/tcp."""
    platform_feature("Linux /proc/net/tcp", Path("/proc/net/tcp").exists())


START_SECONDS = 30.0


@dataclass
class Served:
    """A running ``verity serve --workers N``."""

    tmp: Path
    port: int
    key: Any
    process: subprocess.Popen[bytes]
    log: Path

    def token(self, subject: str = "alice", **claims: Any) -> str:
        return mint(self.key, alg="ES256", kid="e2e", issuer=ISSUER, audience="verity",
                    subject=subject, claims={"groups": ["engineers"], **claims})  # fmt: skip

    def workers(self) -> list[int]:
        pid = self.process.pid
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(child) for child in text.split()]

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def auth(conn: http.client.HTTPConnection, token: str, path: str = "/docs") -> int:
    """One forward-auth request on ``conn`` (kept alive); its status."""
    conn.request("GET", "/verity/auth", headers={
        "Host": HOST, "X-Original-URI": path, "X-Original-Method": "GET",
        "Authorization": f"Bearer {token}",
    })  # fmt: skip
    response = conn.getresponse()
    response.read()
    return response.status


def get(conn: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, response.read()


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - start


def _listening(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/healthz")
        ok = conn.getresponse().status == 200
        conn.close()
    except OSError:
        return False
    return ok


def configure(tmp: Path) -> tuple[Path, int, Any]:
    """``tmp/verity.yaml`` (forward-auth for ``HOST``, SQLite store, signed audit log)."""
    key = generate_private_key("ES256")
    port = free_port()
    config = write_verity(tmp, port, key, audited=True)
    generate_key(tmp / "audit.key")
    plain = f"audit: {{url: 'sqlite:///{tmp}/audit.db'}}\n"
    signed = f"audit: {{url: 'sqlite:///{tmp}/audit.db', signing_key: audit.key}}\n"
    assert plain in config.read_text()
    config.write_text(config.read_text().replace(plain, signed))
    return config, port, key


def launch(config: Path, port: int, key: Any, *args: str, log: Path | None = None) -> Served:
    """``python -m verity.cli.serve --config config *args`` in the background."""
    tmp = config.parent
    log = log or tmp / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - our interpreter, our arguments
            [sys.executable, "-m", "verity.cli.serve", "--config", str(config), *args],
            stdout=out, stderr=subprocess.STDOUT, cwd=tmp,
        )  # fmt: skip
    return Served(tmp, port, key, process, log)


def started(tmp: Path) -> Served:
    served = launch(*configure(tmp), "--workers", "2")
    deadline = time.monotonic() + START_SECONDS
    while not (_listening(served.port) and len(served.workers()) == 2):
        if served.process.poll() is not None or time.monotonic() > deadline:
            stop(served)
            pytest.fail(f"verity serve --workers 2 did not start:\n{served.output()[-3000:]}")
        time.sleep(0.1)
    wait_until(lambda: served.output().count("ready (pid") >= 2, START_SECONDS, "both ready")
    return served


def stop(served: Served) -> int:
    if served.process.poll() is None:
        served.process.send_signal(signal.SIGTERM)
    try:
        return served.process.wait(60)
    except subprocess.TimeoutExpired:
        served.process.kill()
        served.process.wait(10)
        return -9


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    running = started(tmp_path)
    yield running
    stop(running)


def _inodes(port: int, client_port: int) -> set[str]:
    """The socket inodes of the server side of 127.0.0.1:client_port -> :port."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                local, remote, inode = fields[1], fields[2], fields[9]
                if local.endswith(f":{port:04X}") and remote.endswith(f":{client_port:04X}"):
                    found.add(inode)
    return found


def worker_of(served: Served, conn: http.client.HTTPConnection) -> int | None:
    """The pid of the worker serving ``conn`` (an open, used connection)."""
    assert conn.sock is not None
    inodes = _inodes(served.port, conn.sock.getsockname()[1])
    for pid in served.workers():
        with os.scandir(f"/proc/{pid}/fd") as fds:
            for fd in fds:
                try:
                    target = os.readlink(fd.path)
                except OSError:
                    continue
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return pid
    return None


def pinned_connections(served: Served, token: str | None) -> dict[int, http.client.HTTPConnection]:
    """One open keep-alive connection served by each worker (others are closed), each
    used once: a forward-auth request with ``token`` (200), or ``/healthz``."""
    pinned: dict[int, http.client.HTTPConnection] = {}
    for _ in range(200):
        conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
        if token is None:
            assert get(conn, "/healthz")[0] == 200
        else:
            assert auth(conn, token) == 200
        pid = worker_of(served, conn)
        if pid is not None and pid not in pinned:
            pinned[pid] = conn
        else:
            conn.close()
        if len(pinned) == len(served.workers()):
            return pinned
    pytest.fail(f"200 connections did not reach every worker: {list(pinned)}")


def audited(tmp: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(tmp / "audit.db")
    try:
        return [json.loads(body) for (body,) in conn.execute("select body from audit_log")]
    finally:
        conn.close()


def test_two_workers_share_the_port_and_audit_every_request_exactly_once(
    served: Served,
) -> None:
    """Concurrent load on both workers (each connection pinned to one, seen in /proc):
    after a SIGTERM every worker stops cleanly (exit 0), the log verifies, with signed
    checkpoints, and holds each request's decision exactly once, with distinct ids."""
    token = served.token()
    pinned = pinned_connections(served, token)
    assert len(pinned) == 2
    for conn in pinned.values():
        conn.close()

    def load(worker: int) -> list[int]:
        conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
        try:
            return [auth(conn, token, f"/docs/{worker}-{i}") for i in range(60)]
        finally:
            conn.close()

    with ThreadPoolExecutor(8) as pool:
        statuses = [status for batch in pool.map(load, range(16)) for status in batch]
    assert Counter(statuses) == {200: 16 * 60}
    workers = served.workers()
    assert stop(served) == 0, served.output()[-3000:]
    assert all(not Path(f"/proc/{pid}").exists() for pid in workers)
    assert "all workers stopped" in served.output()

    verify = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "verity.cli", "audit", "verify", "--db",
         f"sqlite:///{served.tmp}/audit.db", "--public-key", str(served.tmp / "audit.key.pub"),
         "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert json.loads(verify.stdout)["signatures_checked"] is True
    events = [
        e for e in audited(served.tmp)
        if e.get("unmapped", {}).get("verity", {}).get("kind") == "decision"
    ]  # fmt: skip
    paths = Counter(e["http_request"]["url"]["path"] for e in events)
    for worker in range(16):
        for i in range(60):
            assert paths[f"/docs/{worker}-{i}"] == 1
    decision_ids = [e["unmapped"]["verity"]["decision"]["decision_id"] for e in events]
    assert len(set(decision_ids)) == len(decision_ids)  # ids stay unique across the fork
    event_ids = [e["metadata"]["uid"] for e in audited(served.tmp)]
    assert len(set(event_ids)) == len(event_ids)


def test_a_revocation_from_another_process_reaches_every_worker(served: Served) -> None:
    """``verity revoke jti`` writes the SQLite store from its own process; a connection
    held open to each worker is refused (401) within the store watch's bound."""
    token = served.token(jti="revoke-me")
    other = served.token("bob")
    pinned = pinned_connections(served, token)
    revoke = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "verity.cli", "revoke", "jti", "revoke-me", "--url",
         f"sqlite:///{served.tmp}/verity.db"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert revoke.returncode == 0, revoke.stdout + revoke.stderr
    for pid, conn in pinned.items():
        took = wait_until(lambda conn=conn: auth(conn, token) == 401, 1.0, f"worker {pid}")
        assert took < 1.0  # the 50 ms watch, not the 2 s re-read
        assert auth(conn, other) == 200  # only that token


def test_every_worker_signs_assertions_with_the_one_key(tmp_path: Path) -> None:
    """Without ``gateway.assertion.signing_key`` the supervisor makes one key for all
    workers: the JWKS upstreams fetch is the same whichever worker answers."""
    config, port, key = configure(tmp_path)
    text = config.read_text()
    assert "assertion: {signing_key: assertion.pem}," in text
    config.write_text(text.replace("assertion: {signing_key: assertion.pem},", ""))
    served = launch(config, port, key, "--workers", "2")
    try:
        wait_until(lambda: served.output().count("ready (pid") >= 2, START_SECONDS, "ready")
        wait_until(lambda: _listening(port), START_SECONDS, "listening")
        pinned = pinned_connections(served, None)
        keys = {pid: get(conn, "/.well-known/verity/jwks.json") for pid, conn in pinned.items()}
        assert len(keys) == 2
        (status, jwks), (status2, jwks2) = keys.values()
        assert (status, status2) == (200, 200)
        assert json.loads(jwks) == json.loads(jwks2)
        assert served.output().count("signing_key is not set") == 1  # the supervisor's
    finally:
        assert stop(served) == 0


def test_tls_and_the_redirect_listener_are_shared_by_the_workers(tmp_path: Path) -> None:
    """With gateway.tls and redirect_http_port, the supervisor binds both listeners and
    every worker serves both: HTTPS with HSTS, and the plain-HTTP 308 redirect."""
    from tests.gateway.test_tls import write_config, write_pki

    write_pki(tmp_path)
    port, http_port = free_port(), free_port()
    config = write_config(tmp_path, port=port, http_port=http_port)
    served = launch(config, port, None, "--workers", "2")
    try:
        wait_until(lambda: served.output().count("ready (pid") >= 2, START_SECONDS, "ready")
        context = ssl.create_default_context(cafile=tmp_path / "ca.pem")
        redirecting = Served(tmp_path, http_port, None, served.process, served.log)
        seen: dict[str, set[int | None]] = {"https": set(), "http": set()}
        for _ in range(100):  # new connections, until each worker took some of each
            tls = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
            status, _ = get(tls, "/healthz")
            assert status == 200
            seen["https"].add(worker_of(served, tls))
            tls.close()
            plain = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
            plain.request("GET", "/a?b=1")
            redirect = plain.getresponse()
            redirect.read()
            assert redirect.status == 308
            assert redirect.getheader("location") == f"https://127.0.0.1:{port}/a?b=1"
            seen["http"].add(worker_of(redirecting, plain))
            plain.close()
            if all(set(served.workers()) <= pids for pids in seen.values()):
                break
        assert all(set(served.workers()) <= pids for pids in seen.values()), seen
    finally:
        assert stop(served) == 0, served.output()[-3000:]


class SlowApp:
    """An upstream that answers 200 after ``delay`` seconds."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        import asyncio

        await asyncio.sleep(self.delay)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"slow"})


def test_sigterm_lets_in_flight_requests_finish(tmp_path: Path) -> None:
    """A proxied request that is in flight when the supervisor gets SIGTERM still gets
    its answer, and the supervisor then exits 0."""
    with ThreadServer(SlowApp(2.0)) as upstream:
        key = generate_private_key("ES256")
        port = free_port()
        routes = f"[{{name: app, host: {HOST}, upstream: 'http://127.0.0.1:{upstream.port}'}}]"
        config = write_verity(tmp_path, port, key, audited=True, routes=routes)
        served = launch(config, port, key, "--workers", "2")
        try:
            wait_until(lambda: served.output().count("ready (pid") >= 2, START_SECONDS, "ready")
            wait_until(lambda: _listening(port), START_SECONDS, "listening")
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/slow", headers={
                "Host": HOST, "Authorization": f"Bearer {served.token()}"})  # fmt: skip
            time.sleep(0.5)  # the request is at the upstream now
            served.process.send_signal(signal.SIGTERM)
            response = conn.getresponse()
            assert (response.status, response.read()) == (200, b"slow")
        finally:
            assert stop(served) == 0, served.output()[-3000:]


def test_a_killed_worker_is_restarted_and_serves(served: Served) -> None:
    token = served.token()
    victim, survivor = served.workers()
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: victim not in served.workers() and len(served.workers()) == 2,
               10.0, "restart")  # fmt: skip
    (replacement,) = set(served.workers()) - {survivor}
    wait_until(lambda: f"ready (pid {replacement})" in served.output(), 20.0, "ready")
    pinned = pinned_connections(served, token)
    assert set(pinned) == {survivor, replacement}
    assert "exited (signal SIGKILL); restarting in 0.5 s" in served.output()
    assert served.process.poll() is None


def test_workers_stop_when_the_supervisor_is_killed(served: Served) -> None:
    """``kill -9`` of the supervisor: the kernel sends each worker SIGTERM
    (PR_SET_PDEATHSIG), so none is left holding the port."""
    workers = served.workers()
    served.process.kill()
    served.process.wait(10)
    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() and
                               "zombie" not in _state(pid) for pid in workers),
               40.0, "workers gone")  # fmt: skip
    wait_until(lambda: not _listening(served.port), 10.0, "port closed")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:", 1)[1].split("\n", 1)[0]
    except (OSError, IndexError):
        return "zombie"


def test_a_bad_configuration_fails_once_before_any_worker_starts(tmp_path: Path) -> None:
    config, port, key = configure(tmp_path)
    (tmp_path / "policy.yaml").write_text("version: 1\nrules: [{name: x, allow: {nope: 1}}]\n")
    served = launch(config, port, key, "--workers", "2")
    assert served.process.wait(60) == 1
    assert "error: invalid policy" in served.output()
    assert "unknown criterion 'nope'" in served.output()
    assert "started (pid" not in served.output()


def test_a_worker_that_cannot_start_stops_the_supervisor(tmp_path: Path) -> None:
    """The configuration is valid but the store cannot be opened: worker 0 fails while
    starting, and the supervisor exits 1 without starting (or restarting) any other."""
    config, port, key = configure(tmp_path)
    (tmp_path / "blocker").write_text("a file where the store's folder should be\n")
    store = f"sqlite:///{tmp_path}/verity.db"
    config.write_text(config.read_text().replace(store, f"sqlite:///{tmp_path}/blocker/v.db"))
    served = launch(config, port, key, "--workers", "2")
    assert served.process.wait(60) == 1
    output = served.output()
    assert "unable to open database file" in output
    assert "worker 0 failed at start (exit 1)" in output
    assert "Traceback" not in output
    assert "worker 1 started" not in output


def test_a_port_in_use_fails_at_once(served: Served) -> None:
    clash = launch(served.tmp / "verity.yaml", served.port, served.key, "--workers", "2",
                   log=served.tmp / "clash.log")  # fmt: skip
    assert clash.process.wait(60) == 1
    assert f"cannot listen on 127.0.0.1:{served.port}" in clash.output()
    assert "started (pid" not in clash.output()
    assert _listening(served.port)  # the running one is untouched


def test_check_names_the_workers(tmp_path: Path) -> None:
    config, _, _ = configure(tmp_path)
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "verity.cli.serve", "--config", str(config), "--check",
         "--workers", "3"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 worker processes" in result.stdout


def test_workers_is_bounded() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "verity.cli.serve", "--workers", "0", "--check"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
