"""The gateway benchmark's helpers (benchmarks/gateway.py), without running the benchmark.

Nothing here times anything: the configurations it writes are the ones Verity and nginx
accept, its tokens are valid and distinct, its wrk script really rotates them (a real wrk
against a recording server, 1 s), wrk's output is read right, the revocation and target
verdicts follow their definitions, and its processes are stopped with their children.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from benchmarks import gateway as bench
from tests.conftest import debian_tool
from tests.gateway.servers import ThreadServer
from verity.cli import app as verity_cli
from verity.config import load_config
from verity.identity.config import IssuerConfig
from verity.identity.errors import BadSignatureError
from verity.identity.verifier import TokenVerifier

WRK_PACKAGE = "wrk=4.1.0-3*"  # Debian 12's, as installed for `make bench`

WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:40000/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    16.54ms   10.12ms 120.00ms   80.00%
    Req/Sec     0.98k   100.00     1.20k    70.00%
  Latency Distribution
     50%  870.00us
     75%   20.00ms
     90%   30.00ms
     99%    1.25s
  19530 requests in 10.01s, 21.70MB read
  Socket errors: connect 0, read 2, write 1, timeout 4
  Non-2xx or 3xx responses: 17
Requests/sec:   1951.23
Transfer/sec:      2.17MB
"""


def ports() -> dict[str, int]:
    names = ("upstream", "verity", "nginx", "static", "forward_auth")
    return {name: 40000 + index for index, name in enumerate(names)}


def test_parse_wrk_reads_rate_latencies_in_every_unit_and_errors() -> None:
    parsed = bench.parse_wrk(WRK_OUTPUT)
    assert parsed == {
        "rps": 1951.23,
        "p50_ms": 0.87,
        "p99_ms": 1250.0,
        "requests": 19530,
        "non_2xx": 17,
        "socket_errors": 7,
    }


def test_parse_wrk_without_errors_counts_zero() -> None:
    clean = WRK_OUTPUT.replace("  Socket errors: connect 0, read 2, write 1, timeout 4\n", "")
    clean = clean.replace("  Non-2xx or 3xx responses: 17\n", "")
    parsed = bench.parse_wrk(clean)
    assert (parsed["non_2xx"], parsed["socket_errors"]) == (0, 0)


@pytest.mark.parametrize(
    "text",
    ["", "unable to connect to 127.0.0.1:1 Connection refused", WRK_OUTPUT.replace("99%", "98%")],
)
def test_parse_wrk_refuses_output_without_a_result(text: str) -> None:
    with pytest.raises(RuntimeError):
        bench.parse_wrk(text)


def test_verity_accepts_the_benchmark_configuration(tmp_path: Path) -> None:
    verity_yaml, _, _ = bench.write_configs(
        tmp_path, ports(), redis_url="redis://127.0.0.1:40009/0"
    )
    config = load_config(verity_yaml)
    (route,) = config.gateway.routes
    assert (route.host, str(route.upstream).rstrip("/")) == (bench.HOST, "http://127.0.0.1:40000")
    assert config.store.redis_url == "redis://127.0.0.1:40009/0"
    assert config.server.port == 40001
    result = CliRunner().invoke(verity_cli, ["serve", "--config", str(verity_yaml), "--check"])
    assert result.exit_code == 0, result.output
    assert bench.HOST in result.output


def test_without_redis_the_store_is_sqlite_alone(tmp_path: Path) -> None:
    verity_yaml, _, _ = bench.write_configs(tmp_path, ports())
    config = load_config(verity_yaml)
    assert config.store.redis_url is None
    assert config.store.url == f"sqlite:///{tmp_path}/verity.db"  # the store_revoker's file


def test_gateway_workers_are_written_only_when_asked() -> None:
    assert "workers" not in bench.verity_config(ports(), None, None)
    assert "  workers: 4,\n" in bench.verity_config(ports(), None, 4)


def test_nginx_runs_the_shipped_forward_auth_site_on_benchmark_ports(tmp_path: Path) -> None:
    bench.write_configs(tmp_path, ports())
    site = (tmp_path / "site.conf").read_text()
    assert "listen 127.0.0.1:40004;" in site
    assert "server 127.0.0.1:40001;" in site  # Verity
    assert "server 127.0.0.1:40000;" in site  # the upstream
    assert "auth_request /_verity/auth;" in site
    assert (tmp_path / "static/1k.txt").read_bytes() == bench.BODY
    assert len(bench.BODY) == 1024
    if Path(bench.NGINX).exists():  # nginx's own check of the whole configuration
        done = subprocess.run(  # noqa: S603 - fixed binary, our arguments
            [bench.NGINX, "-t", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr


def test_minted_tokens_are_distinct_and_verified_by_the_configured_issuer(tmp_path: Path) -> None:
    verity_yaml, _, key = bench.write_configs(tmp_path, ports())
    tokens = bench.mint_tokens(key, 5)
    issuer: IssuerConfig = load_config(verity_yaml).identity.issuers[0]
    verifier = TokenVerifier(issuer)
    claims = [verifier.verify(token).claims for token in tokens]
    assert len(set(tokens)) == 5
    assert len({c["sub"] for c in claims}) == 5
    assert len({c["jti"] for c in claims}) == 5
    assert all(list(c["groups"]) == ["engineers"] for c in claims)


def test_a_token_from_another_key_is_not_accepted(tmp_path: Path) -> None:
    verity_yaml, _, _ = bench.write_configs(tmp_path, ports())
    (tmp_path / "other").mkdir()
    _, _, other_key = bench.write_configs(tmp_path / "other", ports())
    verifier = TokenVerifier(load_config(verity_yaml).identity.issuers[0])
    with pytest.raises(BadSignatureError):
        verifier.verify(bench.mint_tokens(other_key, 1)[0])


@pytest.mark.parametrize("token", ['a"b.c.d', "a.b\nHost: evil", "a.b.c d", ""])
def test_wrk_script_refuses_what_would_break_out_of_its_lua_string(token: str) -> None:
    with pytest.raises(ValueError, match="token"):
        bench.wrk_script(["good.token.x", token])


def test_wrk_script_refuses_a_bad_host() -> None:
    with pytest.raises(ValueError, match="host"):
        bench.wrk_script(["a.b.c"], host='x"\n')


class _Recorder:
    """An ASGI app answering 200 and keeping each request's Host and Authorization."""

    def __init__(self) -> None:
        self.seen: list[tuple[bytes, bytes]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = dict(scope["headers"])
        self.seen.append((headers.get(b"host", b""), headers.get(b"authorization", b"")))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="module")
def wrk() -> str:
    """wrk, installed from Debian's package when absent (as nginx for the e2e tests)."""
    return debian_tool(bench.WRK, WRK_PACKAGE)


def test_wrk_script_sends_every_token_with_the_host(tmp_path: Path, wrk: str) -> None:
    tokens = [f"head{i}.payload{i}.sig-{i}_x" for i in range(7)]
    script = tmp_path / "tokens.lua"
    script.write_text(bench.wrk_script(tokens))
    recorder = _Recorder()
    with ThreadServer(recorder) as server:
        subprocess.run(  # noqa: S603 - fixed binary, our arguments
            [wrk, "-t2", "-c4", "-d1s", "-s", str(script), server.url + "/"],
            capture_output=True,
            timeout=30,
            check=True,
        )
    assert len(recorder.seen) > 2 * len(tokens)
    assert {host for host, _ in recorder.seen} == {bench.HOST.encode()}
    assert {auth for _, auth in recorder.seen} == {f"Bearer {t}".encode() for t in tokens}


def test_run_wrk_with_fixed_headers_as_benchmarks_scale_uses_it(wrk: str) -> None:
    recorder = _Recorder()
    with ThreadServer(recorder) as server:
        result = bench.run_wrk(server.url + "/", {"Host": "h.test", "Authorization": "x"}, 1, 2)
    assert result["requests"] > 0
    assert result["non_2xx"] == 0
    assert set(recorder.seen) == {(b"h.test", b"x")}


def _samples(statuses: list[tuple[float, int]]) -> list[bench.Sample]:
    return [bench.Sample(sent, sent + 0.001, status) for sent, status in statuses]


def test_revocation_refused_on_the_next_request() -> None:
    samples = _samples([(0.0, 200), (0.5, 200), (1.0, 200), (1.2, 401), (1.3, 401)])
    summary = bench.revocation_summary(samples, started=0.9, returned=1.1)
    assert summary["allowed_before_revoke"] == 2
    assert summary["allowed_while_revoke_ran"] == 1
    assert summary["allowed_after_revoke_returned"] == 0
    assert summary["refused_on_next_request"] is True
    assert summary["first_refusal_after_revoke_returned_ms"] == pytest.approx(101.0)


def test_requests_allowed_after_the_revoke_returned_are_counted() -> None:
    samples = _samples([(0.0, 200), (1.2, 200), (1.4, 200), (1.6, 401), (1.7, 200)])
    summary = bench.revocation_summary(samples, started=1.0, returned=1.1)
    assert summary["allowed_after_revoke_returned"] == 2  # the one after the refusal is not
    assert summary["refused_on_next_request"] is False
    assert summary["first_refused_request_sent_after_return_ms"] == pytest.approx(500.0)


def test_a_refusal_before_the_revoke_returned_is_a_negative_time() -> None:
    samples = _samples([(0.0, 200), (1.0, 401), (2.5, 401)])
    summary = bench.revocation_summary(samples, started=0.5, returned=2.0)
    assert summary["first_refusal_after_revoke_returned_ms"] == pytest.approx(-999.0)
    assert summary["refused_on_next_request"] is True


def test_never_refused_is_not_met_and_other_statuses_are_reported() -> None:
    samples = _samples([(0.0, 200), (1.5, 200), (1.6, 0), (1.7, 502)])
    summary = bench.revocation_summary(samples, started=1.0, returned=1.1)
    assert summary["refused"] is False
    assert summary["refused_on_next_request"] is False
    assert summary["first_refusal_after_revoke_returned_ms"] is None
    assert summary["other_statuses"] == [0, 502]


def _run(rps: float, p50: float, verity_us: float = 0.0, machine: float = 1.0) -> dict[str, Any]:
    return {
        "rps": rps, "p50_ms": p50, "p99_ms": 2 * p50, "requests": int(rps), "non_2xx": 0,
        "machine_cores_busy": machine,
        "socket_errors": 0, "cpu_us_per_request": {"verity": verity_us, "verity_main_thread":
        verity_us, "nginx": 5.0, "upstream": 20.0, "wrk": 8.0},
    }  # fmt: skip


def _results(proxy_rps: float, auth_rps: float, auth_us: float, added_ms: float) -> dict[str, Any]:
    paths = bench.scenarios([1, 100])
    runs = {
        "direct": (10000.0, 0.1, 0.0),
        "nginx_static": (30000.0, 0.05, 0.0),
        "nginx_proxy_pass": (9000.0, 0.15, 0.0),
        "verity_proxy@1": (proxy_rps, 0.1 + added_ms, 300.0),
        "forward_auth@1": (auth_rps, 0.1 + added_ms, auth_us),
        "verity_proxy@100": (proxy_rps, 0.1 + added_ms, 300.0),
        "forward_auth@100": (auth_rps, 0.1 + added_ms, auth_us),
    }
    samples = {
        name: {"loaded": [_run(*runs[name])] * 3, "one_connection": [_run(*runs[name])]}
        for name in runs
    }
    return bench.summarize(paths, samples)


def _revocation(allowed: int) -> dict[str, Any]:
    summary = bench.revocation_summary(
        _samples([(0.0, 200), *[(1.2 + i / 10, 200) for i in range(allowed)], (2.0, 401)]),
        started=1.0,
        returned=1.1,
    )
    per_path = {"verity_proxy": summary, "forward_auth": summary}
    return {"delivery": "test", "cli": per_path, "store_call": per_path}


def test_summary_ratios_and_added_latency() -> None:
    results = _results(proxy_rps=3000.0, auth_rps=4000.0, auth_us=50.0, added_ms=0.5)
    assert results["forward_auth@100"]["ratio_to_direct"] == 0.4
    assert results["verity_proxy@100"]["ratio_to_nginx_static"] == 0.1
    assert results["forward_auth@100"]["one_connection"]["added_p50_ms_vs_direct"] == 0.5
    assert results["forward_auth@100"]["cores_busy"]["verity"] == 0.2
    assert results["direct"]["sessions"] is None
    assert "token_reuse_interval_s" not in results["direct"]
    assert results["verity_proxy@100"]["token_reuse_interval_s"] == pytest.approx(
        100 / 3000, abs=1e-4
    )
    assert results["forward_auth@100"]["sessions"] == 100


def test_every_target_met() -> None:
    results = _results(proxy_rps=3000.0, auth_rps=4000.0, auth_us=60.0, added_ms=1.0)
    rows = bench.targets(results, _revocation(allowed=0))
    assert len(rows) == 9
    assert all(row["met"] is True for row in rows), rows


def test_every_target_missed() -> None:
    results = _results(proxy_rps=2999.0, auth_rps=3999.0, auth_us=60.1, added_ms=1.01)
    rows = bench.targets(results, _revocation(allowed=3))
    assert [row["met"] for row in rows] == [False] * 9
    assert rows[-1]["measured"] == 3


def test_targets_without_100_sessions_are_not_measured() -> None:
    results = _results(proxy_rps=3000.0, auth_rps=4000.0, auth_us=50.0, added_ms=0.5)
    del results["verity_proxy@100"], results["forward_auth@100"]
    rows = bench.targets(results, _revocation(allowed=0))
    assert [row["met"] for row in rows[:5]] == [None] * 5


def test_limits_name_the_saturated_event_loop_and_the_revocation_delivery() -> None:
    results = _results(proxy_rps=1000.0, auth_rps=4000.0, auth_us=240.0, added_ms=0.5)
    text = bench.limits_text(results, _revocation(allowed=0), cpus=2)
    # 240 us x 4,000/s = 0.96 core in the event loop
    assert "forward_auth@100: 4,000 req/s (40.0% of direct)" in text
    assert "Verity's event loop is saturated (0.96 core" in text
    # 300 us x 1,000/s = 0.3 core; the chain: 0.30 + 0.01 + 0.02 + 0.01 of 2 cores
    assert "verity_proxy@100: 1,000 req/s (10.0% of direct)" in text
    assert (
        "no core is saturated (Verity's event loop 0.30, the chain 0.34, the machine 1.00" in text
    )
    assert "delivered by test" in text


def test_limits_report_the_sqlite_only_node() -> None:
    results = _results(proxy_rps=1000.0, auth_rps=4000.0, auth_us=240.0, added_ms=0.5)
    revocation = _revocation(allowed=0)
    polled = _revocation(allowed=4)
    revocation["sqlite_only_node"] = {
        "delivery": "poll",
        "cli": {"verity_proxy": polled["cli"]["verity_proxy"]},
        "store_call": {"verity_proxy": polled["store_call"]["verity_proxy"]},
    }
    text = bench.limits_text(results, revocation, cpus=2)
    assert (
        "SQLite alone (no Redis; the revocation reaches it by its 2 s poll): 4 request(s)" in text
    )
    assert all(row["met"] for row in bench.targets(results, revocation)[5:])  # not a target


def test_limits_blame_the_machine_when_other_work_fills_the_cores() -> None:
    results = _results(proxy_rps=1000.0, auth_rps=4000.0, auth_us=240.0, added_ms=0.5)
    results["verity_proxy@100"]["machine_cores_busy"] = 1.9
    text = bench.limits_text(results, _revocation(allowed=0), cpus=2)
    assert "the 2 cores are full (1.90 busy, 0.34 of them this benchmark's processes" in text


def test_machine_cores_busy_from_proc_stat_ticks() -> None:
    assert bench.machine_cores_busy((100, 1000), (400, 1400), cpus=2) == 1.5
    assert bench.machine_cores_busy((100, 1000), (100, 1000), cpus=2) == 0.0
    busy, total = bench.machine_ticks()
    assert 0 <= busy <= total


def test_quick_and_full_defaults() -> None:
    quick = bench.parse_args(["--quick"])
    full = bench.parse_args([])
    assert (quick.rounds, quick.duration, quick.sessions) == (1, 3, [1, 100])
    assert (full.rounds, full.duration, full.sessions) == (3, 10, [1, 100, 1000])
    assert quick.output.name == "gateway_quick.json"
    assert full.output.name == "gateway.json"
    assert bench.parse_args(["--sessions", "1000,1,1"]).sessions == [1, 1000]


def test_the_full_run_is_bounded() -> None:
    """The default run's wrk time (warm-up, rounds at 32 and at 1 connection) plus process
    start and the revocations stays well inside the 12 minutes allowed."""
    args = bench.parse_args([])
    paths = len(bench.scenarios(args.sessions))
    wrk_seconds = paths * (args.warmup + args.rounds * (args.duration + args.one_duration))
    revocations = 4 * (1 + bench.REVOCATION_TIMEOUT + 60)  # the worst case of each
    assert wrk_seconds + revocations + 60 < 12 * 60


@pytest.mark.parametrize("bad", [["--sessions", "0"], ["--rounds", "0"], ["--duration", "0"]])
def test_bad_knobs_are_refused(bad: list[str]) -> None:
    with pytest.raises(SystemExit):
        bench.parse_args(bad)


def test_process_tree_and_cpu_of_a_child_and_its_children(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    port = bench.free_port()
    server = [sys.executable, "-c", (
        "import socket, subprocess, sys, time\n"
        f"s = socket.socket(); s.bind(('127.0.0.1', {port})); s.listen()\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "end = time.process_time() + 0.2\n"
        "while time.process_time() < end: pass\n"
        "time.sleep(60)\n"
    )]  # fmt: skip
    with bench.process(server, log, port) as proc:
        deadline = time.monotonic() + 10
        while len(bench.process_tree(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        tree = bench.process_tree(proc.pid)
        assert tree[0] == proc.pid
        assert len(tree) == 2
        assert bench.cpu_seconds(bench.stat_files(tree)) >= 0.0
        assert bench.cpu_seconds(bench.stat_files(tree, main_thread=True)) >= 0.0
    deadline = time.monotonic() + 10
    while any(_running(pid) for pid in tree) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_running(pid) for pid in tree)  # the grandchild too: the whole group


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


def test_a_process_that_exits_at_start_is_reported_with_its_log(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "import sys; print('config is wrong'); sys.exit(3)"]
    with (
        pytest.raises(RuntimeError, match="config is wrong"),
        bench.process(command, tmp_path / "x.log", bench.free_port()),
    ):
        pass


def test_cpu_of_an_ended_process_counts_zero() -> None:
    assert bench.cpu_seconds([Path("/proc/999999999/stat")]) == 0.0


def test_verity_command_is_the_installed_cli() -> None:
    command = bench.verity_command()
    assert Path(command[0]).name in ("verity", Path(sys.executable).name)
    assert shutil.which(command[0]) or Path(command[0]).exists()
