"""Sliding-window counters in SQLite (one row per hit; atomic under the write lock)."""

from __future__ import annotations

from .._common import check_positive, check_text, current
from .db import SqliteDatabase


class SqliteCounters:
    """``CounterStore`` on a SQLite file."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    def hit(self, key: str, *, window: float, now: float | None = None) -> int:
        """Record a hit; returns the count in the window including it."""
        at = current(now)
        low = at - check_positive("window", window)
        check_text("counter key", key)
        with self._db.write() as conn:
            conn.execute("delete from verity_counter_hits where key = ? and at <= ?", (key, low))
            conn.execute("insert into verity_counter_hits (key, at) values (?, ?)", (key, at))
            row = conn.execute(  # later-stamped hits of other threads count too
                "select count(*) from verity_counter_hits where key = ? and at > ?", (key, low)
            ).fetchone()
        return int(row[0])

    def count(self, key: str, *, window: float, now: float | None = None) -> int:
        """The hits in the window ending at ``now``."""
        at = current(now)
        low = at - check_positive("window", window)
        row = self._db.query_one(
            "select count(*) from verity_counter_hits where key = ? and at > ? and at <= ?",
            (key, low, at),
        )
        return 0 if row is None else int(row[0])

    def reset(self, key: str) -> None:
        """Forget the key's hits."""
        with self._db.write() as conn:
            conn.execute("delete from verity_counter_hits where key = ?", (key,))

    def purge(self, *, before: float) -> int:
        """Delete every hit older than ``before`` (for keys that are never hit again)."""
        with self._db.write() as conn:
            sql = "delete from verity_counter_hits where at <= ?"
            return conn.execute(sql, (before,)).rowcount
