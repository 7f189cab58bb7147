"""Gateway benchmark (issue 12): Verity driven as a user runs it, against a Python upstream.

    python benchmarks/gateway.py                   # the full run, about 6.5 minutes
    python benchmarks/gateway.py --quick           # a smoke run, about 1 minute
    python benchmarks/gateway.py --rounds 3 --duration 10 --sessions 1,100,1000

Every process listens on 127.0.0.1 with run-time ports and is started by this script:

- **upstream**: one uvicorn process (uvloop + httptools) whose app answers every request
  with 1 KiB: a typical Python service, the denominator of every ratio.
- **nginx** (one worker): serves the same 1 KiB as a static file (``nginx_static``, a
  ceiling no Python service reaches), ``proxy_pass`` to the upstream (``nginx_proxy_pass``),
  and ``auth_request`` to Verity's forward-auth with the shipped
  ``deploy/nginx/verity-forward-auth.conf`` (``forward_auth``).
- **Verity**: ``verity serve --config verity.yaml`` (the CLI, defaults everywhere else: its
  caches and audit log as configured out of the box). A static JWKS file issuer trusts the
  key this script mints bearer tokens with; the store is SQLite next to the config, with a
  private ``redis-server`` for revocation fan-out when one is installed.

Paths, each run by wrk with ``-t2 -c32`` and a Lua script that sends the same request bytes
(Host, and a bearer token rotated per request over N distinct valid tokens, one subject
each) to every path: ``direct``, ``nginx_static``, ``nginx_proxy_pass``, and for each N in
``--sessions`` (default 1, 100 and 1,000) ``verity_proxy@N`` and ``forward_auth@N``. With
1 token everything is cached. With N, each token comes back about every N / (requests/s)
seconds (``token_reuse_interval_s``): a cache whose entries live less than that misses, so
at 1,000 a 1 s decision cache misses while Verity serves under 1,000 requests/s and hits
above (the verified-token cache, 10,000 entries, hits from a token's second use). All paths
run once as a warm-up, then in ``--rounds`` interleaved rounds (each round: every path at 32
connections, then every path at 1 connection); the median of the rounds is kept.

Per run: requests/s, p50/p99 (wrk ``--latency``), non-2xx and socket errors, and the CPU
time (user + system, ``/proc/<pid>/stat``) per request of each process tree: Verity (the
``verity serve`` process and any children), nginx (master + workers), the upstream, and wrk
itself (``getrusage`` of reaped children). At 1 connection, the p50 added to ``direct``.

Revocation to refusal, per Verity path: a client sends requests back to back on one
kept-alive connection with a fresh token (so every cache holds it), ``verity revoke token -``
runs as an operator runs it, and the client keeps sending until refused: the time from the
command returning to the first refusal (negative: refused before it returned) and how many
requests were still allowed after it returned (the target: none); then the same with the
store call the command makes, on stores opened beforehand (no CLI start-up). With Redis, a
second node whose store is SQLite alone (the embedded default, reached by its 2 s poll) is
measured the same way on the proxy path (``revocation.sqlite_only_node``, not a target).

Writes ``benchmarks/results/gateway.json`` (``--quick``: ``gateway_quick.json``): machine,
versions, load average before and after, the rounds and their medians, ratios to direct
and to the nginx static ceiling, the issue's targets with met / not met, and ``limits``:
what bounds each figure, written from the figures. Prints the tables at the end. Every
subprocess runs in its own process group and the group is stopped on exit, on failure and
on Ctrl-C / SIGTERM. Needs /usr/sbin/nginx and /usr/bin/wrk (Debian: apt-get install -y
nginx wrk); redis-server is optional (without it a revocation reaches the node by its
2 s SQLite poll).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks/results"
HOST = "app.example.com"
ISSUER = "https://idp.bench.test"
AUDIENCE = "verity"
BODY = b"x" * 1023 + b"\n"  # 1 KiB, from the upstream and from nginx's static file
NGINX = "/usr/sbin/nginx"
WRK = "/usr/bin/wrk"
POLICY = """version: 1
rules:
  - name: engineers
    resources: [{host: app.example.com}]
    allow: {groups: [engineers]}
"""
NGINX_MAIN = """
{user}
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi; uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
    upstream bench_upstream {{ server 127.0.0.1:{up}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{plain};
        location / {{
            proxy_pass http://bench_upstream; proxy_http_version 1.1;
            proxy_set_header Connection ""; proxy_set_header Host $host;
        }}
    }}
    server {{
        listen 127.0.0.1:{static};
        location / {{ root {dir}/static; default_type text/plain; try_files /1k.txt =404; }}
    }}
    include {dir}/site.conf;
}}
"""
# The issue's targets, all at 100 sessions (issue 12, "Benchmark").
TARGET_SESSIONS = 100
TARGET_FORWARD_AUTH_RATIO = 0.40
TARGET_PROXY_RATIO = 0.30
TARGET_FORWARD_AUTH_CPU_US = 60.0
TARGET_ADDED_P50_MS = 1.0
REVOCATION_TIMEOUT = 10.0  # longer than the 2 s SQLite poll: a miss is measured, not hung
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


async def upstream_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The upstream: 200 with a 1 KiB body to every request (an ASGI app under uvicorn)."""
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"1024")],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


# --- configuration, tokens, wrk scripts ------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One measured path: its name, where wrk sends requests, and how many tokens rotate."""

    name: str
    port_name: str
    sessions: int
    verity: bool


def scenarios(sessions: Sequence[int]) -> list[Scenario]:
    """The paths of one round, in the order they are run."""
    paths = [
        Scenario("direct", "upstream", TARGET_SESSIONS, verity=False),
        Scenario("nginx_static", "static", TARGET_SESSIONS, verity=False),
        Scenario("nginx_proxy_pass", "nginx", TARGET_SESSIONS, verity=False),
    ]
    for count in sessions:
        paths.append(Scenario(f"verity_proxy@{count}", "verity", count, verity=True))
        paths.append(Scenario(f"forward_auth@{count}", "forward_auth", count, verity=True))
    return paths


def mint_tokens(key: Any, count: int, prefix: str = "user") -> list[str]:
    """``count`` distinct valid bearer tokens, one subject each, in the engineers group."""
    from verity.identity.dev import mint

    return [
        mint(key, alg="ES256", kid="bench", issuer=ISSUER, audience=AUDIENCE,
             subject=f"{prefix}-{index}", ttl=3 * 3600,
             claims={"groups": ["engineers"], "jti": f"{prefix}-{index}-{time.time_ns()}"})
        for index in range(count)
    ]  # fmt: skip


def verity_config(ports: dict[str, int], redis_url: str | None, workers: int | None) -> str:
    """verity.yaml: one route to the upstream, tokens from a static JWKS file."""
    store = "store: {url: 'sqlite:///verity.db'"
    store += f", redis_url: '{redis_url}'}}\n" if redis_url else "}\n"
    gateway = f"gateway: {{public_url: 'http://127.0.0.1:{ports['verity']}',\n"
    if workers is not None:
        gateway += f"  workers: {workers},\n"
    return (
        f"server: {{host: 127.0.0.1, port: {ports['verity']}, trusted_proxies: [127.0.0.1/32],\n"
        "  trusted_hops: 1}\n"
        "policy: {path: policy.yaml, reload_seconds: 0}\n"
        f"{store}"
        f"identity: {{issuers: [{{issuer: '{ISSUER}', audiences: [{AUDIENCE}],\n"
        "  algorithms: [ES256], jwks_file: idp.jwks}]}\n"
        f"{gateway}"
        "  assertion: {signing_key: assertion.pem},\n"
        f"  routes: [{{name: app, host: {HOST}, upstream: 'http://127.0.0.1:{ports['upstream']}'}}]}}\n"
    )


def nginx_configs(tmp: Path, ports: dict[str, int]) -> Path:
    """nginx.conf (proxy_pass, static file, and the shipped forward-auth site), in ``tmp``."""
    site = (ROOT / "deploy/nginx/verity-forward-auth.conf").read_text()
    site = site.replace("127.0.0.1:8080", f"127.0.0.1:{ports['verity']}")
    site = site.replace("127.0.0.1:9000", f"127.0.0.1:{ports['upstream']}")
    site = site.replace("listen 8000;", f"listen 127.0.0.1:{ports['forward_auth']};")
    (tmp / "site.conf").write_text(site)
    (tmp / "static").mkdir(exist_ok=True)
    (tmp / "static/1k.txt").write_bytes(BODY)
    user = "user root;" if os.geteuid() == 0 else ""
    conf = NGINX_MAIN.format(
        dir=tmp, user=user, up=ports["upstream"], plain=ports["nginx"], static=ports["static"]
    )
    (tmp / "nginx.conf").write_text(conf)
    return tmp / "nginx.conf"


def write_configs(
    tmp: Path, ports: dict[str, int], *, redis_url: str | None = None, workers: int | None = None
) -> tuple[Path, Path, Any]:
    """Every file the processes need, in ``tmp``: (verity.yaml, nginx.conf, the token key)."""
    from verity.identity.dev import generate_private_key, public_jwk, write_private_key

    key = generate_private_key("ES256")
    (tmp / "policy.yaml").write_text(POLICY)
    (tmp / "idp.jwks").write_text(json.dumps({"keys": [public_jwk(key, "ES256", "bench")]}))
    write_private_key(tmp / "assertion.pem", generate_private_key("ES256"))
    (tmp / "verity.yaml").write_text(verity_config(ports, redis_url, workers))
    return tmp / "verity.yaml", nginx_configs(tmp, ports), key


def wrk_script(tokens: Sequence[str], host: str = HOST) -> str:
    """A wrk Lua script sending ``GET /`` with ``Host`` and a bearer token rotated per request
    over ``tokens``; each wrk thread starts at a different token. The requests are formatted
    once per thread, so the script costs wrk the same on every path."""
    for token in tokens:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", token):
            raise ValueError("a token is base64url segments joined by dots")
    if not re.fullmatch(r"[A-Za-z0-9.-]+", host):
        raise ValueError("a host is letters, digits, dots and hyphens")
    listed = ",\n".join(f'  "{token}"' for token in tokens)
    return f"""-- generated by benchmarks/gateway.py: {len(tokens)} bearer token(s), one per request
local tokens = {{
{listed}
}}
local requests = {{}}
local index = 0
local threads = 0

function setup(thread)
  thread:set("offset", threads)
  threads = threads + 1
end

function init(args)
  for k = 1, #tokens do
    requests[k] = wrk.format("GET", "/", {{["Host"] = "{host}",
                                           ["Authorization"] = "Bearer " .. tokens[k]}})
  end
  index = ((offset or 0) * 7919) % #tokens
end

function request()
  index = index % #tokens + 1
  return requests[index]
end
"""


# --- wrk and /proc --------------------------------------------------------------------


def _latency(text: str, label: str) -> float:
    match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no {label}% latency in wrk output:\n{text}")
    return round(float(match[1]) * _UNITS[match[2]], 3)


def parse_wrk(text: str) -> dict[str, float]:
    """requests/s, p50/p99 (ms), request count, non-2xx/3xx and socket errors from wrk's
    ``--latency`` output; ``RuntimeError`` when it holds no result."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    if rps is None or total is None:
        raise RuntimeError(f"no result in wrk output:\n{text}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    return {
        "rps": float(rps[1]),
        "p50_ms": _latency(text, "50"),
        "p99_ms": _latency(text, "99"),
        "requests": int(total[1]),
        "non_2xx": int(non2xx[1]) if non2xx else 0,
        "socket_errors": sum(int(n) for n in errors.groups()) if errors else 0,
    }


def _stat_fields(pid: int, stat: Path | None = None) -> list[str]:
    # the command name, in parentheses, may hold spaces: split after its last ")"
    text = (stat or Path(f"/proc/{pid}/stat")).read_text()
    return text.rsplit(")", 1)[1].split()


def process_tree(root: int) -> list[int]:
    """``root`` and its live descendants (Linux /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parents[int(entry.name)] = int(_stat_fields(int(entry.name))[1])
    tree, frontier = [root], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        tree += children
        frontier = children
    return tree


def stat_files(pids: Sequence[int], *, main_thread: bool = False) -> list[Path]:
    """The /proc stat files of ``pids``: whole processes, or only their main threads (where
    an asyncio server runs its event loop)."""
    if main_thread:
        return [Path(f"/proc/{pid}/task/{pid}/stat") for pid in pids]
    return [Path(f"/proc/{pid}/stat") for pid in pids]


def cpu_seconds(stats: Sequence[Path]) -> float:
    """User + system CPU time so far of the processes or threads whose /proc ``stat`` files
    are ``stats`` (one that ended counts 0)."""
    ticks = 0
    for stat in stats:
        with contextlib.suppress(OSError):
            fields = _stat_fields(0, stat)
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far, every process's (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def machine_cores_busy(before: tuple[int, int], after: tuple[int, int], cpus: int) -> float:
    """How many of the machine's ``cpus`` cores were busy between two ``machine_ticks``."""
    busy, total = after[0] - before[0], after[1] - before[1]
    return round(cpus * busy / total, 2) if total > 0 else 0.0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(url: str, headers: dict[str, str], duration: int, connections: int) -> dict[str, Any]:
    """One wrk run with fixed ``headers`` (``parse_wrk``'s figures); benchmarks/scale.py's."""
    command = [WRK, f"-t{min(2, connections)}", f"-c{connections}", f"-d{duration}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    out = subprocess.run(  # noqa: S603 - fixed binary, our arguments
        [*command, url], capture_output=True, text=True, timeout=duration + 30, check=True
    )
    return parse_wrk(out.stdout)


def run_wrk_script(
    url: str, script: Path, duration: int, connections: int, trees: dict[str, list[Path]]
) -> dict[str, Any]:
    """One wrk run, the CPU time per request (us) of each process tree in ``trees`` and of
    wrk itself (the only child reaped meanwhile), and the machine's busy cores."""
    threads = min(2, connections)
    command = [WRK, f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency",
               "-s", str(script), url]  # fmt: skip
    before = {name: cpu_seconds(stats) for name, stats in trees.items()}
    wrk_before, machine_before = _children_cpu(), machine_ticks()
    out = subprocess.run(  # noqa: S603 - fixed binary, our arguments
        command, capture_output=True, text=True, timeout=duration + 30, check=False
    )
    machine_after = machine_ticks()
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {out.returncode}: {out.stderr[-500:]}")
    wrk_cpu = _children_cpu() - wrk_before
    result: dict[str, Any] = parse_wrk(out.stdout)
    # everything the machine ran meanwhile, other work included: the cores left to the chain
    result["machine_cores_busy"] = machine_cores_busy(
        machine_before, machine_after, os.cpu_count() or 1
    )
    spent = {name: cpu_seconds(stats) - before[name] for name, stats in trees.items()}
    spent["wrk"] = wrk_cpu
    requests = max(1, int(result["requests"]))
    result["cpu_us_per_request"] = {
        name: round(1e6 * seconds / requests, 1) for name, seconds in spent.items()
    }
    return result


# --- processes ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}:\n{tail}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group this script started (workers included), then SIGKILL."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # what is left of the group
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


@contextlib.contextmanager
def process(args: list[str], log: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A process (run in the repository) in a group of its own, listening on ``port``;
    stopped with its group on leaving. benchmarks/scale.py uses it too."""
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603 - our binaries, our arguments
            args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )
    try:
        wait_for(port, proc, log)
        yield proc
    finally:
        _stop(proc)


def verity_command() -> list[str]:
    """``verity`` as installed next to this Python, else ``python -m verity.cli``."""
    script = Path(sys.executable).parent / "verity"
    return [str(script)] if script.exists() else [sys.executable, "-m", "verity.cli"]


# --- revocation to refusal ------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    sent: float
    received: float
    status: int  # 0: no answer (connection error)


def revocation_summary(
    samples: Sequence[Sample], started: float, returned: float
) -> dict[str, Any]:
    """What the client saw around ``verity revoke``: requests allowed after the command
    returned (the target: 0) and the time from its return to the first refusal."""
    after = [s for s in samples if s.sent >= returned]
    refused = [s for s in samples if s.status == 401 and s.sent >= started]
    first = min(refused, key=lambda s: s.received) if refused else None
    allowed_after = [s for s in after if s.status == 200 and (first is None or s.sent < first.sent)]
    return {
        "revoke_command_ms": round(1e3 * (returned - started), 1),
        "requests_before_revoke": sum(1 for s in samples if s.sent < started),
        "allowed_before_revoke": sum(1 for s in samples if s.sent < started and s.status == 200),
        "allowed_while_revoke_ran": sum(
            1 for s in samples if started <= s.sent < returned and s.status == 200
        ),
        "allowed_after_revoke_returned": len(allowed_after),
        "refused": first is not None,
        "first_refusal_after_revoke_returned_ms": (
            round(1e3 * (first.received - returned), 2) if first else None
        ),
        "first_refusal_after_revoke_started_ms": (
            round(1e3 * (first.received - started), 2) if first else None
        ),
        # when the first refused request was sent (negative: before the revoke returned)
        "first_refused_request_sent_after_return_ms": (
            round(1e3 * (first.sent - returned), 2) if first else None
        ),
        "other_statuses": sorted({s.status for s in samples} - {200, 401}),
        "refused_on_next_request": first is not None and not allowed_after,
    }


class _Client(threading.Thread):
    """Requests back to back on one kept-alive connection until stopped."""

    def __init__(self, port: int, token: str) -> None:
        super().__init__(daemon=True)
        self.port, self.token = port, token
        self.samples: list[Sample] = []
        self.stop = threading.Event()

    def run(self) -> None:
        headers = {"Host": HOST, "Authorization": f"Bearer {self.token}"}
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        while not self.stop.is_set():
            sent = time.monotonic()
            try:
                conn.request("GET", "/", headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                status = 0
            self.samples.append(Sample(sent, time.monotonic(), status))
        conn.close()


Revoker = Callable[[str], None]


def cli_revoker(command: list[str]) -> Revoker:
    """``verity revoke token -`` as an operator runs it, the token on its standard input."""

    def revoke(token: str) -> None:
        done = subprocess.run(  # noqa: S603 - our CLI, our arguments
            command, input=token.encode(), capture_output=True, timeout=60, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"verity revoke exited {done.returncode}: {done.stderr[-500:]!r}")

    return revoke


@contextlib.contextmanager
def store_revoker(url: str, redis_url: str | None) -> Iterator[Revoker]:
    """The call ``verity revoke token`` makes, on stores opened beforehand: what a
    revocation costs the node without the CLI's start-up (the stricter measurement)."""
    from verity.config import StoreConfig
    from verity.identity.core import signing_input_hash
    from verity.identity.revocation_sync import record_revocation
    from verity.store import RevocationKind, open_stores

    stores = open_stores(StoreConfig(url=url, redis_url=redis_url))

    def revoke(token: str) -> None:
        expires = time.time() + 3600
        record_revocation(stores.revocations, RevocationKind.TOKEN, signing_input_hash(token),
                          expires=expires, reason="benchmark")  # fmt: skip

    try:
        yield revoke
    finally:
        stores.close()


def measure_revocation(port: int, token: str, revoke: Revoker) -> dict[str, Any]:
    """Traffic on ``token`` for 1 s, then ``revoke(token)``, then traffic until the first
    refusal or ``REVOCATION_TIMEOUT``."""
    client = _Client(port, token)
    client.start()
    try:
        time.sleep(1.0)
        started = time.monotonic()
        revoke(token)
        returned = time.monotonic()
        deadline = returned + REVOCATION_TIMEOUT
        while time.monotonic() < deadline and not any(
            s.status == 401 and s.sent >= started for s in list(client.samples)
        ):
            time.sleep(0.005)
        time.sleep(0.05)  # a few requests after the first refusal: it must stay refused
    finally:
        client.stop.set()
        client.join(10)
    result = revocation_summary(client.samples, started, returned)
    last = [s.status for s in client.samples if s.sent >= returned][-3:]
    result["stays_refused"] = bool(last) and all(status == 401 for status in last)
    return result


# --- the run --------------------------------------------------------------------------


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in ("rps", "p50_ms", "p99_ms", "machine_cores_busy"):
        out[field] = round(statistics.median(run[field] for run in runs), 3)
    for field in ("requests", "non_2xx", "socket_errors"):
        out[field] = sum(run[field] for run in runs)
    names = runs[0]["cpu_us_per_request"]
    out["cpu_us_per_request"] = {
        name: round(statistics.median(run["cpu_us_per_request"][name] for run in runs), 1)
        for name in names
    }
    return out


def _stack_versions() -> dict[str, str]:
    def run(args: list[str]) -> str:
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)  # noqa: S603
        except OSError:
            return "unavailable"
        return (
            (done.stdout + done.stderr).strip().splitlines()[0] if done.stdout + done.stderr else ""
        )

    import uvicorn

    sha = run(["git", "-C", str(ROOT), "rev-parse", "HEAD"])
    dirty = run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"])
    return {
        "verity_git_sha": sha + ("-dirty" if dirty else ""),
        "python": platform.python_version(),
        "nginx": run([NGINX, "-v"]),
        "wrk": run([WRK, "-v"]),
        "uvicorn": uvicorn.__version__,
        "redis_server": run([shutil.which("redis-server") or "redis-server", "--version"]),
    }


class Bench:
    """The processes of one run and the measurements made on them."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args, self.tmp = args, tmp
        names = ("upstream", "verity", "nginx", "static", "forward_auth", "redis")
        self.ports = {name: free_port() for name in names}
        self.paths = scenarios(args.sessions)

    def run(self) -> dict[str, Any]:
        redis = shutil.which("redis-server") if self.args.redis else None
        redis_url = f"redis://127.0.0.1:{self.ports['redis']}/0" if redis else None
        verity_conf, nginx_conf, key = write_configs(
            self.tmp, self.ports, redis_url=redis_url, workers=self.args.gateway_workers
        )
        tokens = mint_tokens(key, max(self.args.sessions))
        scripts = {}
        for count in {path.sessions for path in self.paths}:
            scripts[count] = self.tmp / f"tokens-{count}.lua"
            scripts[count].write_text(wrk_script(tokens[:count]))
        upstream = [sys.executable, "-m", "uvicorn", "benchmarks.gateway:upstream_app",
                    "--app-dir", str(ROOT), "--host", "127.0.0.1",
                    "--port", str(self.ports["upstream"]), "--loop", "uvloop",
                    "--http", "httptools", "--no-access-log", "--log-level", "warning"]  # fmt: skip
        verity = [*verity_command(), "serve", "--config", str(verity_conf)]
        nginx = [NGINX, "-c", str(nginx_conf), "-p", str(self.tmp), "-g", "daemon off;"]
        with contextlib.ExitStack() as stack:
            if redis is not None:
                stack.enter_context(process(
                    [redis, "--port", str(self.ports["redis"]), "--bind", "127.0.0.1",
                     "--save", "", "--appendonly", "no", "--dir", str(self.tmp)],
                    self.tmp / "redis.log", self.ports["redis"]))  # fmt: skip
            procs = {
                "upstream": stack.enter_context(
                    process(upstream, self.tmp / "upstream.log", self.ports["upstream"])
                ),
                "verity": stack.enter_context(
                    process(verity, self.tmp / "verity.log", self.ports["verity"])
                ),
                "nginx": stack.enter_context(
                    process(nginx, self.tmp / "nginx.log", self.ports["forward_auth"])
                ),
            }
            pids = {name: process_tree(proc.pid) for name, proc in procs.items()}
            trees = {name: stat_files(found) for name, found in pids.items()}
            trees["verity_main_thread"] = stat_files(pids["verity"], main_thread=True)
            samples = self._rounds(scripts, trees)
            revocation = self._revocations(verity_conf, key, redis_url)
            if redis_url is not None:
                revocation["sqlite_only_node"] = self._sqlite_only_revocations()
        return {"samples": samples, "revocation": revocation, "processes": pids}

    def _revocations(
        self, conf: Path, key: Any, redis_url: str | None, ports: dict[str, int] | None = None
    ) -> dict[str, Any]:
        """Revocation to refusal on each Verity path (``ports``: path -> port): by the CLI,
        then by the store call."""
        command = [*verity_command(), "revoke", "token", "-", "--config", str(conf),
                   "--reason", "benchmark", "--for", "1h"]  # fmt: skip
        if ports is None:
            ports = {
                "verity_proxy": self.ports["verity"],
                "forward_auth": self.ports["forward_auth"],
            }
        fresh = iter(mint_tokens(key, 2 * len(ports), prefix="revoked"))
        out: dict[str, Any] = {
            "delivery": "Redis pub/sub" if redis_url else "the node's 2 s poll of SQLite",
            "cli": {},
            "store_call": {},
        }
        for name, port in ports.items():
            out["cli"][name] = measure_revocation(port, next(fresh), cli_revoker(command))
        store_url = f"sqlite:///{conf.parent / 'verity.db'}"
        with store_revoker(store_url, redis_url) as revoke:
            for name, port in ports.items():
                out["store_call"][name] = measure_revocation(port, next(fresh), revoke)
        return out

    def _sqlite_only_revocations(self) -> dict[str, Any]:
        """The same on a second node whose store is SQLite alone (the embedded default, no
        Redis): ``verity revoke`` reaches it only by the node's poll. Proxy path only."""
        folder = self.tmp / "sqlite-only"
        folder.mkdir()
        ports = {**self.ports, "verity": free_port()}
        conf, _, key = write_configs(folder, ports, workers=self.args.gateway_workers)
        command = [*verity_command(), "serve", "--config", str(conf)]
        with process(command, folder / "verity.log", ports["verity"]):
            return self._revocations(conf, key, None, {"verity_proxy": ports["verity"]})

    def _url(self, path: Scenario) -> str:
        return f"http://127.0.0.1:{self.ports[path.port_name]}/"

    def _rounds(
        self, scripts: dict[int, Path], trees: dict[str, list[Path]]
    ) -> dict[str, dict[str, list[dict[str, Any]]]]:
        args = self.args
        for path in self.paths:  # warm-up: keep-alive pools, token caches, first signatures
            url, script = self._url(path), scripts[path.sessions]
            run_wrk_script(url, script, args.warmup, args.connections, trees)
        samples: dict[str, dict[str, list[dict[str, Any]]]] = {
            path.name: {"loaded": [], "one_connection": []} for path in self.paths
        }
        for index in range(args.rounds):
            for path in self.paths:
                run = run_wrk_script(self._url(path), scripts[path.sessions], args.duration,
                              args.connections, trees)  # fmt: skip
                samples[path.name]["loaded"].append(run)
                _progress(f"round {index + 1}/{args.rounds} -c{args.connections}", path, run)
            for path in self.paths:
                url, script = self._url(path), scripts[path.sessions]
                run = run_wrk_script(url, script, args.one_duration, 1, trees)
                samples[path.name]["one_connection"].append(run)
                _progress(f"round {index + 1}/{args.rounds} -c1", path, run)
        return samples


def _progress(label: str, path: Scenario, run: dict[str, Any]) -> None:
    print(f"  {label:<20} {path.name:<22} {run['rps']:>10,.0f} req/s  "
          f"p50 {run['p50_ms']:.2f} ms", file=sys.stderr, flush=True)  # fmt: skip


def summarize(paths: Sequence[Scenario], samples: dict[str, Any]) -> dict[str, Any]:
    """Medians per path, ratios to direct and to the nginx static ceiling, and the p50 at
    one connection added to direct's."""
    out: dict[str, Any] = {}
    for path in paths:
        runs = samples[path.name]
        out[path.name] = {
            "sessions": path.sessions if path.verity else None,
            **_median(runs["loaded"]),
            "one_connection": _median(runs["one_connection"]),
            "rounds": runs,
        }
    direct, ceiling = out["direct"], out["nginx_static"]
    for row in out.values():
        row["ratio_to_direct"] = round(row["rps"] / direct["rps"], 3)
        row["ratio_to_nginx_static"] = round(row["rps"] / ceiling["rps"], 3)
        if row["sessions"] is not None:  # how long a per-token cache entry must live to hit
            row["token_reuse_interval_s"] = round(row["sessions"] / max(row["rps"], 1e-9), 4)
        row["one_connection"]["added_p50_ms_vs_direct"] = round(
            row["one_connection"]["p50_ms"] - direct["one_connection"]["p50_ms"], 3
        )
        cpu = row["cpu_us_per_request"]  # x requests/s: the cores each process kept busy
        row["cores_busy"] = {k: round(v * row["rps"] / 1e6, 2) for k, v in cpu.items()}
    return out


def targets(results: dict[str, Any], revocation: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets at 100 sessions, each with its figure and met / not met (``None``
    when the run did not measure 100 sessions)."""
    proxy = results.get(f"verity_proxy@{TARGET_SESSIONS}")
    auth = results.get(f"forward_auth@{TARGET_SESSIONS}")

    def row(name: str, target: str, value: float | None, met: bool | None) -> dict[str, Any]:
        return {"target": name, "wanted": target, "measured": value, "met": met}

    def check(value: float | None, ok: Any) -> bool | None:
        return None if value is None else bool(ok(value))

    rows = []
    direct = results["direct"]["rps"]
    value = auth["rps"] / direct if auth else None  # unrounded: 0.3996 is not 0.40
    rows.append(row("forward-auth throughput / direct", f">= {TARGET_FORWARD_AUTH_RATIO}",
                    value and round(value, 3),
                    check(value, lambda v: v >= TARGET_FORWARD_AUTH_RATIO)))  # fmt: skip
    value = proxy["rps"] / direct if proxy else None
    rows.append(row("proxy throughput / direct", f">= {TARGET_PROXY_RATIO}",
                    value and round(value, 3),
                    check(value, lambda v: v >= TARGET_PROXY_RATIO)))  # fmt: skip
    value = auth["cpu_us_per_request"]["verity"] if auth else None
    rows.append(row("Verity CPU per forward-auth request (us)",
                    f"<= {TARGET_FORWARD_AUTH_CPU_US:g}", value,
                    check(value, lambda v: v <= TARGET_FORWARD_AUTH_CPU_US)))  # fmt: skip
    for label, found in (("proxy", proxy), ("forward-auth", auth)):
        value = found["one_connection"]["added_p50_ms_vs_direct"] if found else None
        rows.append(row(f"{label}: p50 added at 1 connection (ms)", f"<= {TARGET_ADDED_P50_MS:g}",
                        value, check(value, lambda v: v <= TARGET_ADDED_P50_MS)))  # fmt: skip
    for mode, how in (("cli", "`verity revoke`"), ("store_call", "the revoke store call")):
        for label, key in (("proxy", "verity_proxy"), ("forward-auth", "forward_auth")):
            measured = revocation[mode][key]
            rows.append(row(f"{label}: requests allowed after {how} returned", "0",
                            measured["allowed_after_revoke_returned"],
                            measured["refused_on_next_request"]))  # fmt: skip
    for item in rows:
        item["at_sessions"] = TARGET_SESSIONS if "revoke" not in item["target"] else None
    return rows


def _bound(row: dict[str, Any], cpus: int, workers: int) -> str:
    """What bounds one Verity path's throughput, read from its cores_busy and the machine's."""
    busy = row["cores_busy"]
    loop = busy.get("verity_main_thread", 0.0)
    chain = sum(value for name, value in busy.items() if name != "verity_main_thread")
    machine = row.get("machine_cores_busy", chain)
    if loop >= 0.85 * workers:
        bound = (f"Verity's event loop is saturated ({loop:.2f} core in its main thread(s)): "
                 "its CPU per request sets the throughput")  # fmt: skip
    elif machine >= 0.85 * cpus:
        bound = (f"the {cpus} cores are full ({machine:.2f} busy, {chain:.2f} of them this "
                 "benchmark's processes, the rest other work on the machine)")  # fmt: skip
    else:
        bound = (f"no core is saturated (Verity's event loop {loop:.2f}, the chain {chain:.2f}, "
                 f"the machine {machine:.2f} of {cpus} cores busy): waiting sets it (I/O such "
                 "as the audit log's durable commit, or the GIL held by Verity's other "
                 "threads)")  # fmt: skip
    return (
        f"{row['rps']:,.0f} req/s ({row['ratio_to_direct']:.1%} of direct); Verity "
        f"{row['cpu_us_per_request'].get('verity', 0):.0f} us/request "
        f"({busy.get('verity', 0.0):.2f} core); {bound}"
    )


def limits_text(
    results: dict[str, Any], revocation: dict[str, Any], cpus: int, workers: int = 1
) -> str:
    """What bounds each figure, read from the figures: which process is saturated, how much
    of the machine the whole chain uses, and how a revocation travelled."""
    parts = [
        f"Everything runs on one {cpus}-core machine over loopback: wrk, nginx, the upstream "
        "and Verity share the cores, so a path's requests/s is bounded by the sum of the CPU "
        "per request of every process on it (the cores_busy of each row); figures move with "
        "the load average recorded before and after."
    ]
    direct = results["direct"]
    upstream = direct["cores_busy"].get("upstream", 0.0)
    machine = direct.get("machine_cores_busy", 0.0)
    if upstream >= 0.85:
        bound = "the upstream's event loop is the bound"
    elif machine >= 0.85 * cpus:
        bound = f"the machine's cores are the bound ({machine:.2f} of {cpus} busy)"
    else:
        bound = f"neither is saturated ({machine:.2f} of {cpus} cores busy)"
    parts.append(
        f"direct: {direct['rps']:,.0f} req/s; the upstream (one uvicorn process) uses "
        f"{upstream:.2f} core at {direct['cpu_us_per_request'].get('upstream', 0):.0f} "
        f"us/request and wrk {direct['cores_busy'].get('wrk', 0):.2f}: {bound}."
    )
    for name, row in results.items():
        if row["sessions"] is None:
            continue
        parts.append(f"{name}: {_bound(row, cpus, workers)}.")
    for key, measured in revocation["cli"].items():
        call = revocation["store_call"][key]
        parts.append(
            f"revocation ({key}, delivered by {revocation['delivery']}): `verity revoke` took "
            f"{measured['revoke_command_ms']:.0f} ms (a Python CLI starting, opening the store, "
            f"storing and publishing), {measured['allowed_after_revoke_returned']} request(s) "
            "allowed after it returned; the store call alone took "
            f"{call['revoke_command_ms']:.1f} ms, {call['allowed_after_revoke_returned']} "
            "allowed after it returned, first refusal "
            f"{call['first_refusal_after_revoke_returned_ms']} ms after it returned."
        )
    alone = revocation.get("sqlite_only_node")
    if alone:
        cli, call = alone["cli"]["verity_proxy"], alone["store_call"]["verity_proxy"]
        parts.append(
            "On a node whose store is SQLite alone (no Redis; the revocation reaches it by its "
            f"2 s poll): {cli['allowed_after_revoke_returned']} request(s) allowed after "
            f"`verity revoke` returned ({cli['revoke_command_ms']:.0f} ms), "
            f"{call['allowed_after_revoke_returned']} after the store call returned, first "
            f"refusal {call['first_refusal_after_revoke_returned_ms']} ms after it."
        )
    return " ".join(parts)


def machine(load_before: Sequence[float], load_after: Sequence[float]) -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        model = found[1].strip() if found else ""
    return {
        "platform": platform.platform(),
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "load_average_1_5_15_min": {
            "before": [round(x, 2) for x in load_before],
            "after": [round(x, 2) for x in load_after],
        },
    }


def print_tables(document: dict[str, Any], output: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 150)
    table = Table(title="gateway: medians of rounds; latency in ms; CPU in us per request")
    columns = ("path", "req/s", "/direct", "/static", "p50", "p99", "c1 p50", "c1 added",
               "cpu verity", "(loop)", "cpu nginx", "cpu upstr", "cpu wrk")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column == "path" else "right")
    for name, row in document["scenarios"].items():
        cpu, one = row["cpu_us_per_request"], row["one_connection"]
        table.add_row(
            name, f"{row['rps']:,.0f}", f"{row['ratio_to_direct']:.3f}",
            f"{row['ratio_to_nginx_static']:.3f}", f"{row['p50_ms']:.2f}",
            f"{row['p99_ms']:.2f}", f"{one['p50_ms']:.3f}", f"{one['added_p50_ms_vs_direct']:+.3f}",
            *(f"{cpu.get(k, 0):.0f}"
              for k in ("verity", "verity_main_thread", "nginx", "upstream", "wrk")),
        )  # fmt: skip
    console.print(table)
    checks = Table(title=f"issue 12 targets (at {TARGET_SESSIONS} sessions)")
    for column in ("target", "wanted", "measured", "met"):
        checks.add_column(column)
    for item in document["targets"]:
        met = {True: "[green]met", False: "[red]not met", None: "not measured"}[item["met"]]
        checks.add_row(item["target"], item["wanted"], str(item["measured"]), met)
    console.print(checks)
    revoked = Table(title=f"revocation to refusal ({document['revocation']['delivery']})")
    for column in ("path", "revoked by", "revoke ms", "allowed after return",
                   "first refusal after return ms", "stays refused"):  # fmt: skip
        revoked.add_column(column)
    extra = document["revocation"].get("sqlite_only_node", {})
    for mode in ("cli", "store_call"):
        rows = list(document["revocation"][mode].items())
        rows += [(f"{k} (SQLite-only node)", v) for k, v in extra.get(mode, {}).items()]
        for key, item in rows:
            revoked.add_row(key, mode, f"{item['revoke_command_ms']:.1f}",
                            str(item["allowed_after_revoke_returned"]),
                            str(item["first_refusal_after_revoke_returned_ms"]),
                            str(item["stays_refused"]))  # fmt: skip
    console.print(revoked)
    load = document["machine"]["load_average_1_5_15_min"]
    console.print(f"load average (1, 5, 15 min): before {load['before']}, after {load['after']}")
    console.print(f"results: {output}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 round of 3 s, 1 and 100 sessions (~1 min)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (3)")
    parser.add_argument("--duration", type=int, default=None, help="s per -c32 run (10)")
    parser.add_argument("--one-duration", type=int, default=None, help="s per -c1 run (3)")
    parser.add_argument("--warmup", type=int, default=None, help="s per warm-up run (2)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--sessions", default=None, help="token counts, e.g. 1,100,1000")
    workers = "write gateway.workers: N into verity.yaml (if Verity has it)"
    parser.add_argument("--gateway-workers", type=int, default=None, help=workers)
    no_redis = "no redis-server: revocations reach Verity by its 2 s SQLite poll"
    parser.add_argument("--no-redis", dest="redis", action="store_false", help=no_redis)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {"rounds": (1, 3), "duration": (3, 10), "one_duration": (2, 3),
                "warmup": (1, 2), "sessions": ("1,100", "1,100,1000"),
                "output": (RESULTS / "gateway_quick.json", RESULTS / "gateway.json")}  # fmt: skip
    for name, (small, full) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, small if quick else full)
    args.sessions = sorted({int(n) for n in str(args.sessions).split(",") if n.strip()})
    if not args.sessions or min(args.sessions) < 1 or args.rounds < 1:
        parser.error("sessions >= 1 and rounds >= 1")
    if min(args.duration, args.one_duration, args.warmup) < 1:
        parser.error("durations are whole seconds >= 1 (wrk's -d)")
    if args.connections < 1:
        parser.error("connections >= 1")
    return args


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    for binary in (NGINX, WRK):
        if not Path(binary).exists():
            sys.exit(f"{binary} is needed (Debian: apt-get install -y nginx wrk)")
    signal.signal(signal.SIGTERM, _raise_interrupt)  # stop the processes as Ctrl-C does
    sys.path.insert(0, str(ROOT))
    started = time.monotonic()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="verity-bench-") as name:
        bench = Bench(args, Path(name))
        measured = bench.run()
    load_after = os.getloadavg()
    results = summarize(bench.paths, measured["samples"])
    revocation = measured["revocation"]
    cpus = os.cpu_count() or 1
    document = {
        "benchmark": "gateway",
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(load_before, load_after),
        "versions": _stack_versions(),
        "method": (
            f"wrk -t2 -c{args.connections} for {args.duration:g} s and -t1 -c1 for "
            f"{args.one_duration:g} s per path per round, {args.rounds} interleaved round(s) "
            f"after a {args.warmup:g} s warm-up per path, median of rounds; every request "
            "carries Host and a bearer token rotated per request (Lua) over the path's "
            "sessions (100 for the non-Verity paths, ignored there); CPU from /proc/<pid>/stat "
            "of each process tree, wrk from getrusage; all on 127.0.0.1"
        ),
        "settings": {
            "quick": args.quick,
            "rounds": args.rounds,
            "duration_s": args.duration,
            "one_connection_duration_s": args.one_duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "sessions": args.sessions,
            "gateway_workers": args.gateway_workers,
            "redis": args.redis,
            "wall_clock_s": round(time.monotonic() - started, 1),
        },
        "scenarios": results,
        "revocation": revocation,
        "targets": targets(results, revocation),
        "limits": limits_text(results, revocation, cpus, args.gateway_workers or 1),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2) + "\n")
    print_tables(document, args.output)


if __name__ == "__main__":
    main()
