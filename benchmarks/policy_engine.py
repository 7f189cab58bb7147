"""Policy engine benchmark: Verity against Rego (OPA, regorus), Cedar and Casbin, with a
hand-written Python function as the floor, timed from the request as a plain dict to the
decision, for every engine alike.

    python benchmarks/policy_engine.py [--sizes 10x5 1000x50 10000x50] [--count 2000]
    python benchmarks/policy_engine.py --quick        # small sizes, few requests: a smoke run
    python benchmarks/policy_engine.py --engines verity-table rego-regorus-data --out /tmp/x.json

A size is roles x resource types (benchmarks/peers/scenario.py): about 70% of the roles
grant any given type, with per-role hour windows, MFA, a trusted device with disk
encryption and a minimum OS, allowed regions, corporate networks unless admin, an
owner-may-read rule and a sanctioned-region deny rule. Verity runs the policy written
three ways (a permission table; one rule per role; one rule per (role, type)). The peers:

- ``rego-regorus-data``, ``rego-opa-data``: the form Rego users write RBAC in, a handful
  of rules that look the role -> resource type -> actions table and the per-role
  conditions up in the data document (``peers/rego_data_policy.py``; the table is
  loaded with the engine's data API, not as Rego text);
- ``rego-regorus``, ``rego-opa``: the same conditions written as one rule body per
  granted (role, type) pair (``peers/rego_policy.py``, laid out for OPA's rule indexer);
- ``cedar``, ``casbin``, ``casbin-fast``: one policy/rule per (role, type), their
  natural form;
- ``handwritten``: a plain Python function over dicts, the floor.

Engines whose policy has more than --max-rules rule bodies (the per-pair forms) are
skipped (reported); ``--engines`` limits a run to the named engines.

Timing: every request is the neutral dict that JSON would give; each iteration times
``prepare(dict)`` (the engine's own input conversion: Verity's ``AccessRequest.from_dict``,
Cedar's entities and context JSON, Rego's input with ``time_ns``, ...) and ``decide`` as
two segments with ``perf_counter_ns`` (the timer's own cost is subtracted), and reports
their sum as the decision time. Engines run in interleaved rounds; each size runs in a
fresh interpreter. Every decision of the warm-up pass is checked against the reference
oracle; slow engines are checked and timed on as many requests as the time budget
allows (``checked``). Build time is the policy compile; memory is the growth of the
process's resident set while building (retained, after GC) and its peak.
Results: benchmarks/results/policy_engine.json (``--out`` elsewhere).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import platform
import resource
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

from benchmarks.peers.scenario import (  # noqa: E402
    Size,
    count_grants,
    generate_requests,
    reference_decide,
)

VERITY_FORMS = ("verity-table", "verity-role-rules", "verity-pair-rules")
ENGINES: tuple[tuple[str, str, str, str | None], ...] = (
    # (name, module, class, PyPI distribution for the version line)
    ("verity-table", "benchmarks.peers.verity_peer", "VerityTablePeer", "verity"),
    ("verity-role-rules", "benchmarks.peers.verity_peer", "VerityRoleRulesPeer", None),
    ("verity-pair-rules", "benchmarks.peers.verity_peer", "VerityPairRulesPeer", None),
    ("handwritten", "benchmarks.peers.handwritten", "HandwrittenPeer", None),
    ("rego-regorus", "benchmarks.peers.rego_regorus", "RegorusPeer", "gordon-to-regorus"),
    ("rego-opa", "benchmarks.peers.rego_opa", "OpaPeer", "opa-golib-python-bindings"),
    (
        "rego-regorus-data",
        "benchmarks.peers.rego_regorus_data",
        "RegorusDataPeer",
        "gordon-to-regorus",
    ),
    ("rego-opa-data", "benchmarks.peers.rego_opa_data", "OpaDataPeer", "opa-golib-python-bindings"),
    ("cedar", "benchmarks.peers.cedar", "CedarPeer", "cedarpy"),
    ("casbin", "benchmarks.peers.casbin_peer", "CasbinPeer", "pycasbin"),
    ("casbin-fast", "benchmarks.peers.casbin_peer", "CasbinFastPeer", "pycasbin"),
)
ENGINE_NAMES = tuple(name for name, *_ in ENGINES)
PEERS = (
    "rego-regorus-data",
    "rego-opa-data",
    "rego-regorus",
    "rego-opa",
    "cedar",
    "casbin",
    "casbin-fast",
)
# Engines whose grants are data (rows), not one rule body per (role, type): never skipped
# by --max-rules.
_NOT_PER_PAIR = {"verity-table", "handwritten", "rego-regorus-data", "rego-opa-data"}


@dataclass
class Run:
    name: str
    prepare: Callable[[Any], Any]
    decide: Callable[[Any], bool]
    build_s: float
    rss_mb: float
    rules: int
    prepare_ns: list[int] = field(default_factory=list)
    decide_ns: list[int] = field(default_factory=list)
    checked: int = 0
    mismatches: int = 0

    def summary(self, overhead_ns: int) -> dict[str, Any]:
        base = {"build_s": round(self.build_s, 3), "rss_mb": self.rss_mb, "rules": self.rules}
        if not self.decide_ns:
            return {**base, "samples": 0}
        prepare = [max(0, s - overhead_ns) / 1000 for s in self.prepare_ns]
        decide = [max(0, s - overhead_ns) / 1000 for s in self.decide_ns]
        total = sorted(p + d for p, d in zip(prepare, decide, strict=True))
        mean = statistics.fmean(total)
        return {
            **base,
            "median_us": round(statistics.median(total), 3),
            "p99_us": round(total[min(len(total) - 1, int(len(total) * 0.99))], 3),
            "mean_us": round(mean, 3),
            "request_median_us": round(statistics.median(prepare), 3),
            "decide_median_us": round(statistics.median(decide), 3),
            "decisions_per_s": round(1e6 / mean) if mean > 0 else None,
            "samples": len(total),
            "checked": self.checked,
            "mismatches": self.mismatches,
        }


def timer_overhead() -> int:
    probes = []
    for _ in range(20000):
        start = time.perf_counter_ns()
        probes.append(time.perf_counter_ns() - start)
    return int(statistics.median(probes))


def timed_pass(
    run: Run, requests: Sequence[dict[str, Any]], expected: Sequence[bool] | None, budget_s: float
) -> None:
    """From each request dict to its decision (or until the budget is spent), timing the
    engine's input conversion and its decision separately."""
    prepare, decide, clock = run.prepare, run.decide, time.perf_counter_ns
    prepare_ns, decide_ns = run.prepare_ns, run.decide_ns
    deadline = clock() + int(budget_s * 1e9)
    for i, item in enumerate(requests):
        start = clock()
        prepared = prepare(item)
        middle = clock()
        outcome = decide(prepared)
        end = clock()
        prepare_ns.append(middle - start)
        decide_ns.append(end - middle)
        if expected is not None:
            run.checked += 1
            run.mismatches += outcome != expected[i]
        if end > deadline:
            break


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _rules_of(name: str, size: Size, grants: int) -> int:
    if name == "verity-role-rules":
        from benchmarks.peers.verity_peer import rule_count

        return rule_count("role-rules", size)
    if name == "handwritten":
        return 0
    return grants + 2  # a rule (row) per granted pair, the owner rule, the deny rule


def build(name: str, module: str, cls: str, size: Size, rules: int) -> Run | str:
    try:
        factory = getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        return f"not installed ({exc.name})"
    gc.collect()
    before = _rss_mb()
    start = time.perf_counter()
    peer = factory(size)
    build_s = time.perf_counter() - start
    gc.collect()
    return Run(name, peer.prepare, peer.decide, build_s, round(_rss_mb() - before, 1), rules)


def bench_size(
    size: Size,
    count: int,
    seed: int,
    rounds: int,
    budget_s: float,
    max_rules: int,
    engines: Sequence[str] = ENGINE_NAMES,
) -> dict[str, Any]:
    requests = generate_requests(size, count, seed)
    expected = [reference_decide(r, size) for r in requests]
    grants = count_grants(size)
    runs: list[Run] = []
    skipped: dict[str, str] = {}
    for name, module, cls, _ in ENGINES:
        if name not in engines:
            continue
        rules = _rules_of(name, size, grants)
        if name not in _NOT_PER_PAIR and rules > max_rules:
            skipped[name] = f"{rules:,} rules > --max-rules {max_rules:,}"
            continue
        built = build(name, module, cls, size, rules)
        if isinstance(built, str):
            skipped[name] = built
            continue
        runs.append(built)
    gc.collect()
    for run in runs:  # first pass: warm-up, every decision checked against the oracle
        timed_pass(run, requests, expected, budget_s)
        run.prepare_ns.clear()
        run.decide_ns.clear()
    for r in range(rounds):  # measured passes, interleaved, order rotated each round
        order = runs[r % len(runs) :] + runs[: r % len(runs)]
        for run in order:
            timed_pass(run, requests, None, budget_s / rounds)
    overhead = timer_overhead()
    return {
        "size": str(size),
        "roles": size.roles,
        "resource_types": size.types,
        "granted_pairs": grants,
        "requests": count,
        "allow_ratio": round(sum(expected) / len(expected), 3),
        "timer_overhead_ns": overhead,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "engines": {run.name: run.summary(overhead) for run in runs},
        "skipped": skipped,
    }


def summarise(sizes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def median(size: str, engine: str) -> float | None:
        found = sizes.get(size, {}).get("engines", {}).get(engine, {})
        return found.get("median_us")

    for size in sizes:
        h = median(size, "handwritten")
        peers = {p: m for p in PEERS if (m := median(size, p))}
        entry: dict[str, Any] = {}
        for form in VERITY_FORMS:
            v = median(size, form)
            if v is None:
                continue
            item: dict[str, Any] = {"median_us": v}
            if peers:
                fastest = min(peers, key=lambda p: peers[p])
                item |= {
                    "fastest_peer": fastest,
                    "fastest_peer_over_verity": round(peers[fastest] / v, 2),
                }
            if h:
                item["verity_over_handwritten"] = round(v / h, 2)
            entry[form] = item
        out[f"at_{size}"] = entry
    growth = {
        engine: _ratio(median("10000x50", engine), median("10x5", engine))
        for engine in (*VERITY_FORMS, "handwritten")
    }
    out["10000x50_over_10x5"] = growth
    table = out.get("at_1000x50", {}).get("verity-table", {})
    out["targets"] = {
        "verity_table_median_at_1000x50 <= 6 us": 0 < table.get("median_us", 99) <= 6,
        "fastest_peer_over_verity_table_at_1000x50 >= 3": table.get("fastest_peer_over_verity", 0)
        >= 3,
        "verity_table_over_handwritten_at_1000x50 <= 2.5": 0
        < table.get("verity_over_handwritten", 99)
        <= 2.5,
        "verity_table_10000x50_over_10x5 <= 1.5": 0 < (growth["verity-table"] or 99) <= 1.5,
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


_COLUMNS = (
    ("median us", 11),
    ("p99 us", 10),
    ("request us", 11),
    ("decide us", 10),
    ("build s", 9),
    ("rss MB", 8),
    ("checked", 8),
    ("mismatch", 9),
)


def print_table(result: dict[str, Any]) -> None:
    for key, size in result["sizes"].items():
        print(
            f"\n{key} roles x types ({size['granted_pairs']:,} granted pairs, "
            f"{size['requests']} requests, allow {size['allow_ratio']}, "
            f"peak RSS {size['peak_rss_mb']} MB)"
        )
        print(f"  {'engine':<18}" + "".join(f"{title:>{width}}" for title, width in _COLUMNS))
        for name, e in size["engines"].items():
            if not e.get("samples"):
                continue
            cells = (
                e["median_us"],
                e["p99_us"],
                e["request_median_us"],
                e["decide_median_us"],
                e["build_s"],
                float(e["rss_mb"]),
                e["checked"],
                e["mismatches"],
            )
            row = "".join(
                f"{value:>{width}.2f}" if isinstance(value, float) else f"{value:>{width},}"
                for value, (_, width) in zip(cells, _COLUMNS, strict=True)
            )
            print(f"  {name:<18}{row}")
        for name, why in size["skipped"].items():
            print(f"  {name:<18}skipped: {why}")
    print("\nsummary:", json.dumps(result["summary"], indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", nargs="+", default=["10x5", "1000x50", "10000x50"])
    parser.add_argument("--count", type=int, default=2000, help="requests in the mix")
    parser.add_argument("--seed", type=int, default=20261207)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--budget", type=float, default=12.0, help="seconds per engine and size")
    parser.add_argument(
        "--max-rules",
        type=int,
        default=40_000,
        help="skip engines whose policy has more rules (one per role and type)",
    )
    parser.add_argument(
        "--engines",
        nargs="+",
        choices=ENGINE_NAMES,
        default=list(ENGINE_NAMES),
        metavar="ENGINE",
        help=f"run only these engines (default: all of {', '.join(ENGINE_NAMES)})",
    )
    parser.add_argument(
        "--quick", action="store_true", help="sizes 10x5 and 100x20, 300 requests, 2 rounds"
    )
    parser.add_argument(
        "--out",
        "--output",
        dest="out",
        type=Path,
        default=ROOT / "benchmarks" / "results" / "policy_engine.json",
    )
    parser.add_argument("--worker", metavar="SIZE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.count, args.rounds, args.budget = ["10x5", "100x20"], 300, 2, 2.0
    if args.worker:
        size = Size.parse(args.worker)
        result = bench_size(
            size, args.count, args.seed, args.rounds, args.budget, args.max_rules, args.engines
        )
        print(json.dumps(result))
        return 0
    sizes: dict[str, Any] = {}
    for text in args.sizes:
        key = str(Size.parse(text))
        print(f"{key} ...", flush=True)
        sizes[key] = _in_fresh_process(args, key)
    result = {
        "benchmark": "policy_engine",
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": _cpus(),
            "load_average": os.getloadavg(),
        },
        "versions": versions(),
        "method": __doc__.strip().splitlines()[0] if __doc__ else "",
        "arguments": {k: v for k, v in vars(args).items() if k not in ("out", "worker", "quick")},
        "sizes": sizes,
    }
    result["summary"] = summarise(sizes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"\nwrote {args.out}")
    mismatched = any(e.get("mismatches") for s in sizes.values() for e in s["engines"].values())
    return 1 if mismatched else 0


def _in_fresh_process(args: argparse.Namespace, size: str) -> dict[str, Any]:
    """Each size runs in its own interpreter, so no size inherits another's heap."""
    command = [
        sys.executable,
        __file__,
        "--worker",
        size,
        "--count",
        str(args.count),
        "--seed",
        str(args.seed),
        "--rounds",
        str(args.rounds),
        "--budget",
        str(args.budget),
        "--max-rules",
        str(args.max_rules),
        "--engines",
        *args.engines,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)  # noqa: S603
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _cpus() -> int:
    return os.cpu_count() or 0


if __name__ == "__main__":
    raise SystemExit(main())
