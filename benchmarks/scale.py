"""Scale-out benchmark: three Verity nodes sharing one PostgreSQL and one Redis.

    python benchmarks/scale.py [--revocations 200] [--duration 8] [--connections 32] [--rounds 2]

(1) Revocation propagation. A person signs in (embedded IdP, session in PostgreSQL); nodes
    B and C serve the session once, so each holds it in its cache; then the person logs
    out on node A, while B and C are polled until they refuse the session (401). Three
    figures, p50/p99/max over B and C and ``--revocations`` revocations:
    - delivered_to_node: the revocation's ``revoked_at`` (A's clock) to its arrival on B
      and C, as each node logs it on receipt (``verity.store.delivery``; one machine, one
      clock);
    - refused_by_node_from_revocation: ``revoked_at`` to the first refused poll's answer
      (adds the poll's own round trip: every poll is a decision, audited durably);
    - refused_by_node_from_logout_request: the logout sent to A to that answer (adds A's
      own work: session delete, revocation commit, NOTIFY, Redis publish, audit event).
(2) Forward-auth decisions per second with 1, 2 and 3 nodes: wrk -> nginx auth_request
    (deploy/nginx/verity-forward-auth.conf, the ``verity`` upstream listing the first k
    nodes, keep-alive) -> Verity forward-auth; nginx -> a small upstream app. Every request
    carries the session cookie. Interleaved over ``--rounds`` rounds, medians kept.

The cluster is tests/e2e/cluster.py's (the one the multi-node tests run): a new database
on the machine's PostgreSQL, a private redis-server, every process on 127.0.0.1 with
run-time ports, all stopped at the end. Results: benchmarks/results/scale.json.
Needs PostgreSQL on 127.0.0.1:5432, /usr/bin/redis-server, /usr/sbin/nginx and /usr/bin/wrk.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks/results/scale.json"
TICK = os.sysconf("SC_CLK_TCK")
DELIVERED = re.compile(r"revocation delivered: kind=session delay_ms=([0-9.]+)")

from benchmarks.gateway import process, run_wrk  # noqa: E402
from tests.e2e.cluster import Cluster, Node, cluster, free_port, sign_in  # noqa: E402

NGINX_MAIN = """
{user}
worker_processes 1;
pid {dir}/nginx-{k}.pid;
error_log {dir}/nginx-{k}-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi; uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
    include {dir}/site-{k}.conf;
}}
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def session(nodes: Cluster) -> str:
    """A new session (signed in on node A) that every node has served once."""
    with httpx.Client(timeout=10) as client:
        cookie = sign_in(client, nodes.nodes[0], "engineer@cluster.test")
    for node in nodes.nodes:
        response = httpx.get(node.url, headers={"Cookie": cookie, "Accept": "application/json"})
        if response.status_code != 200:
            raise RuntimeError(f"{node.name} refused a fresh session: {response.status_code}")
    return cookie


async def _refused(client: httpx.AsyncClient, node: Node, cookie: str, deadline: float) -> float:
    """The wall-clock time at which ``node`` first refused ``cookie``."""
    headers = {"Cookie": cookie, "Accept": "application/json"}
    while time.perf_counter() < deadline:
        if (await client.get(node.url, headers=headers)).status_code == 401:
            return time.time()
        await asyncio.sleep(0.0005)
    raise RuntimeError(f"{node.name} still accepted a revoked session after 5 s")


async def one_revocation(nodes: Cluster, cookie: str) -> tuple[list[float], float]:
    """Wall-clock refusal times on B and C, and when the logout was sent to A."""
    a, b, c = nodes.nodes[:3]
    async with httpx.AsyncClient(timeout=10) as client:
        page = await client.get(f"{a.url}/verity/logout", headers={"Cookie": cookie})
        found = re.search(r"name='csrf' value='([^']*)'", page.text)
        if found is None:
            raise RuntimeError(f"no sign-out form on A: {page.status_code}")
        form = {"csrf": found.group(1)}

        async def logout() -> None:
            answer = await client.post(
                f"{a.url}/verity/logout", data=form, headers={"Cookie": cookie, "Origin": a.url}
            )
            if answer.status_code not in (200, 302, 303):
                raise RuntimeError(f"logout on A failed: {answer.status_code}")

        sent = time.time()
        deadline = time.perf_counter() + 5
        _, *refused = await asyncio.gather(
            logout(), _refused(client, b, cookie, deadline), _refused(client, c, cookie, deadline)
        )
    return refused, sent


def _latest_revocation(conn: Any) -> float:
    row = conn.execute(
        "select revoked_at from verity_revocations where kind = 'session' "
        "order by revoked_at desc limit 1"
    ).fetchone()
    return float(row[0])


def _summary(ms: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2),
    }


def propagation(nodes: Cluster, count: int) -> dict[str, Any]:
    """Revocation -> refusal on B and C, ``count`` times, one revocation at a time."""
    import psycopg

    from_commit: list[float] = []
    from_sent: list[float] = []
    started = time.monotonic()
    with psycopg.connect(nodes.store_url, autocommit=True) as conn:
        for index in range(count):
            cookie = session(nodes)
            refused, sent = asyncio.run(one_revocation(nodes, cookie))
            revoked_at = _latest_revocation(conn)  # node A's clock = this machine's clock
            if revoked_at < sent:
                raise RuntimeError("the newest revocation is older than the logout")
            from_commit += [(t - revoked_at) * 1000 for t in refused]
            from_sent += [(t - sent) * 1000 for t in refused]
            if (index + 1) % 20 == 0:
                print(f"  {index + 1}/{count} revocations", file=sys.stderr, flush=True)
    delivered = []
    for node in nodes.nodes[1:3]:  # what B and C logged on receipt (TimedRevocations)
        delivered += [float(v) for v in DELIVERED.findall(node.log.read_text())]
    if len(delivered) != 2 * count:
        raise RuntimeError(
            f"expected {2 * count} deliveries in B's and C's logs, got {len(delivered)}"
        )
    return {
        "revocations": count,
        "arrivals": len(from_commit),
        "delivered_to_node": _summary(delivered),
        "refused_by_node_from_revocation": _summary(from_commit),
        "refused_by_node_from_logout_request": _summary(from_sent),
        "seconds": round(time.monotonic() - started, 1),
    }


def nginx_configs(tmp: Path, nodes: Cluster, upstream_port: int, k: int) -> tuple[Path, int]:
    port = free_port()
    site = (ROOT / "deploy/nginx/verity-forward-auth.conf").read_text()
    servers = "".join(f"    server 127.0.0.1:{n.port};\n" for n in nodes.nodes[:k])
    site = site.replace("    server 127.0.0.1:8080;\n", servers)
    site = site.replace("127.0.0.1:9000", f"127.0.0.1:{upstream_port}")
    site = site.replace("listen 8000;", f"listen 127.0.0.1:{port};")
    (tmp / f"site-{k}.conf").write_text(site)
    user = "user root;" if os.geteuid() == 0 else ""
    conf = tmp / f"nginx-{k}.conf"
    conf.write_text(NGINX_MAIN.format(dir=tmp, user=user, k=k))
    return conf, port


def _ticks(pid: int) -> int:
    """utime + stime of ``pid`` (all its threads), in clock ticks; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def _children(pids: list[int]) -> list[int]:
    """``pids`` and their child processes (nginx's workers, forked by its master)."""
    found = list(pids)
    for pid in pids:
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0


def _pids(match: str) -> list[int]:
    """Processes whose command line contains ``match``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if match in cmdline:
                found.append(int(entry.name))
    return found


def _named(comm: str) -> list[int]:
    """Processes whose name is ``comm`` (PostgreSQL's server and backends)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == comm:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _machine_busy() -> tuple[int, int]:
    """(busy, total) ticks of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def measured_run(
    url: str, headers: dict[str, str], args: argparse.Namespace, groups: dict[str, list[int]]
) -> dict[str, Any]:
    """One wrk run, plus the CPU (in cores) each group of processes and wrk used meanwhile."""
    before = {name: sum(_ticks(pid) for pid in pids) for name, pids in groups.items()}
    machine = _machine_busy()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    result: dict[str, Any] = run_wrk(url, headers, args.duration, args.connections)
    wall = time.monotonic() - start
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy, total = (b - a for a, b in zip(machine, _machine_busy(), strict=True))
    cores = {
        name: round((sum(_ticks(pid) for pid in pids) - before[name]) / TICK / wall, 2)
        for name, pids in groups.items()
    }
    wrk = (after_children.ru_utime + after_children.ru_stime) - (
        children.ru_utime + children.ru_stime
    )
    cores["wrk"] = round(wrk / wall, 2)
    cores["machine_busy_fraction"] = round(busy / total, 3) if total else 0.0
    result["cpu_cores"] = cores
    return result


def throughput(
    args: argparse.Namespace, nodes: Cluster, tmp: Path, upstream: int
) -> dict[str, Any]:
    cookie = session(nodes)
    headers = {"Cookie": cookie, "Host": "127.0.0.1"}
    samples: dict[int, list[dict[str, Any]]] = {1: [], 2: [], 3: []}
    configs = {k: nginx_configs(tmp, nodes, upstream, k) for k in samples}
    shared = {
        "postgresql": _named("postgres"),
        "redis": _pids(f"--port {nodes.redis.port}"),
        "upstream": [
            p for p in _pids("benchmarks.gateway:upstream_app") if _parent(p) == os.getpid()
        ],
    }
    for _ in range(args.rounds):
        for k, (conf, port) in configs.items():
            command = ["/usr/sbin/nginx", "-c", str(conf), "-p", str(tmp), "-g", "daemon off;"]
            with process(command, tmp / f"nginx-{k}.log", port):
                url = f"http://127.0.0.1:{port}/"
                run_wrk(url, headers, 1, args.connections)  # warm-up: pools, caches
                groups = {
                    **{f"verity_{n.name}": [n.process.pid] for n in nodes.nodes if n.process},
                    "nginx": _children(_pids(str(conf))),
                    **shared,
                }
                samples[k].append(measured_run(url, headers, args, groups))
                print(f"  {k} node(s): {samples[k][-1]['rps']:.0f} req/s "
                      f"cpu {samples[k][-1]['cpu_cores']}", file=sys.stderr)  # fmt: skip
    result: dict[str, Any] = {}
    for k, runs in samples.items():
        numbers = {f: round(statistics.median(r[f] for r in runs), 3) for f in ("rps", "p50_ms",
                   "p99_ms", "non_2xx")}  # fmt: skip
        cpu = {name: round(statistics.median(r["cpu_cores"][name] for r in runs), 2)
               for name in runs[0]["cpu_cores"]}  # fmt: skip
        result[f"{k}_nodes"] = {**numbers, "cpu_cores": cpu}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--revocations", type=int, default=200)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="verity-scale-") as name:
        tmp = Path(name)
        upstream = free_port()
        app = [sys.executable, "-m", "uvicorn", "benchmarks.gateway:upstream_app", "--port",
               str(upstream), "--loop", "uvloop", "--http", "httptools", "--no-access-log",
               "--log-level", "warning"]  # fmt: skip
        with (
            process(app, tmp / "upstream.log", upstream),
            cluster(tmp, upstream_port=upstream) as nodes,
        ):
            print("revocation propagation across 3 nodes ...", file=sys.stderr)
            revocations = propagation(nodes, args.revocations)
            print(f"  {revocations}", file=sys.stderr)
            print("forward-auth decisions/s with 1, 2, 3 nodes ...", file=sys.stderr)
            rates = throughput(args, nodes, tmp, upstream)
    one = rates["1_nodes"]["rps"]
    document = {
        "benchmark": "scale",
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "method": (
            "3 `verity serve` processes on one PostgreSQL database and one Redis, sessions "
            "from the embedded IdP; propagation: logout on node A while polling B and C; "
            f"throughput: wrk -t2 -c{args.connections} {args.duration}s -> nginx "
            "auth_request -> k Verity nodes, median of "
            f"{args.rounds} interleaved rounds"
        ),
        "revocation_propagation": revocations,
        "forward_auth": rates,
        "ratios": {f"{k}_nodes_vs_1": round(rates[f"{k}_nodes"]["rps"] / one, 3) for k in (2, 3)},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
