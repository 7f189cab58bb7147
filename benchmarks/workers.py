"""``gateway.workers``: how accepting on one inherited socket compares with SO_REUSEPORT.

    python benchmarks/workers.py [--workers 2] [--duration 5] [--connections 32] [--rounds 2]

Forward-auth (a bearer token, decided and audited into SQLite) is loaded directly with
``wrk -c CONNECTIONS`` in three set-ups, interleaved over ``--rounds`` rounds:

- ``single``: ``verity serve`` with one process (``workers: 1``);
- ``shared``: ``verity serve --workers N`` as shipped: the supervisor binds once and the
  forked workers accept on the inherited socket;
- ``reuseport``: the same supervisor and workers, but each worker gets a socket of its
  own bound with ``SO_REUSEPORT`` (the kernel hashes each connection to one of them).
  This set-up exists only here, to measure the alternative.

For each: requests/s, wrk's p50/p99 latency, and each worker's share of the CPU time
(``/proc/<pid>/stat`` utime+stime during the run), which shows how evenly the work is
spread. Also the cost of one check of the SQLite revocation watch (``--revision-only``:
that alone), with 0, 1,000 and 10,000 revocations stored. Results:
benchmarks/results/workers.json. Needs /usr/bin/wrk.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.test_nginx_forward_auth import HOST, ISSUER, write_verity  # noqa: E402
from tests.gateway.servers import free_port  # noqa: E402
from verity.identity.dev import generate_private_key, mint  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "workers.json"
WRK = shutil.which("wrk") or "/usr/bin/wrk"
HZ = os.sysconf("SC_CLK_TCK")


def child_reuseport(config_path: str, workers: int) -> int:  # pragma: no cover - benchmark
    """The ``reuseport`` set-up: our supervisor, one SO_REUSEPORT socket per worker."""
    from verity.cli.serve import load_serve_config, serve_node
    from verity.cli.supervisor import Listeners, Supervisor
    from verity.gateway import AssertionSigner
    from verity.observability import configure_logging

    config = load_serve_config(Path(config_path))
    configure_logging()
    signer = AssertionSigner.from_config(config.gateway.assertion, issuer=config.gateway.public_url)
    sockets = []
    for _ in range(workers):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((config.server.host, config.server.port))
        sock.listen(2048)
        sockets.append(sock)
    base = Path(config_path).resolve().parent

    def main(index: int, ready: Any) -> int:
        for i, sock in enumerate(sockets):
            if i != index:
                sock.close()
        serve_node(config, base, access_log=False, listeners=Listeners(sockets[index]),
                   signer=signer, ready=ready)  # fmt: skip
        return 0

    return Supervisor(workers, main).run()


def revision_cost(sizes: tuple[int, ...] = (0, 1000, 10000)) -> dict[str, dict[str, float]]:
    """µs per ``SqliteRevocations.revision()`` (the 50 ms revocation watch of a SQLite
    node) with that many revocations stored: when nothing was written since the last
    check (``PRAGMA data_version`` only), and right after another connection stored one
    (the aggregate runs too)."""
    from verity.store import RevocationKind, sqlite

    folder = Path(tempfile.mkdtemp(prefix="verity-revision-"))
    here, there = sqlite.SqliteDatabase(folder / "v.db"), sqlite.SqliteDatabase(folder / "v.db")
    sqlite.migrate(here)
    watcher, writer = sqlite.SqliteRevocations(here), sqlite.SqliteRevocations(there)
    now, stored, costs = time.time(), 0, {}
    insert = (
        "insert into verity_revocations (kind, value, id, revoked_at, expires, reason)"
        " values (?, ?, ?, ?, ?, ?)"
    )
    try:
        for size in sizes:
            with there.write() as conn:
                conn.executemany(insert, [("jti", f"v{i}", f"id{i}", now, now + 3600, "")
                                          for i in range(stored, size)])  # fmt: skip
            stored = max(stored, size)
            watcher.revision()
            start = time.perf_counter()
            for _ in range(2000):
                watcher.revision()
            unchanged = (time.perf_counter() - start) / 2000
            after_write = 0.0
            for i in range(50):
                writer.revoke(RevocationKind.JTI, f"w{size}-{i}", expires=now + 3600)
                start = time.perf_counter()
                watcher.revision()
                after_write += time.perf_counter() - start
            costs[str(size)] = {
                "unchanged_us": round(unchanged * 1e6, 1),
                "after_a_write_us": round(after_write / 50 * 1e6, 1),
            }
    finally:
        here.close()
        there.close()
        shutil.rmtree(folder, ignore_errors=True)
    return costs


def ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def wait_up(port: int, process: subprocess.Popen[bytes], workers: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("server exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
        except OSError:
            time.sleep(0.1)
            continue
        if workers == 1 or len(children(process.pid)) == workers:
            time.sleep(1.0)  # let the last worker finish starting
            return
        time.sleep(0.1)
    raise RuntimeError("server did not start")


def latency_ms(text: str, percentile: str) -> float | None:
    match = re.search(rf"^\s*{percentile}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if match is None:
        return None
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def run_one(mode: str, workers: int, args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"verity-workers-{mode}-"))
    key = generate_private_key("ES256")
    port = free_port()
    config = write_verity(tmp, port, key, audited=True)
    token = mint(key, alg="ES256", kid="e2e", issuer=ISSUER, audience="verity",
                 subject="alice", claims={"groups": ["engineers"]})  # fmt: skip
    if mode == "reuseport":
        command = [sys.executable, __file__, "--child-reuseport", str(config), str(workers)]
    else:
        command = [sys.executable, "-m", "verity.cli.serve", "--config", str(config),
                   "--workers", str(workers)]  # fmt: skip
    log = (tmp / "serve.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)  # noqa: S603
    try:
        wait_up(port, process, workers)
        pids = [process.pid] if workers == 1 else children(process.pid)
        before = [ticks(pid) for pid in pids]
        wrk = subprocess.run(  # noqa: S603
            [WRK, "-t2", f"-c{args.connections}", f"-d{args.duration}s", "--latency",
             "-H", f"Host: {HOST}", "-H", "X-Original-URI: /docs",
             "-H", "X-Original-Method: GET", "-H", f"Authorization: Bearer {token}",
             f"http://127.0.0.1:{port}/verity/auth"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        used = [ticks(pid) - b for pid, b in zip(pids, before, strict=True)]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", wrk.stdout).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", wrk.stdout)
    total = sum(used) or 1
    return {
        "mode": mode,
        "workers": workers,
        "requests_per_second": rps,
        "p50_ms": latency_ms(wrk.stdout, "50"),
        "p99_ms": latency_ms(wrk.stdout, "99"),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "cpu_share_per_worker": sorted((round(u / total, 3) for u in used), reverse=True),
        "cpu_us_per_request": round(
            total * 1e6 / os.sysconf("SC_CLK_TCK") / (rps * args.duration), 1
        ),
    }


def main() -> None:  # pragma: no cover - benchmark
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child-reuseport", nargs=2, metavar=("CONFIG", "WORKERS"))
    parser.add_argument("--revision-only", action="store_true",
                        help="measure only the SQLite revocation watch's check")  # fmt: skip
    args = parser.parse_args()
    if args.child_reuseport:
        raise SystemExit(child_reuseport(args.child_reuseport[0], int(args.child_reuseport[1])))
    if args.revision_only:  # add the watch's cost to the existing results
        document = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        document["revision_watch"] = {
            "command": " ".join(["python", "benchmarks/workers.py", *sys.argv[1:]]),
            "revocations_stored": revision_cost(),
        }
        RESULTS.write_text(json.dumps(document, indent=2) + "\n")
        print(json.dumps(document["revision_watch"], indent=2))
        return
    setups = [("single", 1), ("shared", args.workers), ("reuseport", args.workers)]
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode, _ in setups}
    for _ in range(args.rounds):
        for mode, workers in setups:
            result = run_one(mode, workers, args)
            runs[mode].append(result)
            print(json.dumps(result))
    summary = {
        mode: {
            "workers": results[0]["workers"],
            "requests_per_second_median": statistics.median(
                r["requests_per_second"] for r in results
            ),
            "p50_ms_median": statistics.median(r["p50_ms"] for r in results),
            "p99_ms_median": statistics.median(r["p99_ms"] for r in results),
            "busiest_worker_cpu_share": [r["cpu_share_per_worker"][0] for r in results],
            "cpu_us_per_request_median": statistics.median(
                r["cpu_us_per_request"] for r in results
            ),
        }
        for mode, results in runs.items()
    }
    RESULTS.write_text(json.dumps({
        "command": " ".join(["python", "benchmarks/workers.py", *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "summary": summary, "runs": runs,
        "revision_watch": {"revocations_stored": revision_cost()},
    }, indent=2) + "\n")  # fmt: skip
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
