"""Sessions in PostgreSQL: every change is one statement on one row (row locks, no races)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from .._common import check_score, check_text, current
from ..errors import DuplicateSessionError
from ..records import JsonObject, SessionRecord
from .db import PostgresDatabase

_SELECT = (
    "select id, user_id, created, last_seen, expires, mfa, auth_time, device_id, "
    "trust_score, data, version from verity_sessions"
)

_TOUCH = """update verity_sessions set
    last_seen = greatest(last_seen, %(now)s),
    expires = greatest(expires, coalesce(%(expires)s, expires)),
    trust_score = coalesce(%(trust_score)s, trust_score),
    data = data || %(data)s,
    version = version + 1
where id = %(id)s and expires > %(now)s
returning id, user_id, created, last_seen, expires, mfa, auth_time, device_id, trust_score,
    data, version"""

_ROTATE = """with old as (
    delete from verity_sessions where id = %(old)s and expires > %(now)s returning *
)
insert into verity_sessions (id, user_id, created, last_seen, expires, mfa, auth_time,
    device_id, trust_score, data, version, rotated_from)
select %(new)s, user_id, created, %(now)s, %(expires)s, mfa, auth_time, device_id,
       trust_score, data, version + 1, id from old
returning id, user_id, created, last_seen, expires, mfa, auth_time, device_id, trust_score,
    data, version"""


def _record(row: tuple[Any, ...]) -> SessionRecord:
    return SessionRecord(
        id=row[0],
        user_id=row[1],
        created=row[2],
        last_seen=row[3],
        expires=row[4],
        mfa=row[5],
        auth_time=row[6],
        device_id=row[7],
        trust_score=row[8],
        data=row[9],
        version=row[10],
    )


class PostgresSessions:
    """``SessionStore`` on PostgreSQL."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    def create(self, session: SessionRecord) -> SessionRecord:
        """Store a new session; raises ``DuplicateSessionError`` if the id exists."""
        check_text("session id", session.id)
        check_text("user id", session.user_id)
        if session.trust_score is not None:
            check_score(session.trust_score)
        s = session
        with self._db.connection() as conn:
            row = conn.execute(
                "insert into verity_sessions (id, user_id, created, last_seen, expires, mfa, "
                "auth_time, device_id, trust_score, data, version) "
                "values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "on conflict (id) do nothing returning id",
                (s.id, s.user_id, s.created, s.last_seen, s.expires, s.mfa, s.auth_time,
                 s.device_id, s.trust_score, Jsonb(dict(s.data)), s.version),
            ).fetchone()  # fmt: skip
        if row is None:
            raise DuplicateSessionError(session.id)
        return session

    def get(self, session_id: str, *, now: float | None = None) -> SessionRecord | None:
        """The live session, or ``None``."""
        with self._db.connection() as conn:
            row = conn.execute(
                _SELECT + " where id = %s and expires > %s", (session_id, current(now))
            ).fetchone()
        return None if row is None else _record(row)

    def touch(
        self,
        session_id: str,
        *,
        now: float | None = None,
        expires: float | None = None,
        trust_score: int | None = None,
        data: JsonObject | None = None,
    ) -> SessionRecord | None:
        """Record activity in one atomic ``UPDATE`` (concurrent touches serialize on the row)."""
        if trust_score is not None:
            check_score(trust_score)
        params = {
            "id": session_id,
            "now": current(now),
            "expires": expires,
            "trust_score": trust_score,
            "data": Jsonb(dict(data or {})),
        }
        with self._db.connection() as conn:
            row = conn.execute(_TOUCH, params).fetchone()
        return None if row is None else _record(row)

    def rotate(
        self, session_id: str, new_id: str, *, now: float | None = None, expires: float
    ) -> SessionRecord | None:
        """Replace a live session by ``new_id`` in one statement; one concurrent caller wins."""
        params = {
            "old": session_id,
            "new": check_text("session id", new_id),
            "now": current(now),
            "expires": expires,
        }
        try:
            with self._db.connection() as conn:
                row = conn.execute(_ROTATE, params).fetchone()
        except psycopg.errors.UniqueViolation:
            raise DuplicateSessionError(new_id) from None
        return None if row is None else _record(row)

    def list_for_user(self, user_id: str, *, now: float | None = None) -> list[SessionRecord]:
        """The user's live sessions, oldest first."""
        with self._db.connection() as conn:
            rows = conn.execute(
                _SELECT + " where user_id = %s and expires > %s order by created, id",
                (user_id, current(now)),
            ).fetchall()
        return [_record(row) for row in rows]

    def revoke(self, session_id: str) -> bool:
        """Delete the session; ``True`` if it existed."""
        with self._db.connection() as conn:
            cursor = conn.execute("delete from verity_sessions where id = %s", (session_id,))
            return cursor.rowcount > 0

    def delete_expired(self, *, now: float | None = None) -> int:
        """Delete sessions expired at ``now``."""
        with self._db.connection() as conn:
            cursor = conn.execute(
                "delete from verity_sessions where expires <= %s", (current(now),)
            )
            return cursor.rowcount
