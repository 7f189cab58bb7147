"""Cross-check every peer engine against the reference oracle, with a rough timing.

Run from the repository root::

    python -m benchmarks.peers.check_peers [--sizes 10x5 100x20] [--count 2000]

For each size (roles x resource types) it builds every peer
once (untimed; build seconds are shown), prepares
``--count`` generated requests (untimed), then calls ``decide`` once per request,
timing each call with ``time.perf_counter_ns``. It reports mismatches against
``scenario.reference_decide``, the allow ratio and the median microseconds per decision.
This is a quick informal measurement, not the benchmark itself. It also times cedarpy's
per-call re-parse mode (policy text instead of a ``PolicySet`` handle) on a small sample.

Exit status is 1 if any peer disagrees with the oracle on any request.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from benchmarks.peers.scenario import Size, generate_requests, reference_decide

# (display name, module, class)
PEERS: tuple[tuple[str, str, str], ...] = (
    ("rego-opa", "benchmarks.peers.rego_opa", "OpaPeer"),
    ("rego-regorus", "benchmarks.peers.rego_regorus", "RegorusPeer"),
    ("rego-opa-data", "benchmarks.peers.rego_opa_data", "OpaDataPeer"),
    ("rego-regorus-data", "benchmarks.peers.rego_regorus_data", "RegorusDataPeer"),
    ("cedar", "benchmarks.peers.cedar", "CedarPeer"),
    ("casbin", "benchmarks.peers.casbin_peer", "CasbinPeer"),
    ("casbin-fast", "benchmarks.peers.casbin_peer", "CasbinFastPeer"),
)
REPARSE_SAMPLE = {"10x5": 200, "100x20": 20}


class Peer(Protocol):
    def prepare(self, req: dict[str, Any]) -> Any: ...

    def decide(self, prepared: Any) -> bool: ...


def _load(module: str, cls: str) -> Callable[[Size], Peer] | str:
    try:
        peer_class: Callable[[Size], Peer] = getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        return f"unavailable ({exc})"
    return peer_class


def _time_decisions(
    decide: Callable[[Any], bool], prepared: Sequence[Any]
) -> tuple[list[bool], float]:
    decisions: list[bool] = []
    durations: list[int] = []
    for item in prepared:
        start = time.perf_counter_ns()
        decision = decide(item)
        durations.append(time.perf_counter_ns() - start)
        decisions.append(decision)
    return decisions, statistics.median(durations) / 1000


def check_size(size: Size, count: int, seed: int, only: set[str] | None) -> int:
    requests = generate_requests(size, count, seed)
    expected = [reference_decide(r, size) for r in requests]
    allow_ratio = sum(expected) / len(expected)
    print(f"\n{size}: {count} requests, reference allow ratio {allow_ratio:.3f}")
    print(f"  {'peer':<18}{'build s':>9}{'mismatch':>10}{'allow':>8}{'median us':>12}")
    total_mismatches = 0
    for name, module, cls in PEERS:
        if only is not None and name not in only:
            continue
        factory = _load(module, cls)
        if isinstance(factory, str):
            print(f"  {name:<18}{factory}")
            continue
        t0 = time.perf_counter()
        peer = factory(size)
        build_s = time.perf_counter() - t0
        prepared = [peer.prepare(r) for r in requests]
        decisions, median_us = _time_decisions(peer.decide, prepared)
        mismatches = [i for i, (d, e) in enumerate(zip(decisions, expected, strict=True)) if d != e]
        total_mismatches += len(mismatches)
        ratio = sum(decisions) / len(decisions)
        print(
            f"  {name:<18}{build_s:>9.2f}{len(mismatches):>10}{ratio:>8.3f}{median_us:>12.1f}",
            flush=True,
        )
        for i in mismatches[:3]:
            print(f"    mismatch: peer={decisions[i]} reference={expected[i]} {requests[i]}")
        reparse = getattr(peer, "decide_reparsing", None)
        if reparse is not None:
            sample = prepared[: REPARSE_SAMPLE.get(str(size), 10)]
            re_decisions, re_median = _time_decisions(reparse, sample)
            re_mismatches = sum(d != e for d, e in zip(re_decisions, expected, strict=False))
            total_mismatches += re_mismatches
            print(
                f"  {name + ' re-parse':<27}{re_mismatches:>10}{'':>8}{re_median:>12.1f}"
                f"   (policy text re-parsed per call, {len(sample)} requests)",
                flush=True,
            )
    return total_mismatches


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["10x5", "100x20"])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=20251124)
    parser.add_argument("--peers", nargs="+", help="subset of: " + " ".join(p[0] for p in PEERS))
    args = parser.parse_args(argv)
    only = set(args.peers) if args.peers else None
    sizes = [Size.parse(text) for text in args.sizes]
    mismatches = sum(check_size(size, args.count, args.seed, only) for size in sizes)
    print(f"\ntotal mismatches: {mismatches}")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
