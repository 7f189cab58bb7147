"""Versioned key material in SQLite."""

from __future__ import annotations

from .._common import check_text, current
from ..records import KeyVersion, key_from_row
from .db import SqliteDatabase

_SELECT = "select name, version, algorithm, created, material from verity_keys"


class SqliteKeys:
    """``KeyStore`` on a SQLite file (versions numbered under the write lock)."""

    def __init__(self, db: SqliteDatabase) -> None:
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
        with self._db.write() as conn:
            row = conn.execute(
                "select coalesce(max(version), 0) + 1 from verity_keys where name = ?", (name,)
            ).fetchone()
            version = int(row[0])
            conn.execute(
                "insert into verity_keys (name, version, algorithm, created, material) "
                "values (?, ?, ?, ?, ?)",
                (name, version, algorithm, at, bytes(material)),
            )
        return KeyVersion(name, version, algorithm, at, bytes(material))

    def get(self, name: str, version: int | None = None) -> KeyVersion | None:
        """A version of the key (the newest by default)."""
        if version is None:
            row = self._db.query_one(
                _SELECT + " where name = ? order by version desc limit 1", (name,)
            )
        else:
            row = self._db.query_one(_SELECT + " where name = ? and version = ?", (name, version))
        return None if row is None else key_from_row(row)

    def versions(self, name: str) -> list[KeyVersion]:
        """Every version of ``name``, oldest first."""
        rows = self._db.query(_SELECT + " where name = ? order by version", (name,))
        return [key_from_row(row) for row in rows]

    def names(self) -> list[str]:
        """The names of all keys."""
        return [
            row[0] for row in self._db.query("select distinct name from verity_keys order by 1")
        ]
