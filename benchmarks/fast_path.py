"""What the HTTP layer costs per request: the fast path against uvicorn's ASGI cycle.

    python benchmarks/fast_path.py [--requests 10000] [--rounds 4]

The real gateway and the real httptools protocol of ``verity serve``
(``verity.gateway.http_limits``), driven in-process through an in-memory transport, with
the decision itself replaced by a fixed answer (``Gateway._answer`` returns the same
403 ``Response`` both paths would render), so that only the HTTP layer differs: parsing,
dispatch, the ASGI cycle and Starlette's response (``gateway.fast_path: false``) or the
``FastCycle`` (``true``). Each request is an nginx forward-auth check on one keep-alive
connection, answered before the next is fed. Reported: CPU µs per request of the event
loop thread (``time.thread_time``, median of interleaved rounds) and socket writes per
response. Not measured: the kernel's cost of each write (one per response instead of
two), the enforcement work, the audit writer thread. Results:
benchmarks/results/fast_path.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=4)
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
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
