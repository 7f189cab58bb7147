"""Text helpers for the ``verity audit`` commands: time windows and one-line summaries."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

from .store import StoredRecord

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d|w)")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_since(untrusted: str, *, now: float | None = None) -> int:
    """``30s``, ``15m``, ``1h``, ``2d``, ``1w`` ago, or an ISO 8601 time -> UNIX ms.

    Raises ``ValueError`` naming the accepted forms."""
    text = untrusted.strip()
    match = _DURATION.fullmatch(text)
    if match:
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        return int(((time.time() if now is None else now) - seconds) * 1000)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{untrusted!r}: use 30s, 15m, 1h, 2d, 1w or an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def iso_ms(time_ms: int) -> str:
    """UNIX ms as ``2026-11-22T13:00:00.123Z``."""
    moment = datetime.fromtimestamp(time_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def printable(untrusted: str) -> str:
    """Text safe for a terminal: control characters (ANSI escapes, newlines) shown as
    escapes, so an attacker-chosen path or reason cannot forge or hide output lines."""
    if untrusted.isprintable():
        return untrusted
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in untrusted)


def summary(record: StoredRecord) -> tuple[str, str, str, str, str, str, str]:
    """``(time, seq, kind, outcome, who, decision id, message)`` of a record, for one line
    of output (every field made ``printable``; ``-`` when the event has none)."""
    event: dict[str, Any] = record.event()
    verity = event.get("unmapped", {}).get("verity", {})
    decision = verity.get("decision") or {}
    outcome = decision.get("effect") or str(event.get("status", "")).lower()
    user = event.get("user") or event.get("actor", {}).get("user") or {}
    who = user.get("email_addr") or user.get("uid") or "-"
    return (
        iso_ms(int(event.get("time", 0))),
        str(record.seq),
        printable(str(verity.get("kind", event.get("class_name", "?")))),
        printable(str(outcome)),
        printable(str(who)),
        printable(str(decision.get("decision_id") or "-")),
        printable(str(event.get("message", ""))),
    )
