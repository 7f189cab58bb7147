"""Audit log benchmark: durable appends per second with group commit, and verification
speed, on SQLite and PostgreSQL, in one run.

    python benchmarks/audit.py [--backends sqlite sqlite-normal postgres] [--threads 8 64]
                               [--async-inflight 256] [--events 30000] [--repeat 3]
                               [--verify-events 1000000] [--quick]

Appends: a fresh log per run; N producer threads each call ``AuditLog.append`` (which
returns only once its batch is committed: SQLite WAL + synchronous=FULL, PostgreSQL
synchronous_commit=on) on pre-built decision events (encoding is timed, building is
not); or one asyncio loop keeps K ``append_async`` calls in flight. Each configuration
runs ``--repeat`` times, interleaved, and the median is reported with per-append
latency percentiles. Verify: the log is filled with ``--verify-events`` events in bulk
(10,000 per transaction, a checkpoint each), then ``verify`` is timed over all of it.
Results: benchmarks/results/audit.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from verity.audit import (
    AuditEvent,
    AuditLog,
    AuditStore,
    CheckpointSigner,
    EncodedEvent,
    decision_event,
    generate_key,
    verify,
)
from verity.audit.postgres import PostgresStore
from verity.audit.sqlite import SQLiteStore
from verity.audit.writer import WriterStats
from verity.model import (
    AccessRequest,
    Decision,
    Device,
    Effect,
    HttpTarget,
    NetworkContext,
    Principal,
    Reason,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "audit.json"
POSTGRES_DSN = os.environ.get("VERITY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
TARGET_APPENDS = 20_000
TARGET_VERIFY_SECONDS = 10.0


class Backends:
    """Fresh, isolated stores: SQLite files in a temp dir, PostgreSQL schemas."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.schemas: list[str] = []

    def new(self, backend: str) -> Callable[[], AuditStore]:
        if backend.startswith("sqlite"):
            path = self.workdir / f"audit-{secrets.token_hex(4)}.db"
            sync: Literal["full", "normal"] = "normal" if backend == "sqlite-normal" else "full"
            return lambda: SQLiteStore(path, synchronous=sync)
        import psycopg

        schema = f"bench_audit_{secrets.token_hex(4)}"
        with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
            conn.execute(f'create schema "{schema}"')
        self.schemas.append(schema)
        return lambda: PostgresStore(POSTGRES_DSN, schema=schema)

    def cleanup(self) -> None:
        if self.schemas:
            import psycopg

            with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
                for schema in self.schemas:
                    conn.execute(f'drop schema if exists "{schema}" cascade')
        shutil.rmtree(self.workdir, ignore_errors=True)


def sample_events(count: int) -> list[AuditEvent]:
    """Realistic decision events (a third denied, with a reason and device posture)."""
    reason = Reason(
        "device.disk_encrypted", "Your device's disk is not encrypted", "docs", "Turn on FileVault"
    )
    events = []
    for n in range(count):
        request = AccessRequest(
            principal=Principal(
                id=f"user{n % 50}", email=f"user{n % 50}@example.com", session_id=f"s{n}"
            ),
            time=time.time(),
            http=HttpTarget(host="wiki.internal", method="GET", path=f"/docs/page-{n}"),
            device=Device(id=f"dev{n % 50}", managed=True, disk_encrypted=n % 3 != 0),
            network=NetworkContext(ip=f"10.0.{n % 250}.{n % 200 + 1}", region="DE"),
            trust_score=80,
        )
        deny = n % 3 == 0
        decision = Decision(
            Effect.DENY if deny else Effect.ALLOW,
            "docs",
            f"dbench-{n:09x}",
            "c0418c" * 10 + "abcd",
            (reason,) if deny else (),
        )
        events.append(decision_event(request, decision))
    return events


def fsync_median_us(directory: Path, rounds: int = 200) -> float:
    """Median time of one 4 KiB write + fsync here: the floor of a durable commit."""
    path = directory / "fsync.probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        os.write(fd, b"x" * 4096)
        os.fsync(fd)
        samples.append(time.perf_counter() - started)
    os.close(fd)
    path.unlink()
    return round(statistics.median(samples) * 1e6, 1)


def _percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)

    def pick(quantile: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(quantile * len(ordered)))] * 1000, 3)

    return {"p50_ms": pick(0.50), "p99_ms": pick(0.99)}


def run_threads(
    opener: Callable[[], AuditStore], signer: CheckpointSigner, threads: int, total: int
) -> dict[str, Any]:
    events = sample_events(1000)
    per_thread = total // threads
    latencies: list[list[float]] = [[] for _ in range(threads)]
    log = AuditLog(opener(), signer=signer)

    def produce(worker: int) -> None:
        mine, clock = latencies[worker], time.perf_counter
        for n in range(per_thread):
            started = clock()
            log.append(events[(worker * per_thread + n) % 1000])
            mine.append(clock() - started)

    workers = [threading.Thread(target=produce, args=(i,)) for i in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - started
    stats = log.stats
    log.close()
    return _result(per_thread * threads, seconds, stats, [x for xs in latencies for x in xs])


def run_async(
    opener: Callable[[], AuditStore], signer: CheckpointSigner, inflight: int, total: int
) -> dict[str, Any]:
    events = sample_events(1000)
    latencies: list[float] = []
    log = AuditLog(opener(), signer=signer)

    async def produce(worker: int) -> None:
        for n in range(worker, total, inflight):
            started = time.perf_counter()
            await log.append_async(events[n % 1000])
            latencies.append(time.perf_counter() - started)

    async def main() -> float:
        started = time.perf_counter()
        await asyncio.gather(*(produce(i) for i in range(inflight)))
        return time.perf_counter() - started

    seconds = asyncio.run(main())
    stats = log.stats
    log.close()
    return _result(total, seconds, stats, latencies)


def _result(
    events: int, seconds: float, stats: WriterStats, latencies: list[float]
) -> dict[str, Any]:
    return {
        "events": events,
        "seconds": round(seconds, 3),
        "events_per_s": round(events / seconds),
        "avg_batch": round(stats.events / max(1, stats.batches), 1),
        **_percentiles(latencies),
    }


def bench_appends(
    args: argparse.Namespace, backends: Backends, signer: CheckpointSigner
) -> list[dict[str, Any]]:
    configs = [(b, "threads", n) for b in args.backends for n in args.threads]
    configs += [(b, "async", n) for b in args.backends for n in args.async_inflight]
    runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {c: [] for c in configs}
    for _ in range(args.repeat):  # interleaved rounds share the machine's noise
        for config in configs:
            backend, mode, n = config
            runner = run_threads if mode == "threads" else run_async
            runs[config].append(runner(backends.new(backend), signer, n, args.events))
    rows = []
    for (backend, mode, n), results in runs.items():
        best = sorted(results, key=lambda r: r["events_per_s"])[len(results) // 2]
        rows.append(
            {
                "backend": backend,
                "producers": f"{n} threads" if mode == "threads" else f"asyncio, {n} in flight",
                "median_events_per_s": best["events_per_s"],
                "runs_events_per_s": [r["events_per_s"] for r in results],
                **{k: best[k] for k in ("avg_batch", "p50_ms", "p99_ms")},
            }
        )
    return rows


def bench_verify(
    args: argparse.Namespace, backends: Backends, signer: CheckpointSigner
) -> list[dict[str, Any]]:
    encoded = [EncodedEvent.of(e) for e in sample_events(1000)]
    rows = []
    for backend in [b for b in args.backends if b != "sqlite-normal"]:
        store = backends.new(backend)()
        started = time.perf_counter()
        for first in range(0, args.verify_events, 10_000):
            chunk = [
                encoded[n % 1000] for n in range(first, min(first + 10_000, args.verify_events))
            ]
            store.append_batch(chunk, sign=signer.sign)
        fill = time.perf_counter() - started
        report = verify(store, signer.public_key)
        store.close()
        if not report.ok or report.records != args.verify_events:
            raise SystemExit(f"verify failed on {backend}: {report}")
        rows.append(
            {
                "backend": backend,
                "events": report.records,
                "checkpoints": report.checkpoints,
                "verify_seconds": round(report.seconds, 3),
                "verify_events_per_s": round(report.records / report.seconds),
                "bulk_fill_events_per_s": round(args.verify_events / fill),
            }
        )
    return rows


def print_table(appends: list[dict[str, Any]], verifies: list[dict[str, Any]]) -> None:
    head = ("backend", "producers", "events/s", "runs", "batch", "p50 ms", "p99 ms")
    print("\n{:14} {:24} {:>10} {:>26} {:>7} {:>8} {:>8}".format(*head))
    for row in appends:
        runs = ",".join(str(r) for r in row["runs_events_per_s"])
        print(
            f"{row['backend']:14} {row['producers']:24} {row['median_events_per_s']:>10,} "
            f"{runs:>26} {row['avg_batch']:>7} {row['p50_ms']:>8} {row['p99_ms']:>8}"
        )
    head = ("backend", "events", "verify s", "verify events/s", "bulk fill/s")
    print("\n{:14} {:>10} {:>9} {:>16} {:>12}".format(*head))
    for row in verifies:
        print(
            f"{row['backend']:14} {row['events']:>10,} {row['verify_seconds']:>9} "
            f"{row['verify_events_per_s']:>16,} {row['bulk_fill_events_per_s']:>12,}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--backends",
        nargs="+",
        default=["sqlite", "sqlite-normal", "postgres"],
        choices=["sqlite", "sqlite-normal", "postgres"],
        help="sqlite-normal: synchronous=NORMAL (survives kill -9, not power loss); appends only",
    )
    parser.add_argument("--threads", nargs="+", type=int, default=[8, 64])
    parser.add_argument("--async-inflight", nargs="+", type=int, default=[256])
    parser.add_argument("--events", type=int, default=30_000, help="appends per run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--verify-events", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.events, args.repeat, args.verify_events = 4_000, 1, 50_000
    workdir = Path(tempfile.mkdtemp(prefix="verity-audit-bench-"))
    key = workdir / "audit.key"
    generate_key(key)
    signer = CheckpointSigner.from_file(key)
    backends = Backends(workdir)
    fsync_us = fsync_median_us(workdir)
    print(f"4 KiB write+fsync median: {fsync_us} us (N synchronous producers can at most")
    print(f"reach N / commit latency durable events/s, e.g. 8 / {fsync_us} us)")
    try:
        appends = bench_appends(args, backends, signer)
        verifies = bench_verify(args, backends, signer)
    finally:
        backends.cleanup()
    print_table(appends, verifies)
    document = results_document(args, fsync_us, appends, verifies)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"\nresults: {args.output}")


def results_document(
    args: argparse.Namespace,
    fsync_us: float,
    appends: list[dict[str, Any]],
    verifies: list[dict[str, Any]],
) -> dict[str, Any]:
    """The JSON written to benchmarks/results/audit.json."""
    sqlite = [r["median_events_per_s"] for r in appends if r["backend"] == "sqlite"]
    sqlite_verify = next((r for r in verifies if r["backend"] == "sqlite"), None)
    per_million = None
    if sqlite_verify is not None:
        per_million = round(sqlite_verify["verify_seconds"] * 1e6 / sqlite_verify["events"], 2)
    return {
        "benchmark": "audit",
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "fsync_4k_median_us": fsync_us,
        },
        "method": " ".join((__doc__ or "").split("Results:")[0].split()),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "appends": appends,
        "verify": verifies,
        "targets": {
            "sqlite_durable_appends_per_s": TARGET_APPENDS,
            "sqlite_best_median_appends_per_s": max(sqlite, default=0),
            "verify_1m_seconds": TARGET_VERIFY_SECONDS,
            "sqlite_verify_seconds_per_1m": per_million,
        },
    }


if __name__ == "__main__":
    main()
