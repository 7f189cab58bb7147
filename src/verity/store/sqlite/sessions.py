"""Sessions in SQLite (see ``SessionStore`` for the guarantees)."""

from __future__ import annotations

import sqlite3
from typing import Any

from .._common import check_score, check_text, current
from ..errors import DuplicateSessionError
from ..records import JsonObject, SessionRecord, dump_json, load_json
from .db import Row, SqliteDatabase

_SELECT = (
    "select id, user_id, created, last_seen, expires, mfa, auth_time, device_id, "
    "trust_score, data, version from verity_sessions"
)


def _record(row: Row) -> SessionRecord:
    return SessionRecord(
        id=row[0],
        user_id=row[1],
        created=row[2],
        last_seen=row[3],
        expires=row[4],
        mfa=bool(row[5]),
        auth_time=row[6],
        device_id=row[7],
        trust_score=row[8],
        data=load_json(row[9]),
        version=row[10],
    )


def _values(s: SessionRecord) -> tuple[Any, ...]:
    return (
        s.id,
        s.user_id,
        s.created,
        s.last_seen,
        s.expires,
        int(s.mfa),
        s.auth_time,
        s.device_id,
        s.trust_score,
        dump_json(s.data),
        s.version,
    )


class SqliteSessions:
    """``SessionStore`` on a SQLite file."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    def create(self, session: SessionRecord) -> SessionRecord:
        """Store a new session; raises ``DuplicateSessionError`` if the id exists."""
        check_text("session id", session.id)
        check_text("user id", session.user_id)
        if session.trust_score is not None:
            check_score(session.trust_score)
        with self._db.write() as conn:
            cursor = conn.execute(
                "insert into verity_sessions (id, user_id, created, last_seen, expires, mfa, "
                "auth_time, device_id, trust_score, data, version) values (?,?,?,?,?,?,?,?,?,?,?)"
                " "
                "on conflict (id) do nothing",
                _values(session),
            )
            if cursor.rowcount == 0:
                raise DuplicateSessionError(session.id)
        return session

    def get(self, session_id: str, *, now: float | None = None) -> SessionRecord | None:
        """The live session, or ``None``."""
        row = self._db.query_one(
            _SELECT + " where id = ? and expires > ?", (session_id, current(now))
        )
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
        """Record activity atomically (read-modify-write under the write lock)."""
        at = current(now)
        if trust_score is not None:
            check_score(trust_score)
        with self._db.write() as conn:
            row = conn.execute(
                _SELECT + " where id = ? and expires > ?", (session_id, at)
            ).fetchone()
            if row is None:
                return None
            old = _record(row)
            merged = {**old.data, **(data or {})}
            new = SessionRecord(
                id=old.id,
                user_id=old.user_id,
                created=old.created,
                last_seen=max(old.last_seen, at),
                expires=max(old.expires, expires if expires is not None else old.expires),
                mfa=old.mfa,
                auth_time=old.auth_time,
                device_id=old.device_id,
                trust_score=old.trust_score if trust_score is None else trust_score,
                data=merged,
                version=old.version + 1,
            )
            conn.execute(
                "update verity_sessions set last_seen = ?, expires = ?, trust_score = ?, "
                "data = ?, version = ? where id = ?",
                (
                    new.last_seen,
                    new.expires,
                    new.trust_score,
                    dump_json(merged),
                    new.version,
                    new.id,
                ),
            )
        return new

    def rotate(
        self, session_id: str, new_id: str, *, now: float | None = None, expires: float
    ) -> SessionRecord | None:
        """Replace a live session by ``new_id``; of concurrent rotations one wins."""
        at = current(now)
        check_text("session id", new_id)
        with self._db.write() as conn:
            row = conn.execute(
                _SELECT + " where id = ? and expires > ?", (session_id, at)
            ).fetchone()
            if row is None:
                return None
            old = _record(row)
            conn.execute("delete from verity_sessions where id = ?", (session_id,))
            try:
                self._insert_rotated(conn, old, new_id, at, expires)
            except sqlite3.IntegrityError:
                raise DuplicateSessionError(new_id) from None
            new = conn.execute(_SELECT + " where id = ?", (new_id,)).fetchone()
        return _record(new)

    @staticmethod
    def _insert_rotated(
        conn: sqlite3.Connection, old: SessionRecord, new_id: str, at: float, expires: float
    ) -> None:
        conn.execute(
                "insert into verity_sessions (id, user_id, created, last_seen, expires, mfa, "
                "auth_time, device_id, trust_score, data, version, rotated_from) "
                "values (?,?,?,?,?,?,?,?,?,?,?,?)",
                (new_id, old.user_id, old.created, at, expires, int(old.mfa), old.auth_time,
                 old.device_id, old.trust_score, dump_json(old.data), old.version + 1, old.id),
            )  # fmt: skip

    def list_for_user(self, user_id: str, *, now: float | None = None) -> list[SessionRecord]:
        """The user's live sessions, oldest first."""
        rows = self._db.query(
            _SELECT + " where user_id = ? and expires > ? order by created, id",
            (user_id, current(now)),
        )
        return [_record(row) for row in rows]

    def revoke(self, session_id: str) -> bool:
        """Delete the session; ``True`` if it existed."""
        with self._db.write() as conn:
            cursor = conn.execute("delete from verity_sessions where id = ?", (session_id,))
            return cursor.rowcount > 0

    def delete_expired(self, *, now: float | None = None) -> int:
        """Delete sessions expired at ``now``."""
        with self._db.write() as conn:
            cursor = conn.execute("delete from verity_sessions where expires <= ?", (current(now),))
            return cursor.rowcount
