"""What the HTTP layer costs per request: the fast path against uvicorn's ASGI cycle.

    python benchmarks/fast_path.py [--requests 10000] [--rounds 4] [--serve [--duration 10]]

In-process (always): the real gateway and the real httptools protocol of ``verity serve``
(``verity.gateway.http_limits``), driven in-process through an in-memory transport, with
the decision itself replaced by a fixed answer (``Gateway._answer`` returns the same
403 ``Response`` both paths would render), so that only the HTTP layer differs: parsing,
dispatch, the ASGI cycle and Starlette's response (``gateway.fast_path: false``) or the
``FastCycle`` (``true``). Each request is an nginx forward-auth check on one keep-alive
connection, answered before the next is fed. Reported: CPU µs per request of the event
loop thread (``time.thread_time``, median of interleaved rounds) and socket writes per
response. Not measured: the kernel's cost of each write (one per response instead of
two), the enforcement work, the audit writer thread.

``--serve`` (A/B over real sockets, wrk needed): two ``verity serve`` processes of the
configuration of ``benchmarks/gateway.py`` (bearer token, SQLite audit, a uvicorn
upstream answering 1 KiB), one with ``gateway.fast_path: false``; ``wrk -t1 -c32`` for
``--duration`` seconds against each, a forward-auth check (nginx dialect) and a proxied
``GET``, interleaved for ``--rounds`` rounds; medians of requests/s, p50/p99 and the
Verity process's CPU µs per request from ``/proc/<pid>/stat`` (the whole process, and
the event-loop thread alone, without the audit writer thread).

Results: benchmarks/results/fast_path.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from verity.config import ServerConfig
from verity.gateway import GatewayConfig, build_gateway, responses
from verity.gateway.app import Gateway
from verity.gateway.http_limits import ConnectionLimits, http_protocol
from verity.identity import IdentityConfig
from verity.model import Decision, Effect, Reason
from verity.policy import compile_policy, load_policy

RESULTS = Path(__file__).parent / "results" / "fast_path.json"
CHECK = (
    b"GET /verity/auth HTTP/1.1\r\nHost: app.test\r\nX-Original-URI: /x?a=1\r\n"
    b"X-Original-Method: GET\r\nAuthorization: Bearer x.y.z\r\nAccept: */*\r\n"
    b"User-Agent: nginx\r\nX-Forwarded-For: 127.0.0.1\r\n\r\n"
)
DECISION = Decision(Effect.DENY, None, "d000000000000-000000001", "", (Reason("x", "no"),))


class Transport(asyncio.Transport):
    """An in-memory socket: counts writes and response bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if data:
            self.writes += 1

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5555), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def get_protocol(self) -> Any:
        return self.protocol

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def gateway(fast: bool) -> Gateway:
    route = {"name": "app", "host": "app.test", "upstream": "http://127.0.0.1:9"}
    config = GatewayConfig.model_validate({"routes": [route], "fast_path": fast})
    built = build_gateway(
        config, server=ServerConfig(trusted_proxies=["127.0.0.1/32"], trusted_hops=1),
        identity=IdentityConfig(), decider=compile_policy(load_policy("version: 1\nrules: []\n")),
        verifiers=[],
    )  # fmt: skip

    async def answer(*_: Any) -> Any:  # the decision's cost left out: the same on both paths
        return responses.denied(DECISION, html=False)

    built._answer = answer  # type: ignore[method-assign]
    return built


async def run(fast: bool, requests: int) -> tuple[float, float]:
    """(CPU µs per request of this thread, writes per response)."""
    app = gateway(fast)
    config = uvicorn.Config(
        app, lifespan="off", proxy_headers=False, access_log=False, log_config=None
    )
    config.load()
    cls = http_protocol(ConnectionLimits(), parser="httptools")
    protocol: Any = cls(config=config, server_state=ServerState(), app_state={})  # type: ignore[call-arg]
    transport = Transport()
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    done = asyncio.Event()
    complete = protocol.on_response_complete

    def answered() -> None:
        complete()
        done.set()

    protocol.on_response_complete = answered
    started = time.thread_time()
    for _ in range(requests):
        done.clear()
        protocol.data_received(CHECK)
        await done.wait()
    spent = time.thread_time() - started
    protocol.connection_lost(None)
    return 1e6 * spent / requests, transport.writes / requests


def _cpu(stat: str) -> float:
    fields = Path(stat).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wrk(url: str, headers: dict[str, str], pid: int, duration: int) -> dict[str, float]:
    from gateway import _latency

    args = ["wrk", "-t1", "-c32", f"-d{duration}s", "--latency"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    stats = (f"/proc/{pid}/stat", f"/proc/{pid}/task/{pid}/stat")
    before = [_cpu(stat) for stat in stats]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout  # noqa: S603
    after = [_cpu(stat) for stat in stats]
    total = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),  # type: ignore[index]
        "p50_ms": _latency(out, "50"),
        "p99_ms": _latency(out, "99"),
        "non_2xx": int(non2xx[1]) if non2xx else 0,
        "cpu_us_per_request": round(1e6 * (after[0] - before[0]) / total, 1),
        "loop_thread_cpu_us_per_request": round(1e6 * (after[1] - before[1]) / total, 1),
    }


def serve_ab(rounds: int, duration: int) -> dict[str, Any]:
    """wrk against two ``verity serve`` processes, fast path on and off (see above)."""
    import tempfile

    from gateway import HOST, free_port, process, write_configs

    with tempfile.TemporaryDirectory(prefix="verity-fast-path-") as name:
        tmp = Path(name)
        ports = {key: free_port() for key in ("upstream", "verity", "nginx", "forward_auth")}
        config, _, token = write_configs(tmp, ports)
        text = config.read_text()
        off_port = free_port()
        off = text.replace(f"port: {ports['verity']}", f"port: {off_port}")
        (tmp / "off.yaml").write_text(off.replace("gateway: {", "gateway: {fast_path: false, "))
        py = sys.executable
        auth = {"Host": HOST, "Authorization": f"Bearer {token}"}
        check = {**auth, "X-Original-URI": "/x?a=1", "X-Original-Method": "GET"}
        upstream = [py, "-m", "uvicorn", "benchmarks.gateway:upstream_app", "--port",
                    str(ports["upstream"]), "--loop", "uvloop", "--http", "httptools",
                    "--no-access-log", "--log-level", "warning"]  # fmt: skip
        serve = [py, "-m", "verity.cli.serve", "--config"]
        with (
            process(upstream, tmp / "upstream.log", ports["upstream"]),
            process([*serve, str(config)], tmp / "on.log", ports["verity"]) as on,
            process([*serve, str(tmp / "off.yaml")], tmp / "off.log", off_port) as off_proc,
        ):
            targets = {}
            for mode, port, pid in (
                ("on", ports["verity"], on.pid),
                ("off", off_port, off_proc.pid),
            ):
                base = f"http://127.0.0.1:{port}"
                targets[f"forward_auth/{mode}"] = (f"{base}/verity/auth", check, pid)
                targets[f"proxy/{mode}"] = (f"{base}/", auth, pid)
            for url, headers, pid in targets.values():  # warm-up: pools, token cache
                _wrk(url, headers, pid, 1)
            runs: dict[str, list[dict[str, float]]] = {key: [] for key in targets}
            for _ in range(rounds):
                for kind in ("forward_auth", "proxy"):
                    for mode in ("off", "on"):
                        url, headers, pid = targets[f"{kind}/{mode}"]
                        runs[f"{kind}/{mode}"].append(_wrk(url, headers, pid, duration))
    return {
        key: {field: statistics.median(run[field] for run in samples) for field in samples[0]}
        for key, samples in runs.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--serve", action="store_true", help="also wrk against verity serve")
    parser.add_argument("--duration", type=int, default=10)
    args = parser.parse_args()
    import uvloop

    samples: dict[str, list[float]] = {"asgi": [], "fast": []}
    writes: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, fast in (("asgi", False), ("fast", True)):
            cost, per_response = uvloop.run(run(fast, args.requests))
            samples[name].append(cost)
            writes[name] = per_response
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average": os.getloadavg(),
        },
        "requests_per_round": args.requests,
        "cpu_us_per_request": {k: round(statistics.median(v), 1) for k, v in samples.items()},
        "cpu_us_per_request_rounds": {k: [round(x, 1) for x in v] for k, v in samples.items()},
        "writes_per_response": writes,
        "limits": "in-process, in-memory transport, the decision replaced by a fixed 403: the "
        "HTTP layer alone (parse, dispatch, cycle, response); kernel write cost and "
        "enforcement not included",
    }
    result["saved_us_per_request"] = round(
        result["cpu_us_per_request"]["asgi"] - result["cpu_us_per_request"]["fast"], 1
    )
    if args.serve:
        result["serve"] = serve_ab(min(args.rounds, 2), args.duration)
        result["serve_load_average_after"] = os.getloadavg()
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
