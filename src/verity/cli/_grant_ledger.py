"""The grant table as ``verity grants`` needs it: the backend's ``GrantStore`` plus a
listing and an expiry sweep that reports *which* grants it expired.

``GrantStore`` (``verity.store.protocols``) has neither: ``active`` is per principal and
``expire`` returns a count. Both queries live here, over the same database and with the
same columns, until the store protocol grows them (then this module shrinks to
``open_stores(...).grants``). The sweep is one atomic ``UPDATE ... RETURNING``, so of two
concurrent sweeps each expired grant is reported by exactly one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..store import GrantStatus, GrantStore, StoreUnavailableError, postgres, sqlite
from ..store.factory import backend_of, sqlite_path
from ..store.records import Grant, grant_from_row

_COLUMNS = (
    "id, principal, name, reason, duration, requested_at, status, approver, decided_at, "
    "starts, expires"
)
_SWEEP = (
    "update verity_grants set status = 'expired' where status = 'approved' and expires <= ? "
    "returning id, principal, name, reason, duration, requested_at, status, approver, "
    "decided_at, starts, expires"
)
_IN_FORCE = "status in ('approved', 'expired') and starts <= ? and expires > ?"

Rows = list[Sequence[Any]]


@dataclass
class GrantLedger:
    """A grant store with listing and sweeping; ``close()`` releases the database."""

    store: GrantStore
    _read: Callable[[str, list[object]], Rows]
    _write: Callable[[str, list[object]], Rows]
    _placeholder: str
    close: Callable[[], None]

    def find(
        self,
        *,
        principal: str | None = None,
        status: GrantStatus | None = None,
        active_at: float | None = None,
        limit: int = 100,
    ) -> list[Grant]:
        """Grants, newest request first: of ``principal``, in ``status``, or in force at
        ``active_at`` (each filter optional), at most ``limit``."""
        clauses: list[str] = []
        params: list[object] = []
        if principal is not None:
            clauses.append("principal = ?")
            params.append(principal)
        if status is not None:
            clauses.append("status = ?")
            params.append(status.value)
        if active_at is not None:
            clauses.append(_IN_FORCE)
            params += [active_at, active_at]
        where = " where " + " and ".join(clauses) if clauses else ""
        sql = "select " + _COLUMNS + " from verity_grants" + where  # noqa: S608 - constants
        sql += " order by requested_at desc, id limit ?"
        return [grant_from_row(row) for row in self._read(self._sql(sql), [*params, limit])]

    def _sql(self, sql: str) -> str:
        """The statement in the backend's placeholder style (the SQL has no other '?')."""
        return sql if self._placeholder == "?" else sql.replace("?", self._placeholder)

    def sweep(self, *, now: float) -> list[Grant]:
        """Mark approved grants that ended at or before ``now`` as expired; returns them."""
        rows = self._write(self._sql(_SWEEP), [now])
        return sorted((grant_from_row(row) for row in rows), key=lambda g: (g.expires, g.id))


Database = sqlite.SqliteDatabase | postgres.PostgresDatabase


def open_database(url: str) -> Database:
    """The store's database at ``url``, migrated (a SQLite file must exist already: a
    mistyped path must not file state into a database no gateway reads)."""
    if backend_of(url) == "sqlite":
        path = sqlite_path(url)
        if not path.exists():
            raise StoreUnavailableError(
                url, "the database file does not exist (is this the gateway's store?)"
            )
        db: Database = sqlite.SqliteDatabase(path)
    else:
        db = postgres.PostgresDatabase(url, max_size=2)
    try:
        if isinstance(db, sqlite.SqliteDatabase):
            sqlite.migrate(db)
        else:
            postgres.migrate(db)
    except BaseException:
        db.close()
        raise
    return db


def open_ledger(url: str) -> GrantLedger:
    """The grants of the store at ``url`` (see ``open_database``)."""
    db = open_database(url)
    if isinstance(db, sqlite.SqliteDatabase):
        return _sqlite(db)
    return _postgres(db)


def _sqlite(db: sqlite.SqliteDatabase) -> GrantLedger:
    def read(sql: str, params: list[object]) -> Rows:
        return list(db.query(sql, params))

    def write(sql: str, params: list[object]) -> Rows:
        with db.write() as conn:
            return list(conn.execute(sql, params).fetchall())

    return GrantLedger(sqlite.SqliteGrants(db), read, write, "?", db.close)


def _postgres(db: postgres.PostgresDatabase) -> GrantLedger:
    def run(sql: str, params: list[object]) -> Rows:
        with db.connection() as conn:
            return list(conn.execute(sql, params).fetchall())

    return GrantLedger(postgres.PostgresGrants(db), run, run, "%s", db.close)


__all__ = ["Database", "GrantLedger", "open_database", "open_ledger"]
