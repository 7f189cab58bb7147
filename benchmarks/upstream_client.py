"""Upstream client benchmark: the lean client, aiohttp and httpx alone, same upstream.

    python benchmarks/upstream_client.py [--requests 1000] [--concurrency 16]
                                         [--rounds 3] [--quick]

Each client is driven through ``verity.gateway.pool.Upstream`` exactly as the proxy drives
it (``send``, ``read`` to the end, ``aclose``), with the headers of a proxied request (an
ES256 assertion's size included), on uvloop, against one uvicorn process (uvloop +
httptools, its own process) answering every request with 1 KiB:

- sequential: ``--requests`` requests one after another on one kept-alive connection;
- concurrent: the same number spread over ``--concurrency`` tasks (one connection each).

Per client and mode: the median latency of a request (µs, wall clock), the wall time
per request (µs, total over count: the inverse of throughput), and the CPU time of this
process (the client only; user + system) per request (µs). Clients run in interleaved
rounds (the order rotates every round) after a warm-up, and the median of the rounds is
kept. The whole run stays under 30 s: a round that would end past ``BUDGET`` seconds (if it
took as long as the last) is skipped; the rounds run are recorded. ``--quick`` is a
smoke run (300 requests, 2 rounds). Results: benchmarks/results/upstream_client.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks/results/upstream_client.json"
BUDGET = 28.0  # seconds: a round that would end later (as long as the last) is skipped
BODY = b"x" * 1024
HEADERS = [
    (b"accept", b"*/*"), (b"user-agent", b"wrk"), (b"x-forwarded-for", b"127.0.0.1"),
    (b"x-forwarded-proto", b"http"), (b"x-forwarded-host", b"app.example.com"),
    (b"x-verity-decision-id", b"d" * 27), (b"x-verity-user", b"alice"),
    (b"x-verity-groups", b"engineers"), (b"x-verity-assertion", b"e" * 480),
]  # fmt: skip


async def upstream_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The upstream: 200 with 1 KiB."""
    if scope["type"] != "http":
        return
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"1024")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def clients(concurrency: int) -> dict[str, Callable[[], Any]]:
    """A factory per client, each bounded like the proxy's pool."""
    import httpx

    from verity.gateway.pool import HttpxUpstream, UpstreamPool
    from verity.gateway.upstream_client import LeanUpstreamPool

    size = max(concurrency, 8)
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
    return {
        "lean": lambda: LeanUpstreamPool(max_connections=size, max_idle=size, keepalive_expiry=30),
        "aiohttp": lambda: UpstreamPool(max_connections=size, max_idle=size, keepalive_expiry=30),
        "httpx": lambda: HttpxUpstream(httpx.AsyncHTTPTransport(limits=limits)),
    }


async def measure(
    client: Any, port: int, requests: int, concurrency: int
) -> dict[str, dict[str, float]]:
    from verity.gateway.pool import UpstreamRequest

    request = UpstreamRequest("GET", "http", "127.0.0.1", port, "/", b"", HEADERS, None, 5, 30)
    latencies: list[float] = []

    async def one() -> None:
        started = time.perf_counter()
        response = await client.send(request)
        size = 0
        while not response.done():
            size += len(await response.read())
        await response.aclose()
        latencies.append(time.perf_counter() - started)
        if response.status != 200 or size != len(BODY):
            raise RuntimeError(f"unexpected answer {response.status}, {size} bytes")

    async def worker(count: int) -> None:
        for _ in range(count):
            await one()

    for _ in range(50):  # warm-up: connections open, caches filled
        await one()
    await asyncio.gather(*(worker(10) for _ in range(concurrency)))
    result = {}
    for mode, tasks in (("sequential", 1), ("concurrent", concurrency)):
        latencies.clear()
        wall, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker(requests // tasks) for _ in range(tasks)))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        done = len(latencies)
        result[mode] = {
            "median_latency_us": round(1e6 * statistics.median(latencies), 1),
            "wall_us_per_request": round(1e6 * wall / done, 1),
            "cpu_us_per_request": round(1e6 * cpu / done, 1),
        }
    return result


async def run(args: argparse.Namespace, port: int, started: float) -> dict[str, Any]:
    factories = clients(args.concurrency)
    names = list(factories)
    rounds: dict[str, list[dict[str, dict[str, float]]]] = {name: [] for name in names}
    ran, last = 0, 0.0
    for index in range(args.rounds):
        began = time.monotonic()
        if index and began - started + last > BUDGET:
            break
        order = names[index % len(names) :] + names[: index % len(names)]
        for name in order:
            client = factories[name]()
            try:
                rounds[name].append(await measure(client, port, args.requests, args.concurrency))
            finally:
                await client.aclose()
        ran += 1
        last = time.monotonic() - began
    summary: dict[str, Any] = {}
    for name, runs in rounds.items():
        summary[name] = {
            mode: {
                key: round(statistics.median(run[mode][key] for run in runs), 1)
                for key in runs[0][mode]
            }
            for mode in ("sequential", "concurrent")
        }
    return {"rounds_run": ran, "clients": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="300 requests, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.rounds = 300, 2
    import uvloop

    started = time.monotonic()
    port = free_port()
    load_before = os.getloadavg()
    upstream = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "uvicorn", "--app-dir", str(ROOT / "benchmarks"),
         "upstream_client:upstream_app", "--host", "127.0.0.1", "--port", str(port),
         "--loop", "uvloop", "--http", "httptools", "--log-level", "warning",
         "--no-access-log", "--lifespan", "off"],
        cwd=ROOT,
    )  # fmt: skip
    try:
        wait_for(port)
        results = uvloop.run(run(args, port, started))
    finally:
        upstream.terminate()
        upstream.wait(10)
    lean = results["clients"]["lean"]
    document = {
        "benchmark": "upstream_client",
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_1_5_15_min": {
                "before": [round(x, 2) for x in load_before],
                "after": [round(x, 2) for x in os.getloadavg()],
            },
        },
        "method": (
            f"{args.requests} GETs per mode (sequential on one connection; concurrent over "
            f"{args.concurrency} tasks), 1 KiB answers from one uvicorn process (uvloop, "
            "httptools) on 127.0.0.1, client on uvloop through verity.gateway.pool.Upstream "
            f"with proxied-request headers; {results['rounds_run']} interleaved rounds after "
            "a warm-up, median of rounds; CPU is this (client) process's user + system time"
        ),
        "clients": results["clients"],
        "ratios": {
            f"{other}_cpu_over_lean_{mode}": round(
                results["clients"][other][mode]["cpu_us_per_request"]
                / lean[mode]["cpu_us_per_request"],
                2,
            )
            for other in ("aiohttp", "httpx")
            for mode in ("sequential", "concurrent")
        },
        "seconds": round(time.monotonic() - started, 1),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps({k: document[k] for k in ("clients", "ratios", "seconds")}, indent=2))


if __name__ == "__main__":
    main()
