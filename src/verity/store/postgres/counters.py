"""Sliding-window counters in PostgreSQL: one row per hit, serialized per key.

``hit`` takes a transaction-scoped advisory lock on the key, so concurrent hits on one
key (from any node) are counted one after the other and each sees a distinct count.
"""

from __future__ import annotations

from psycopg import sql

from .._common import check_positive, check_text, current
from .db import COUNTERS_LOCK, PostgresDatabase

_LOCK = sql.SQL("select pg_advisory_xact_lock({}, hashtext(%s))").format(COUNTERS_LOCK)
_COUNT_ALL = "select count(*) from verity_counter_hits where key = %s and at > %s"
_COUNT = "select count(*) from verity_counter_hits where key = %s and at > %s and at <= %s"


class PostgresCounters:
    """``CounterStore`` on PostgreSQL."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    def hit(self, key: str, *, window: float, now: float | None = None) -> int:
        """Record a hit; returns the count in the window including it."""
        at = current(now)
        low = at - check_positive("window", window)
        check_text("counter key", key)
        with self._db.transaction() as conn:
            conn.execute(_LOCK, (key,))
            conn.execute("delete from verity_counter_hits where key = %s and at <= %s", (key, low))
            conn.execute("insert into verity_counter_hits (key, at) values (%s, %s)", (key, at))
            row = conn.execute(_COUNT_ALL, (key, low)).fetchone()
        return 0 if row is None else int(row[0])

    def count(self, key: str, *, window: float, now: float | None = None) -> int:
        """The hits in the window ending at ``now``."""
        at = current(now)
        low = at - check_positive("window", window)
        with self._db.connection() as conn:
            row = conn.execute(_COUNT, (key, low, at)).fetchone()
        return 0 if row is None else int(row[0])

    def reset(self, key: str) -> None:
        """Forget the key's hits."""
        with self._db.transaction() as conn:
            conn.execute(_LOCK, (key,))
            conn.execute("delete from verity_counter_hits where key = %s", (key,))

    def purge(self, *, before: float) -> int:
        """Delete every hit older than ``before`` (for keys that are never hit again)."""
        with self._db.connection() as conn:
            sql = "delete from verity_counter_hits where at <= %s"
            return conn.execute(sql, (before,)).rowcount
