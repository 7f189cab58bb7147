"""Policy engine benchmark: Verity against Rego (OPA, regorus), Cedar and Casbin, with a
hand-written Python function as the floor, on one seeded request mix, in one run.

    python benchmarks/policy_engine.py [--sizes 10 1000 10000] [--count 2000]

The policy (benchmarks/peers/scenario.py) is the same zero-trust policy in every engine,
generated at N grant rules plus an owner rule and a sanctioned-region deny rule. Each
engine is built once and each request is converted to the engine's own input once (both
untimed); then every ``decide`` call is timed on its own with ``perf_counter_ns`` (the
timer's own cost, measured first, is subtracted). Engines are run in interleaved rounds
so that machine noise is shared, and each size runs in a fresh interpreter. Every
decision is checked against the reference oracle; slow engines at large N are checked
and timed on as many requests as the time budget allows (reported as ``checked``).
Results: benchmarks/results/policy_engine.json.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.peers.scenario import generate_requests, n_types_for, reference_decide  # noqa: E402

ENGINES: tuple[tuple[str, str, str, str | None], ...] = (
    # (name, module, class, PyPI distribution for the version line)
    ("verity", "benchmarks.peers.verity_peer", "VerityPeer", "verity"),
    ("handwritten", "benchmarks.peers.handwritten", "HandwrittenPeer", None),
    ("rego-regorus", "benchmarks.peers.rego_regorus", "RegorusPeer", "gordon-to-regorus"),
    ("rego-opa", "benchmarks.peers.rego_opa", "OpaPeer", "opa-golib-python-bindings"),
    ("cedar", "benchmarks.peers.cedar", "CedarPeer", "cedarpy"),
    ("casbin", "benchmarks.peers.casbin_peer", "CasbinPeer", "pycasbin"),
    ("casbin-fast", "benchmarks.peers.casbin_peer", "CasbinFastPeer", "pycasbin"),
)
PEERS = ("rego-regorus", "rego-opa", "cedar", "casbin", "casbin-fast")


@dataclass
class Run:
    name: str
    decide: Callable[[Any], bool]
    prepared: list[Any]
    build_s: float
    samples: list[int] = field(default_factory=list)
    checked: int = 0
    mismatches: int = 0

    def summary(self, overhead_ns: int) -> dict[str, Any]:
        if not self.samples:
            return {"build_s": round(self.build_s, 3), "samples": 0}
        us = sorted(max(0, s - overhead_ns) / 1000 for s in self.samples)
        mean = statistics.fmean(us)
        return {
            "build_s": round(self.build_s, 3),
            "median_us": round(statistics.median(us), 3),
            "p99_us": round(us[min(len(us) - 1, int(len(us) * 0.99))], 3),
            "mean_us": round(mean, 3),
            "decisions_per_s": round(1e6 / mean) if mean > 0 else None,
            "samples": len(us),
            "checked": self.checked,
            "mismatches": self.mismatches,
        }


def timer_overhead() -> int:
    probes = []
    for _ in range(20000):
        start = time.perf_counter_ns()
        probes.append(time.perf_counter_ns() - start)
    return int(statistics.median(probes))


def timed_pass(run: Run, expected: Sequence[bool] | None, budget_s: float) -> None:
    """Decide every prepared request (or until the budget is spent), timing each."""
    decide, samples, clock = run.decide, run.samples, time.perf_counter_ns
    deadline = clock() + int(budget_s * 1e9)
    for i, item in enumerate(run.prepared):
        start = clock()
        outcome = decide(item)
        samples.append(clock() - start)
        if expected is not None:
            run.checked += 1
            run.mismatches += outcome != expected[i]
        if samples[-1] and clock() > deadline:
            break


def build(
    name: str, module: str, cls: str, n_rules: int, requests: list[dict[str, Any]]
) -> Run | str:
    try:
        factory = getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        return f"not installed ({exc.name})"
    start = time.perf_counter()
    peer = factory(n_rules)
    build_s = time.perf_counter() - start
    decide = peer.decide
    if name == "verity+reasons":
        decide = _with_reasons(peer)
    return Run(name, decide, [peer.prepare(r) for r in requests], build_s)


def _with_reasons(peer: Any) -> Callable[[Any], bool]:
    engine = peer.engine

    def decide(request: Any) -> bool:
        decision = engine.decide(request)
        _ = decision.reason  # render the human sentence of a deny
        return bool(decision.allowed)

    return decide


def bench_size(
    n_rules: int, count: int, seed: int, rounds: int, budget_s: float, n_types: int | None
) -> dict[str, Any]:
    types = n_types if n_types is not None else n_types_for(n_rules)
    requests = generate_requests(types, count, seed)
    expected = [reference_decide(r, n_rules) for r in requests]
    runs: list[Run] = []
    skipped: dict[str, str] = {}
    engines = [*ENGINES, ("verity+reasons", "benchmarks.peers.verity_peer", "VerityPeer", None)]
    for name, module, cls, _ in engines:
        if n_types is not None and name not in ("verity", "handwritten"):
            continue
        built = build(name, module, cls, n_rules, requests)
        if isinstance(built, str):
            skipped[name] = built
            continue
        runs.append(built)
    gc.collect()
    for run in runs:  # first pass: warm-up, every decision checked against the oracle
        timed_pass(run, expected, budget_s)
        run.samples.clear()
    for r in range(rounds):  # measured passes, interleaved, order rotated each round
        order = runs[r % len(runs) :] + runs[: r % len(runs)]
        for run in order:
            timed_pass(run, None, budget_s / rounds)
    overhead = timer_overhead()
    return {
        "rules": n_rules,
        "resource_types": types,
        "requests": count,
        "allow_ratio": round(sum(expected) / len(expected), 3),
        "timer_overhead_ns": overhead,
        "engines": {run.name: run.summary(overhead) for run in runs},
        "skipped": skipped,
    }


def summarise(sizes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def median(size: str, engine: str) -> float | None:
        found = sizes.get(size, {}).get("engines", {}).get(engine, {})
        return found.get("median_us")

    for size in sizes:
        if not size.isdigit():
            continue
        v, h = median(size, "verity"), median(size, "handwritten")
        peers = {p: median(size, p) for p in PEERS if median(size, p)}
        entry: dict[str, Any] = {"verity_median_us": v}
        if peers and v:
            fastest = min(peers, key=lambda p: peers[p] or float("inf"))
            entry |= {
                "fastest_peer": fastest,
                "fastest_peer_median_us": peers[fastest],
                "fastest_peer_over_verity": round((peers[fastest] or 0) / v, 2),
            }
        if h and v:
            entry["verity_over_handwritten"] = round(v / h, 2)
        out[f"at_{size}"] = entry
    ratios = {
        engine: _ratio(median("10000", engine), median("10", engine))
        for engine in ("verity", "handwritten")
    }
    same_mix = {
        engine: _ratio(median("10000-control", engine), median("10", engine))
        for engine in ("verity", "handwritten")
    }
    # The issue asks for one seeded mix decided at every size: the control run decides the
    # very mix of N=10 (3 resource types) against the 10,000-rule policy. The main 10,000
    # run also spreads its mix over all 2,500 types, which costs every engine (the
    # hand-written floor included) memory locality; both are reported.
    out["10000_over_10_same_mix"] = same_mix
    out["10000_over_10_mix_spread_over_all_types"] = ratios
    at = out.get("at_1000", {})
    out["targets"] = {
        "fastest_peer_over_verity_at_1000 >= 3": at.get("fastest_peer_over_verity", 0) >= 3,
        "verity_over_handwritten_at_1000 <= 2.5": 0 < at.get("verity_over_handwritten", 99) <= 2.5,
        "verity_10000_over_10_same_mix <= 1.5": 0 < (same_mix["verity"] or 99) <= 1.5,
        "verity_10000_over_10_spread_mix <= 1.5": 0 < (ratios["verity"] or 99) <= 1.5,
    }
    return out


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return round(numerator / denominator, 3) if numerator and denominator else None


def versions() -> dict[str, str]:
    found = {}
    for _, _, _, dist in ENGINES:
        if dist:
            try:
                found[dist] = version(dist)
            except PackageNotFoundError:
                found[dist] = "not installed"
    return found


_COLUMNS = (("median us", 11), ("p99 us", 11), ("decisions/s", 13), ("checked", 9), ("mismatch", 9))


def print_table(result: dict[str, Any]) -> None:
    for key, size in result["sizes"].items():
        types, count = size["resource_types"], size["requests"]
        print(f"\nN={key} rules ({types} types, {count} requests, allow {size['allow_ratio']})")
        print(f"  {'engine':<16}" + "".join(f"{title:>{width}}" for title, width in _COLUMNS))
        for name, e in size["engines"].items():
            if not e.get("samples"):
                continue
            cells = (
                e["median_us"],
                e["p99_us"],
                e["decisions_per_s"],
                e["checked"],
                e["mismatches"],
            )
            row = "".join(
                f"{value:>{width}.2f}" if isinstance(value, float) else f"{value:>{width},}"
                for value, (_, width) in zip(cells, _COLUMNS, strict=True)
            )
            print(f"  {name:<16}{row}")
        for name, why in size["skipped"].items():
            print(f"  {name:<16}{why}")
    print("\nsummary:", json.dumps(result["summary"], indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 1000, 10000])
    parser.add_argument("--count", type=int, default=2000, help="requests in the mix")
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--budget", type=float, default=12.0, help="seconds per engine and size")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "policy_engine.json"
    )
    parser.add_argument(
        "--worker", nargs=2, type=int, metavar=("N", "TYPES"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.worker:
        n, types = args.worker
        result = bench_size(n, args.count, args.seed, args.rounds, args.budget, types or None)
        print(json.dumps(result))
        return 0
    sizes: dict[str, Any] = {}
    runs = [(str(n), n, 0) for n in args.sizes]
    if 10000 in args.sizes:
        runs.append(("10000-control", 10000, 3))  # same 3-type mix as at N=10
    for key, n, types in runs:
        print(f"N={key} ...", flush=True)
        sizes[key] = _in_fresh_process(args, n, types)
    result = {
        "benchmark": "policy_engine",
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": _cpus(),
        },
        "versions": versions(),
        "method": __doc__.strip().splitlines()[0] if __doc__ else "",
        "sizes": sizes,
    }
    result["summary"] = summarise(sizes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"\nwrote {args.out}")
    mismatched = any(e.get("mismatches") for s in sizes.values() for e in s["engines"].values())
    return 1 if mismatched else 0


def _in_fresh_process(args: argparse.Namespace, n_rules: int, types: int) -> dict[str, Any]:
    """Each size runs in its own interpreter, so no size inherits another's heap."""
    command = [
        sys.executable,
        __file__,
        "--worker",
        str(n_rules),
        str(types),
        "--count",
        str(args.count),
        "--seed",
        str(args.seed),
        "--rounds",
        str(args.rounds),
        "--budget",
        str(args.budget),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)  # noqa: S603
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    raise SystemExit(main())
