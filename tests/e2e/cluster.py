"""Several real ``verity serve`` processes sharing one PostgreSQL and one Redis.

Used by ``tests/e2e/test_multinode.py`` and ``benchmarks/scale.py``. Everything listens
on 127.0.0.1 with ports chosen at run time and stops by itself:

- PostgreSQL is the machine's server; each cluster gets a database of its own (dropped
  afterwards), reached through a ``FaultProxy`` so a test can cut PostgreSQL away from the
  nodes (every connection reset, new ones refused) and bring it back, as a stopped and
  restarted server looks to its clients.
- Redis is a private ``redis-server`` on its own port (pub/sub channels are not scoped by
  database number, so the machine's shared Redis would mix clusters), which a test can
  really stop and start again.
- Every node runs the same configuration except its port and its audit log (node-local
  SQLite, so deciding never waits on the shared database).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
POSTGRES = os.environ.get("VERITY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
CLIENT_ID = "gateway"
PASSWORD = "correct horse battery staple"
PEOPLE = (
    ("admin@cluster.test", "admins", "admin"),
    ("engineer@cluster.test", "engineers", "engineer"),
)
POLICY = """
version: 1
rules:
  - name: engineers-use-the-app
    allow: {roles: [engineer, admin]}
    hint: ask for the engineer role
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_port(port: int, *, timeout: float = 20.0, up: bool = True) -> None:
    """Wait until 127.0.0.1:``port`` accepts connections (or, ``up=False``, refuses them)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                if up:
                    return
        except OSError:
            if not up:
                return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} did not {'open' if up else 'close'} within {timeout}s")


class RedisProcess:
    """A private redis-server (nothing on disk) that can be stopped and started again."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.folder), "--logfile",
                str(self.folder / "redis.log")]  # fmt: skip
        self.process = subprocess.Popen(args)  # noqa: S603 - fixed binary, our arguments
        wait_port(self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None
            wait_port(self.port, up=False)


class FaultProxy:
    """A TCP relay to ``target`` on a port of its own; ``cut()`` resets every connection and
    refuses new ones (the peer looks stopped), ``restore()`` accepts again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._writers -= {writer, up_writer}

    async def _start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            transport = writer.transport
            with contextlib.suppress(OSError):
                sock = transport.get_extra_info("socket")
                if sock is not None:  # RST, as a crashed server's host would answer
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            transport.abort()
        self._writers.clear()

    def start(self) -> None:
        self._call(self._start())

    def cut(self) -> None:
        self._call(self._cut())

    def restore(self) -> None:
        self.start()

    def close(self) -> None:
        self._call(self._cut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


@dataclass(eq=False)
class Node:
    name: str
    port: int
    config: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Cluster:
    folder: Path
    database: str
    store_url: str
    redis: RedisProcess
    postgres: FaultProxy
    upstream_port: int
    nodes: list[Node] = field(default_factory=list)

    @property
    def policy(self) -> Path:
        return self.folder / "policy.yaml"

    def start_node(self, node: Node) -> None:
        self.spawn(node)
        self.wait_ready(node)

    def spawn(self, node: Node) -> None:
        command = [sys.executable, "-m", "verity.cli", "serve", "--config", str(node.config)]
        log = node.log.open("ab")  # a file, not a pipe nobody reads
        node.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        log.close()

    def wait_ready(self, node: Node, *, timeout: float = 40.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and node.process is not None:
            if node.process.poll() is not None:
                break
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{node.url}/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{node.name} did not start:\n{node.log.read_text()[-3000:]}")

    def stop_node(self, node: Node) -> None:
        if node.process is None:
            return
        node.process.send_signal(signal.SIGTERM)
        try:
            node.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            node.process.kill()
            node.process.wait(timeout=10)
        node.process = None

    def logs(self) -> str:
        return "\n".join(f"--- {n.name}\n{n.log.read_text()[-2000:]}" for n in self.nodes)


def _verity(*args: str, stdin: str | None = None) -> str:
    command = [sys.executable, "-m", "verity.cli", *args]
    result = subprocess.run(  # noqa: S603 - our own CLI
        command, input=stdin, capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"verity {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def _node_config(cluster: Cluster, node: Node, *, first: Node, extra: dict[str, Any]) -> None:
    base = first.url
    issuer = f"{base}/idp"
    secret = (cluster.folder / "client-secret").read_text()
    config: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": node.port, "trusted_proxies": ["127.0.0.1/32"]},
        "policy": {"path": str(cluster.policy), "reload_seconds": 0.5},
        "store": {"url": cluster.store_url, "redis_url": cluster.redis.url},
        "audit": {"url": f"sqlite:///{cluster.folder / f'audit-{node.name}.db'}",
                  "signing_key": str(cluster.folder / "audit.key")},
        "identity": {"idp": {
            "issuer": issuer,
            "clients": [{"client_id": CLIENT_ID, "client_secret": secret,
                         "redirect_uris": [f"{n.url}/verity/callback" for n in cluster.nodes],
                         "audiences": ["verity"]}],
        }},
        "login": {
            "public_url": base, "cache_seconds": 30,
            "providers": [{"name": "cluster", "issuer": issuer, "client_id": CLIENT_ID,
                           "client_secret": secret,
                           "scopes": ["openid", "email", "profile", "groups", "roles",
                                      "offline_access"]}],
        },
        "gateway": {
            "public_url": base,
            "assertion": {"signing_key": str(cluster.folder / "assertion.pem")},
            "routes": [{"name": "app", "host": "127.0.0.1",
                        "upstream": f"http://127.0.0.1:{cluster.upstream_port}"}],
        },
        "metrics": {"allowed_cidrs": ["127.0.0.1/32"]},
    }  # fmt: skip
    for section, values in extra.items():
        config[section] = {**config.get(section, {}), **values}
    node.config.write_text(yaml.safe_dump(config, sort_keys=False))


def _create_database(name: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')


def _drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


@contextlib.contextmanager
def cluster(
    folder: Path, *, nodes: int = 3, upstream_port: int, extra: dict[str, Any] | None = None
) -> Iterator[Cluster]:
    """``nodes`` gateways on one new PostgreSQL database and one private Redis; the
    upstream app must listen on ``upstream_port``. The first node's URL is the public one
    (the embedded IdP's issuer and the login's public URL): the others serve the same."""
    from verity.audit.keys import generate_key
    from verity.identity.dev import generate_private_key, write_private_key

    pg_host, pg_port = "127.0.0.1", int(re.search(r":(\d+)/", POSTGRES).group(1))  # type: ignore[union-attr]
    database = f"verity_cluster_{secrets.token_hex(5)}"
    _create_database(database)
    redis = RedisProcess(folder)
    proxy = FaultProxy((pg_host, pg_port))
    try:
        redis.start()
        proxy.start()
        user = re.search(r"//([^@/]+)@", POSTGRES)
        store_url = f"postgresql://{user.group(1) if user else 'postgres'}@127.0.0.1:{proxy.port}/{database}"
        state = Cluster(folder, database, store_url, redis, proxy, upstream_port)
        state.policy.write_text(POLICY)
        (folder / "client-secret").write_text(secrets.token_urlsafe(32))
        generate_key(folder / "audit.key")
        write_private_key(folder / "assertion.pem", generate_private_key("ES256"))
        for index in range(nodes):
            name = "abcdefgh"[index]
            state.nodes.append(Node(name, free_port(), folder / f"node-{name}.yaml",
                                    folder / f"node-{name}.log"))  # fmt: skip
        for node in state.nodes:
            _node_config(state, node, first=state.nodes[0], extra=extra or {})
        _verity("db", "migrate", "--url", store_url)
        for email, group, role in PEOPLE:
            _verity("users", "add", email, "--group", group, "--role", role, "--password-stdin",
                    "--url", store_url, stdin=PASSWORD + "\n")  # fmt: skip
        try:
            for node in state.nodes:  # all at once: migrations are applied already
                state.spawn(node)
            for node in state.nodes:
                state.wait_ready(node)
            yield state
        finally:
            for node in state.nodes:
                state.stop_node(node)
    finally:
        proxy.close()
        redis.stop()
        _drop_database(database)


def sign_in(client: httpx.Client, node: Node, email: str) -> str:
    """Sign ``email`` in through ``node``'s login and the embedded IdP; the session cookie."""
    page = client.get(f"{node.url}/", headers={"Accept": "text/html"}, follow_redirects=True)
    form = re.search(r'<form[^>]*action="([^"]+)"', page.text)
    if form is None:
        raise AssertionError(f"no login form: {page.status_code} {page.text[:300]}")
    fields = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page.text))
    fields.update({"email": email, "password": PASSWORD})
    action = html.unescape(form.group(1))
    done = client.post(httpx.URL(str(page.url)).join(action), data=fields, follow_redirects=True)
    if done.status_code != 200:
        raise AssertionError(f"sign-in failed: {done.status_code} {done.text[:300]}")
    cookies = [c for c in client.cookies.jar if c.name == "verity_session"]
    if len(cookies) != 1:
        raise AssertionError(f"expected one session cookie, got {[c.name for c in cookies]}")
    return f"{cookies[0].name}={cookies[0].value}"
