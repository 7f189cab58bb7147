"""Versioned key material in PostgreSQL (versions numbered under a per-name lock)."""

from __future__ import annotations

from psycopg import sql

from .._common import check_text, current
from ..records import KeyVersion, key_from_row
from .db import KEYS_LOCK, PostgresDatabase

_SELECT = "select name, version, algorithm, created, material from verity_keys"
_LOCK = sql.SQL("select pg_advisory_xact_lock({}, hashtext(%s))").format(KEYS_LOCK)


class PostgresKeys:
    """``KeyStore`` on PostgreSQL."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    def put(
        self, name: str, material: bytes, *, algorithm: str, now: float | None = None
    ) -> KeyVersion:
        """Store the next version of ``name``."""
        check_text("key name", name)
        check_text("algorithm", algorithm)
        if not material:
            raise ValueError("key material must not be empty")
        at = current(now)
        with self._db.transaction() as conn:
            conn.execute(_LOCK, (name,))
            row = conn.execute(
                "insert into verity_keys (name, version, algorithm, created, material) "
                "select %s, coalesce(max(version), 0) + 1, %s, %s, %s "
                "from verity_keys where name = %s returning version",
                (name, algorithm, at, bytes(material), name),
            ).fetchone()
        if row is None:  # pragma: no cover - an insert ... select of one row returns it
            raise RuntimeError("insert returned no row")
        return KeyVersion(name, int(row[0]), algorithm, at, bytes(material))

    def get(self, name: str, version: int | None = None) -> KeyVersion | None:
        """A version of the key (the newest by default)."""
        with self._db.connection() as conn:
            if version is None:
                cursor = conn.execute(
                    _SELECT + " where name = %s order by version desc limit 1", (name,)
                )
            else:
                cursor = conn.execute(
                    _SELECT + " where name = %s and version = %s", (name, version)
                )
            row = cursor.fetchone()
        return None if row is None else key_from_row(row)

    def versions(self, name: str) -> list[KeyVersion]:
        """Every version of ``name``, oldest first."""
        with self._db.connection() as conn:
            rows = conn.execute(_SELECT + " where name = %s order by version", (name,)).fetchall()
        return [key_from_row(row) for row in rows]

    def names(self) -> list[str]:
        """The names of all keys."""
        with self._db.connection() as conn:
            rows = conn.execute("select distinct name from verity_keys order by 1").fetchall()
        return [row[0] for row in rows]
