"""Revocations in PostgreSQL, delivered to every node by LISTEN/NOTIFY.

``revoke`` stores the revocation and calls ``pg_notify`` in the same transaction, so a
notification is sent if and only if the revocation is committed. Each store object runs
one listener thread for all of its subscribers; after a lost connection the listener
replays the revocations stored since (with a margin for clock skew).
"""

from __future__ import annotations

import logging
import threading

from .._common import Deduplicator, LocalBus, check_future, check_reason, check_text, current
from ..protocols import RevocationCallback, Subscription
from ..records import Revocation, RevocationKind, new_id, revocation_from_row
from .db import PostgresDatabase
from .listener import NotifyListener

log = logging.getLogger("verity.store")

_SELECT = "select kind, value, revoked_at, expires, reason, id from verity_revocations"
_UPSERT = """insert into verity_revocations (kind, value, id, revoked_at, expires, reason)
values (%s, %s, %s, %s, %s, %s)
on conflict (kind, value) do update set
    id = excluded.id,
    reason = excluded.reason,
    revoked_at = greatest(verity_revocations.revoked_at, excluded.revoked_at),
    expires = greatest(verity_revocations.expires, excluded.expires)
returning kind, value, revoked_at, expires, reason, id"""
CLOCK_SKEW = 30.0  # seconds of margin when replaying after a reconnect


class PostgresRevocations:
    """``RevocationStore`` on PostgreSQL with NOTIFY fan-out."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        self._bus = LocalBus()
        self._deliver = Deduplicator(self._bus.publish)
        self._listener: NotifyListener | None = None
        self._lock = threading.Lock()

    def revoke(
        self,
        kind: RevocationKind,
        value: str,
        *,
        expires: float,
        reason: str = "",
        now: float | None = None,
    ) -> Revocation:
        """Store (or extend) a revocation and notify every listening node at commit."""
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
        with self._db.transaction() as conn:
            row = conn.execute(_UPSERT, params).fetchone()
            if row is None:  # pragma: no cover - an upsert always returns its row
                raise RuntimeError("upsert returned no row")
            revocation = revocation_from_row(row)
            conn.execute("select pg_notify(%s, %s)", (self._db.channel, revocation.to_json()))
        return revocation

    def lookup(
        self, kind: RevocationKind, value: str, *, now: float | None = None
    ) -> Revocation | None:
        """The revocation in force, if any."""
        with self._db.connection() as conn:
            row = conn.execute(
                _SELECT + " where kind = %s and value = %s and expires > %s",
                (kind.value, value, current(now)),
            ).fetchone()
        return None if row is None else revocation_from_row(row)

    def is_revoked(self, kind: RevocationKind, value: str, *, now: float | None = None) -> bool:
        """Whether a revocation is in force."""
        return self.lookup(kind, value, now=now) is not None

    def active(self, *, now: float | None = None) -> list[Revocation]:
        """Every revocation in force."""
        with self._db.connection() as conn:
            rows = conn.execute(
                _SELECT + " where expires > %s order by revoked_at", (current(now),)
            ).fetchall()
        return [revocation_from_row(row) for row in rows]

    def purge_expired(self, *, now: float | None = None) -> int:
        """Forget expired revocations."""
        with self._db.connection() as conn:
            sql = "delete from verity_revocations where expires <= %s"
            return conn.execute(sql, (current(now),)).rowcount

    def subscribe(self, callback: RevocationCallback) -> Subscription:
        """Deliver every revocation committed from now on (by any node) to ``callback``."""
        with self._lock:
            if self._listener is None:
                listener = NotifyListener(self._db, self._db.channel, self._payload, self._replay)
                listener.start()
                self._listener = listener
        return self._bus.add(callback)

    @property
    def subscribed(self) -> bool:
        """Whether ``subscribe`` started the NOTIFY listener (which then keeps reconnecting)."""
        return self._listener is not None

    @property
    def connected(self) -> bool:
        """Whether the NOTIFY listener is live (``False`` before ``subscribe``)."""
        listener = self._listener
        return listener is not None and listener.connected

    def _payload(self, payload: str) -> None:
        try:
            revocation = Revocation.from_json(payload)
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed revocation notification")
            return
        self._deliver(revocation)

    def _replay(self, since: float) -> None:
        with self._db.connection() as conn:
            rows = conn.execute(
                _SELECT + " where revoked_at >= %s and expires > %s order by revoked_at",
                (since - CLOCK_SKEW, current(None)),
            ).fetchall()
        for row in rows:
            self._deliver(revocation_from_row(row))

    def close(self) -> None:
        """Stop the listener thread."""
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
