"""Gateway benchmark: the same small upstream app measured four ways, in one run, with wrk.

    python benchmarks/gateway.py [--duration 8] [--connections 32] [--rounds 2]
                                 [--client-requests 3000] [--no-clients]

(a) direct        wrk -> upstream
(b) nginx         wrk -> nginx proxy_pass -> upstream                (the native reference)
(c) verity        wrk -> Verity proxy (bearer token, warm cache) -> upstream
(d) nginx+verity  wrk -> nginx auth_request -> Verity forward-auth; nginx -> upstream
(e) granian       wrk -> the same upstream app under granian instead of uvicorn: the
                  server choice (server_overhead_difference_us beside Verity's own CPU)
(f) passthrough   wrk -> a bare Python proxy (uvicorn + aiohttp, no identity, policy,
                  assertion or audit) -> upstream: the floor for any Python proxy here

Every process listens on 127.0.0.1 with run-time ports; the upstream and Verity are
uvicorn (uvloop + httptools), one process each; nginx runs one worker. Scenarios are
interleaved over ``--rounds`` rounds after a warm-up, and the median of the rounds is
kept. Results: benchmarks/results/gateway.json (requests/s, p50/p99 latency, ratios).
For (c) and (d) it also records the Verity process's CPU time (user + system) per
request, which moves much less than throughput when other work shares the cores; the
1-minute load average before and after the run is recorded for the same reason. Before
the wrk runs, the two upstream HTTP clients (aiohttp, the one in use, and httpx/httpcore)
are timed side by side against the same upstream: client CPU per request.
Needs /usr/sbin/nginx and /usr/bin/wrk (Debian: apt-get install -y nginx wrk).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks/results/gateway.json"
HOST = "app.example.com"
ISSUER = "https://idp.bench.test"
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
    include {dir}/site.conf;
}}
"""


async def upstream_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The small upstream app: 200 with a short body."""
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"3")],
        }
    )
    await send({"type": "http.response.body", "body": b"ok\n"})


PASSTHROUGH_UPSTREAM = "VERITY_BENCH_UPSTREAM"
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "upgrade",
                         "proxy-connection", "trailer"})  # fmt: skip
_passthrough: dict[str, Any] = {}


async def passthrough_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The floor for any Python proxy: uvicorn in, aiohttp out (the client Verity uses),
    streaming, keep-alive, and nothing else: no identity, no policy, no assertion, no
    audit. What Verity costs beyond this is Verity's own work."""
    import aiohttp

    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        if "session" in _passthrough:
            await _passthrough["session"].close()
        await send({"type": "lifespan.shutdown.complete"})
        return
    if "session" not in _passthrough:
        connector = aiohttp.TCPConnector(limit=128)
        _passthrough["session"] = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
        )
    url = os.environ[PASSTHROUGH_UPSTREAM] + scope["raw_path"].decode("latin-1")
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]
               if k.decode("latin-1") not in _HOP_BY_HOP]  # fmt: skip
    async with _passthrough["session"].request(
        scope["method"],
        url,
        headers=headers,
        allow_redirects=False,
        skip_auto_headers=("User-Agent",),
    ) as response:
        await send({
            "type": "http.response.start", "status": response.status,
            "headers": [(k, v) for k, v in response.raw_headers
                        if k.decode("latin-1").lower() not in _HOP_BY_HOP],
        })  # fmt: skip
        async for chunk in response.content.iter_any():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


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
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


@contextmanager
def process(args: list[str], log: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)  # noqa: S603
    try:
        wait_for(port)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def write_configs(tmp: Path, ports: dict[str, int]) -> tuple[Path, Path, str]:
    from verity.identity.dev import generate_private_key, mint, public_jwk, write_private_key

    key = generate_private_key("ES256")
    (tmp / "policy.yaml").write_text(POLICY)
    (tmp / "idp.jwks").write_text(json.dumps({"keys": [public_jwk(key, "ES256", "b")]}))
    write_private_key(tmp / "assertion.pem", generate_private_key("ES256"))
    up, verity = ports["upstream"], ports["verity"]
    (tmp / "verity.yaml").write_text(
        f"server: {{host: 127.0.0.1, port: {verity}, trusted_proxies: [127.0.0.1/32],\n"
        "  trusted_hops: 1}\n"
        "policy: {path: policy.yaml, reload_seconds: 0}\n"
        f"identity: {{issuers: [{{issuer: '{ISSUER}', audiences: [verity],\n"
        "  algorithms: [ES256], jwks_file: idp.jwks}]}\n"
        f"gateway: {{public_url: 'http://127.0.0.1:{verity}',\n"
        "  assertion: {signing_key: assertion.pem},\n"
        f"  routes: [{{name: app, host: {HOST}, upstream: 'http://127.0.0.1:{up}'}}]}}\n"
    )
    site = (ROOT / "deploy/nginx/verity-forward-auth.conf").read_text()
    site = site.replace("127.0.0.1:8080", f"127.0.0.1:{verity}")
    site = site.replace("127.0.0.1:9000", f"127.0.0.1:{up}")
    site = site.replace("listen 8000;", f"listen 127.0.0.1:{ports['forward_auth']};")
    (tmp / "site.conf").write_text(site)
    user = "user root;" if os.geteuid() == 0 else ""
    conf = NGINX_MAIN.format(dir=tmp, user=user, up=up, plain=ports["nginx"])
    (tmp / "nginx.conf").write_text(conf)
    token = mint(
        key,
        alg="ES256",
        kid="b",
        issuer=ISSUER,
        audience="verity",
        subject="alice",
        ttl=3600,
        claims={"groups": ["engineers"]},
    )
    return tmp / "verity.yaml", tmp / "nginx.conf", token


async def _client_cpu(port: int, requests: int, rounds: int = 3) -> dict[str, float]:
    """CPU per request of the two upstream client stacks behind ``verity.gateway.pool``'s
    ``Upstream`` interface, side by side: sequential GETs on one kept-alive connection,
    headers shaped like a proxied request's (an ES256 assertion included)."""
    import httpx

    from verity.gateway.pool import HttpxUpstream, Upstream, UpstreamPool, UpstreamRequest

    headers = [
        (b"accept", b"*/*"), (b"user-agent", b"wrk"), (b"x-forwarded-for", b"127.0.0.1"),
        (b"x-forwarded-proto", b"http"), (b"x-forwarded-host", HOST.encode()),
        (b"x-verity-decision-id", b"d" * 27), (b"x-verity-user", b"alice"),
        (b"x-verity-groups", b"engineers"), (b"x-verity-assertion", b"e" * 480),
    ]  # fmt: skip
    request = UpstreamRequest("GET", "http", "127.0.0.1", port, "/", b"", headers, None, 5, 30)

    async def run(client: Upstream) -> float:
        for _ in range(100):
            await one(client)
        started = time.process_time()
        for _ in range(requests):
            await one(client)
        return 1e6 * (time.process_time() - started) / requests

    async def one(client: Upstream) -> None:
        response = await client.send(request)
        while not response.done():
            await response.read()
        await response.aclose()

    pool = UpstreamPool(max_connections=8, max_idle=8, keepalive_expiry=30)
    httpx_client = HttpxUpstream(httpx.AsyncHTTPTransport())
    runs: dict[str, list[float]] = {"aiohttp": [], "httpx_httpcore": []}
    for _ in range(rounds):
        runs["aiohttp"].append(await run(pool))
        runs["httpx_httpcore"].append(await run(httpx_client))
    await pool.aclose()
    await httpx_client.aclose()
    return {name: round(statistics.median(values), 1) for name, values in runs.items()}


def client_cpu(port: int, requests: int) -> dict[str, float]:
    """``_client_cpu`` on uvloop, the event loop ``verity serve`` runs."""
    import uvloop

    return uvloop.run(_client_cpu(port, requests))


# What limits the proxy, as profiled (py-spy 0.4, 500 Hz, on `verity serve` under wrk -c32;
# 2026-11-22, 2 shared cores, load average ~2-3 from other work). Update it with the code.
LIMITS = (
    "One Python process (one event loop) per server, on 2 cores shared with wrk, the "
    "upstream and nginx: the proxy's throughput is about 1 / (Verity CPU per request), "
    "0.54-0.72 ms here with the aiohttp upstream client (0.89-1.06 ms with httpx/httpcore "
    "in the same conditions). Where the event-loop thread's CPU goes: upstream HTTP client "
    "(aiohttp) 30%, of which the loopback send() system call 9%; uvicorn parsing and "
    "dispatch 13% and response writes 9%; building and handing over the audit event 14%; "
    "the ES256 assertion signature 8.5% (~25 us in OpenSSL, once per request because each "
    "assertion names its decision id and a fresh jti); token authentication from the "
    "cache 5%; header hygiene and inbound checks 4%; gateway and enforcement glue 10%; "
    "metrics 2%; the policy decision 0.4%. The audit writer thread adds ~14% of all "
    "samples (its SQLite commit). At one connection an allow waits for the audit log's "
    "durable commit (SQLite WAL, synchronous=FULL) before it is forwarded: ~0.6 ms of the "
    "added p50. 60% of direct throughput needs several gateway processes (nodes are "
    "stateless), not a faster single event loop."
)
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _latency(text: str, label: str) -> float:
    match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no {label}% latency in wrk output:\n{text}")
    return round(float(match[1]) * _UNITS[match[2]], 3)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(
    url: str, headers: dict[str, str], duration: int, connections: int, pid: int | None = None
) -> dict[str, float]:
    """One wrk run; with ``pid``, also that process's CPU time per request (in us)."""
    args = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{duration}s", "--latency"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    command = [*args, url]
    before = cpu_seconds(pid) if pid is not None else 0.0
    out = subprocess.run(command, capture_output=True, text=True, timeout=duration + 30, check=True)  # noqa: S603
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    total = re.search(r"(\d+) requests in", out.stdout)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out.stdout)
    if rps is None or total is None:
        raise RuntimeError(out.stdout + out.stderr)
    result = {
        "rps": float(rps[1]),
        "p50_ms": _latency(out.stdout, "50"),
        "p99_ms": _latency(out.stdout, "99"),
        "non_2xx": int(non2xx[1]) if non2xx else 0,
    }
    if pid is not None:
        spent = cpu_seconds(pid) - before
        result["verity_cpu_us_per_request"] = round(1e6 * spent / max(1, int(total[1])), 1)
    return result


def measure(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, float]]:
    names = ("upstream", "granian", "passthrough", "verity", "nginx", "forward_auth")
    ports = {name: free_port() for name in names}
    with tempfile.TemporaryDirectory(prefix="verity-bench-") as name:
        tmp = Path(name)
        verity_conf, nginx_conf, token = write_configs(tmp, ports)
        py = sys.executable
        auth = {"Host": HOST, "Authorization": f"Bearer {token}"}
        targets = {
            "direct": (f"http://127.0.0.1:{ports['upstream']}/", {"Host": HOST}),
            # the server choice: the same app under granian (Rust HTTP, ASGI), one worker
            "direct_granian": (f"http://127.0.0.1:{ports['granian']}/", {"Host": HOST}),
            "nginx_proxy_pass": (f"http://127.0.0.1:{ports['nginx']}/", {"Host": HOST}),
            # the floor for a Python proxy: uvicorn + aiohttp and nothing else
            "python_passthrough": (f"http://127.0.0.1:{ports['passthrough']}/", {"Host": HOST}),
            "verity_proxy": (f"http://127.0.0.1:{ports['verity']}/", auth),
            "nginx_verity_forward_auth": (f"http://127.0.0.1:{ports['forward_auth']}/", auth),
        }
        upstream = [
            py,
            "-m",
            "uvicorn",
            "benchmarks.gateway:upstream_app",
            "--port",
            str(ports["upstream"]),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        granian = [py, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1",
                   "--port", str(ports["granian"]), "--workers", "1", "--loop", "uvloop",
                   "--no-ws", "--log-level", "warning",
                   "benchmarks.gateway:upstream_app"]  # fmt: skip
        passthrough = [*upstream[:3], "benchmarks.gateway:passthrough_app", "--port",
                       str(ports["passthrough"]), *upstream[6:]]  # fmt: skip
        os.environ[PASSTHROUGH_UPSTREAM] = f"http://127.0.0.1:{ports['upstream']}"
        verity = [py, "-m", "verity.cli.serve", "--config", str(verity_conf)]
        nginx = ["/usr/sbin/nginx", "-c", str(nginx_conf), "-p", str(tmp), "-g", "daemon off;"]
        samples: dict[str, list[dict[str, float]]] = {key: [] for key in targets}
        with (
            process(upstream, tmp / "upstream.log", ports["upstream"]),
            process(granian, tmp / "granian.log", ports["granian"]),
            process(passthrough, tmp / "passthrough.log", ports["passthrough"]),
            process(verity, tmp / "verity.log", ports["verity"]) as gateway,
            process(nginx, tmp / "nginx.log", ports["forward_auth"]),
        ):
            clients = client_cpu(ports["upstream"], args.client_requests) if args.clients else {}
            pids = {key: gateway.pid if "verity" in key else None for key in targets}
            for url, headers in targets.values():  # warm-up: pools, token cache, JIT-free
                run_wrk(url, headers, 1, args.connections)
            for _ in range(args.rounds):
                for key, (url, headers) in targets.items():
                    run = run_wrk(url, headers, args.duration, args.connections, pids[key])
                    samples[key].append(run)
            light = {
                key: run_wrk(url, headers, 3, 1, pids[key])
                for key, (url, headers) in targets.items()
            }
    scenarios = {
        key: {**_median(runs), "one_connection": light[key]} for key, runs in samples.items()
    }
    return scenarios, clients


def _median(runs: list[dict[str, float]]) -> dict[str, Any]:
    return {field: round(statistics.median(run[field] for run in runs), 3) for field in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--client-requests", type=int, default=3000)
    parser.add_argument(
        "--no-clients", dest="clients", action="store_false", help="skip the client comparison"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    load_before = os.getloadavg()  # other work on the machine skews every figure: recorded
    results, clients = measure(args)
    load_after = os.getloadavg()
    direct, proxy = results["direct"], results["verity_proxy"]
    document = {
        "benchmark": "gateway",
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_1_5_15_min": {
                "before": [round(x, 2) for x in load_before],
                "after": [round(x, 2) for x in load_after],
            },
        },
        "method": (
            f"wrk -t2 -c{args.connections}, {args.duration}s per run, {args.rounds} "
            "interleaved rounds after a 1 s warm-up, median of rounds; all on 127.0.0.1 "
            "sharing the machine's cores with wrk"
        ),
        "scenarios": results,
        "upstream_client_cpu_us_per_request": clients,
        "limits": LIMITS,
        "ratios": {
            "verity_proxy_throughput_vs_direct": round(proxy["rps"] / direct["rps"], 3),
            "verity_proxy_added_p50_ms": round(proxy["p50_ms"] - direct["p50_ms"], 3),
            "verity_proxy_added_p50_ms_one_connection": round(
                proxy["one_connection"]["p50_ms"] - direct["one_connection"]["p50_ms"], 3
            ),
            "forward_auth_throughput_vs_nginx": round(
                results["nginx_verity_forward_auth"]["rps"] / results["nginx_proxy_pass"]["rps"], 3
            ),
            "python_passthrough_throughput_vs_direct": round(
                results["python_passthrough"]["rps"] / direct["rps"], 3
            ),
            "verity_proxy_throughput_vs_python_passthrough": round(
                proxy["rps"] / results["python_passthrough"]["rps"], 3
            ),
            # server overhead per request, uvicorn minus granian, next to Verity's own CPU
            "server_overhead_difference_us": round(
                1e6 / direct["rps"] - 1e6 / results["direct_granian"]["rps"], 1
            ),
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(document["scenarios"], indent=2))
    print(json.dumps(document["ratios"], indent=2))


if __name__ == "__main__":
    main()
