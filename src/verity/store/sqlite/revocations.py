"""Revocations in SQLite, with in-process notification (the embedded, one-process setup).

Other processes on the same file (``verity revoke``, the other workers of ``verity serve
--workers N``) are not notified; they watch ``revision()``: a cheap value that changes
whenever a revocation is stored, extended or purged by any connection, so a node can poll
it every few tens of milliseconds and re-read ``active()`` only when it changed.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable

from .._common import LocalBus, check_future, check_reason, check_text, current
from ..protocols import RevocationCallback, Subscription
from ..records import Revocation, RevocationKind, new_id, revocation_from_row
from .db import SqliteDatabase

_SELECT = "select kind, value, revoked_at, expires, reason, id from verity_revocations"
# what a stored, extended (later revoked_at or expires) or purged revocation changes
_FINGERPRINT = (
    "select count(*), max(rowid), max(revoked_at), total(expires) from verity_revocations"
)


class SqliteRevocations:
    """``RevocationStore`` on a SQLite file; subscribers in this process are called
    synchronously, after the revocation is committed, by the thread that revoked."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db
        self._bus = LocalBus()
        self._seen = threading.local()  # per connection: (data_version, fingerprint)

    def revoke(
        self,
        kind: RevocationKind,
        value: str,
        *,
        expires: float,
        reason: str = "",
        now: float | None = None,
    ) -> Revocation:
        """Store (or extend) a revocation, then notify subscribers."""
        at = current(now)
        check_future("expires", expires, at)
        params = (
            kind.value,
            check_text("value", value),
            new_id(),
            at,
            expires,
            check_reason(reason),
        )
        with self._db.write() as conn:
            conn.execute(
                "insert into verity_revocations (kind, value, id, revoked_at, expires, reason) "
                "values (?, ?, ?, ?, ?, ?) on conflict (kind, value) do update set "
                "id = excluded.id, reason = excluded.reason, "
                "revoked_at = max(revoked_at, excluded.revoked_at), "
                "expires = max(expires, excluded.expires)",
                params,
            )
            row = conn.execute(
                _SELECT + " where kind = ? and value = ?", (kind.value, value)
            ).fetchone()
        revocation = revocation_from_row(row)
        self._bus.publish(revocation)
        return revocation

    def lookup(
        self, kind: RevocationKind, value: str, *, now: float | None = None
    ) -> Revocation | None:
        """The revocation in force, if any."""
        row = self._db.query_one(
            _SELECT + " where kind = ? and value = ? and expires > ?",
            (kind.value, value, current(now)),
        )
        return None if row is None else revocation_from_row(row)

    def is_revoked(self, kind: RevocationKind, value: str, *, now: float | None = None) -> bool:
        """Whether a revocation is in force."""
        return self.lookup(kind, value, now=now) is not None

    def active(self, *, now: float | None = None) -> list[Revocation]:
        """Every revocation in force."""
        rows = self._db.query(_SELECT + " where expires > ? order by revoked_at", (current(now),))
        return [revocation_from_row(row) for row in rows]

    def purge_expired(self, *, now: float | None = None) -> int:
        """Forget expired revocations."""
        with self._db.write() as conn:
            sql = "delete from verity_revocations where expires <= ?"
            return conn.execute(sql, (current(now),)).rowcount

    def revision(self) -> Hashable:
        """A value that differs after any process stored, extended or purged a revocation.

        Cheap when nothing was written: ``PRAGMA data_version`` of this thread's connection
        (it changes when another connection commits to the file) gates a one-row aggregate
        of the table, which runs only after some write to the database (any table)."""
        conn = self._db.connection()
        version = conn.execute("pragma data_version").fetchone()[0]
        seen: tuple[int, Hashable] | None = getattr(self._seen, "last", None)
        if seen is not None and seen[0] == version:
            return seen[1]
        fingerprint: Hashable = tuple(conn.execute(_FINGERPRINT).fetchone())
        self._seen.last = (version, fingerprint)
        return fingerprint

    def subscribe(self, callback: RevocationCallback) -> Subscription:
        """Call ``callback`` for every later revocation made through this store object."""
        return self._bus.add(callback)

    def close(self) -> None:
        """Nothing to stop: delivery is synchronous."""
