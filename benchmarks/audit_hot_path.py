"""Per-request audit costs on the gateway's hot path (issue 12), one process, timeit.

    python benchmarks/audit_hot_path.py [--number 20000] [--repeat 5] [--commit 2000]
                                        [--output PATH]

Times, best of ``--repeat`` runs of ``--number`` calls each, in microseconds per call:

- ``event_uid``: one audit event id (``verity.ids.new_event_uid``);
- ``decision_event``: building a decision event (``verity.audit.decision_event``);
- ``encode``: its canonical bytes and index columns (``EncodedEvent.of``: what the
  producer hands to the writer);
- ``build_and_encode``: both, as ``GatewayObserver.audit_decision`` did per request;
- ``encode_decision``: the same bytes built directly (what it does from issue 12 on);
- ``observer_audit_decision``: ``GatewayObserver.audit_decision`` itself (build, encode,
  hand-over, metrics) over an audit log stub that acknowledges at once: the producer's
  CPU per audited decision, without the writer thread and the commit (a repeated allow
  that is awaited; ``..._early``: one acknowledged early through ``append_soon``);
- with ``--commit N``: ``repeated_allow_{awaited,early}_{wall,cpu}``: N repeated allows
  of one subject, one at a time, through ``audit_decision`` into a real ``AuditLog`` on
  SQLite (``synchronous=FULL``, a temporary directory) with
  ``allow_commit_window_seconds`` 0 (each waits for its commit, as before issue 12) and
  0.05 (answered at once, group-committed): wall time per request and process CPU per
  request (every thread, the writer's included).

Run it with ``PYTHONPATH=<an older checkout>/src`` to get the "before" figure of a
change on the same machine. Results (with ``--output``): a JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
import timeit
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from verity.audit import AuditLog, EncodedEvent, decision_event
from verity.audit.sqlite import SQLiteStore
from verity.model import (
    AccessRequest,
    Decision,
    Effect,
    HttpTarget,
    NetworkContext,
    Principal,
)
from verity.observability import GatewayObserver

try:
    from verity.audit.builders import encode_decision
    from verity.ids import new_event_uid
except ImportError:  # a checkout from before issue 12
    from verity.audit.builders import new_event_uid  # type: ignore[attr-defined,no-redef]

    encode_decision = None  # type: ignore[assignment]


def sample() -> tuple[AccessRequest, Decision]:
    """A typical allowed GET by a signed-in user."""
    principal = Principal(
        id="alice", email="alice@example.com", groups=frozenset({"eng"}), session_id="s-1"
    )
    http = HttpTarget.canonical(host="app.example.com", method="GET", path="/api/items/42")
    request = AccessRequest(
        principal=principal,
        time=1_700_000_000.0,
        http=http,
        network=NetworkContext(ip="10.0.0.7"),  # type: ignore[arg-type]
        trust_score=80,
    )
    return request, Decision(Effect.ALLOW, "eng-can-read", "d0123456789ab-000000001", "v1")


class InstantAudit:
    """An ``AuditLog`` stand-in: encodes the event and acknowledges it at once; with
    ``early``, repeated allows take ``append_soon`` (the group-committed path)."""

    def __init__(self, *, early: bool) -> None:
        self.early = early

    async def append_async(self, event: Any) -> None:
        _encoded(event)

    def append_soon(self, event: Any, *, within: float) -> bool:
        if self.early:
            _encoded(event)
        return self.early


def _encoded(event: Any) -> EncodedEvent:
    return event if isinstance(event, EncodedEvent) else EncodedEvent.of(event)


def time_observer(number: int, repeat: int, *, early: bool) -> float:
    """Microseconds per ``audit_decision`` call (best run) of one repeated allow."""
    request, decision = sample()
    observer = GatewayObserver(audit=InstantAudit(early=early))  # type: ignore[arg-type]

    async def run() -> float:
        await observer.audit_decision(request, decision, "app")  # the first allow
        best = float("inf")
        for _ in range(repeat):
            started = time.perf_counter()
            for _ in range(number):
                await observer.audit_decision(request, decision, "app")
            best = min(best, time.perf_counter() - started)
        return best

    return asyncio.run(run()) / number * 1e6


def time_commit(count: int, window: float) -> tuple[float, float]:
    """(wall µs, process CPU µs) per repeated allow into a real SQLite ``AuditLog``."""
    request, decision = sample()
    with tempfile.TemporaryDirectory() as folder:
        log = AuditLog(SQLiteStore(Path(folder) / "audit.db"))
        observer = GatewayObserver(audit=log, allow_commit_window_seconds=window)

        async def run() -> tuple[float, float]:
            await observer.audit_decision(request, decision, "app")  # the first allow
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(count):
                assert await observer.audit_decision(request, decision, "app")
            return time.perf_counter() - wall, time.process_time() - cpu

        try:
            wall, cpu = asyncio.run(run())
        finally:
            log.close()  # the early events are committed before the figures count them
    return wall / count * 1e6, cpu / count * 1e6


def measure(number: int, repeat: int) -> dict[str, float]:
    """Microseconds per call of each step (best run)."""
    request, decision = sample()
    event = decision_event(request, decision)
    steps = {
        "event_uid": new_event_uid,
        "decision_event": lambda: decision_event(request, decision),
        "encode": lambda: EncodedEvent.of(event),
        "build_and_encode": lambda: EncodedEvent.of(decision_event(request, decision)),
    }
    if encode_decision is not None:  # from issue 12 on: the gateway's direct encoder
        steps["encode_decision"] = lambda: encode_decision(request, decision)
    figures = {
        name: round(min(timeit.repeat(step, number=number, repeat=repeat)) / number * 1e6, 3)
        for name, step in steps.items()
    }
    figures["observer_audit_decision"] = round(time_observer(number, repeat, early=False), 3)
    if hasattr(AuditLog, "append_soon"):  # from issue 12 on
        early = time_observer(number, repeat, early=True)
        figures["observer_audit_decision_early"] = round(early, 3)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--number", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--commit", type=int, default=0, help="repeated allows into SQLite")
    args = parser.parse_args()
    figures = measure(args.number, args.repeat)
    if args.commit:
        for mode, window in (("awaited", 0.0), ("early", 0.05)):
            wall, cpu = time_commit(args.commit, window)
            figures[f"repeated_allow_{mode}_wall"] = round(wall, 3)
            figures[f"repeated_allow_{mode}_cpu"] = round(cpu, 3)
    for name, us in figures.items():
        print(f"{name:18} {us:8.3f} us")
    if args.output is not None:
        document: dict[str, Any] = {
            "benchmark": "audit_hot_path",
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "python": sys.version.split()[0],
            "machine": platform.machine(),
            "number": args.number,
            "repeat": args.repeat,
            "us_per_call": figures,
        }
        args.output.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
