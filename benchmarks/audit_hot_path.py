"""Per-request audit costs on the gateway's hot path (issue 12), one process, timeit.

    python benchmarks/audit_hot_path.py [--number 20000] [--repeat 5] [--output PATH]

Times, best of ``--repeat`` runs of ``--number`` calls each, in microseconds per call:

- ``event_uid``: one audit event id (``verity.ids.new_event_uid``);
- ``decision_event``: building a decision event (``verity.audit.decision_event``);
- ``encode``: its canonical bytes and index columns (``EncodedEvent.of``: what the
  producer hands to the writer);
- ``build_and_encode``: both, as ``GatewayObserver.audit_decision`` does per request.

Run it with ``PYTHONPATH=<an older checkout>/src`` to get the "before" figure of a
change on the same machine. Results (with ``--output``): a JSON document.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import timeit
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from verity.audit import EncodedEvent, decision_event
from verity.model import (
    AccessRequest,
    Decision,
    Effect,
    HttpTarget,
    NetworkContext,
    Principal,
)

try:
    from verity.ids import new_event_uid
except ImportError:  # a checkout from before issue 12
    from verity.audit.builders import new_event_uid  # type: ignore[attr-defined,no-redef]


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
    return {
        name: round(min(timeit.repeat(step, number=number, repeat=repeat)) / number * 1e6, 3)
        for name, step in steps.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--number", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    figures = measure(args.number, args.repeat)
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
