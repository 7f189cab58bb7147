"""``FlowState`` in the store's database, shared by every process and node using it.

``SqliteFlowState`` (one host, several processes) and ``PostgresFlowState`` (many nodes)
run the same statements. Login transactions, codes and refresh tokens are keyed by the
SHA-256 of their handle. Redemption is one conditional ``UPDATE ... RETURNING`` whose
``reused = used`` reads the row as it was before: of two nodes racing for one code or
refresh token, exactly one sees it unused, and the other one's presentation is recorded
as reuse. Family revocation and refresh-token insertion are serialized per family (a
transaction-scoped advisory lock on PostgreSQL, the database write lock on SQLite).
Expired rows are purged a day after expiry, on the next new code or transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from ...store.postgres import idp_schema as postgres_schema
from ...store.postgres.db import PostgresDatabase
from ...store.sqlite import idp_schema as sqlite_schema
from ...store.sqlite.db import SqliteDatabase
from ._flow_codec import (
    decode_code,
    decode_refresh,
    decode_transaction,
    encode_code,
    encode_jtis,
    encode_refresh,
    encode_transaction,
)
from .state import CodeGrant, LoginTransaction, RefreshGrant, digest

Row = tuple[Any, ...]
PURGE_AFTER = 86400.0  # seconds past expiry before a row is deleted
FAMILY_LOCK = 0x56450101  # advisory lock class (see verity.store.postgres.db)

_PURGE = (
    "delete from verity_idp_transactions where expires <= ?",
    "delete from verity_idp_codes where expires <= ?",
    "delete from verity_idp_refresh_tokens where expires <= ?",
    "delete from verity_idp_revoked_families where expires <= ?",
)
_PUT_TX = (
    "insert into verity_idp_transactions (id_hash, data, expires) values (?, ?, ?) "
    "on conflict (id_hash) do update set data = excluded.data, expires = excluded.expires"
)
_PUT_CODE = (
    "insert into verity_idp_codes (code_hash, data, expires, used, reused, family, jtis) "
    "values (?, ?, ?, ?, false, ?, ?)"
)
_REDEEM_CODE = (
    "update verity_idp_codes set reused = used, used = true "
    "where code_hash = ? and expires > ? returning data, expires, reused, family, jtis"
)
_RECORD = "update verity_idp_codes set family = ?, jtis = ? where code_hash = ? returning reused"
_PUT_REFRESH = (
    "insert into verity_idp_refresh_tokens (token_hash, family, data, expires, used, reused) "
    "values (?, ?, ?, ?, ?, false)"
)
_EXTEND_REVOCATION = (
    "update verity_idp_revoked_families set expires = ? where family = ? and expires < ?"
)
_REDEEM_REFRESH = (
    "update verity_idp_refresh_tokens set reused = used, used = true "
    "where token_hash = ? and expires > ? returning family, data, expires, reused"
)
_REVOKE = (
    "insert into verity_idp_revoked_families (family, expires) values (?, coalesce("
    "(select max(expires) from verity_idp_refresh_tokens where family = ?), 0)) "
    "on conflict (family) do update set expires = case "
    "when excluded.expires > verity_idp_revoked_families.expires then excluded.expires "
    "else verity_idp_revoked_families.expires end"
)
_REVOKED = "select 1 from verity_idp_revoked_families where family = ?"
_PEEK_CODE = (
    "select data, expires, used, family, jtis from verity_idp_codes "
    "where code_hash = ? and expires > ?"
)
_PEEK_REFRESH = (
    "select family, data, expires, used from verity_idp_refresh_tokens "
    "where token_hash = ? and expires > ?"
)
_FAMILY_ROWS = "select data from verity_idp_refresh_tokens where family = ?"


class _Tx(Protocol):
    def rows(self, statement: str, params: Sequence[Any] = ()) -> list[Row]: ...
    def lock_family(self, family: str) -> None: ...


class _Backend(Protocol):
    def write(self) -> AbstractContextManager[_Tx]: ...
    def read_one(self, statement: str, params: Sequence[Any]) -> Row | None: ...
    def read_all(self, statement: str, params: Sequence[Any]) -> list[Row]: ...


class _SqlFlowState:
    """The ``FlowState`` logic, on a backend that runs ``?``-style statements."""

    def __init__(self, backend: _Backend) -> None:
        self._sql = backend

    def put_transaction(self, tx: LoginTransaction) -> None:
        """Store or replace a login transaction (and purge long-expired ones)."""
        with self._sql.write() as db:
            db.rows(_PURGE[0], (tx.expires - PURGE_AFTER,))
            db.rows(_PUT_TX, (digest(tx.id), encode_transaction(tx), tx.expires))

    def get_transaction(self, tx_id: str, *, now: float) -> LoginTransaction | None:
        """The live transaction, or ``None``."""
        row = self._sql.read_one(
            "select data, expires from verity_idp_transactions where id_hash = ? and expires > ?",
            (digest(tx_id), now),
        )
        return None if row is None else decode_transaction(tx_id, row[0], row[1])

    def drop_transaction(self, tx_id: str) -> None:
        """Forget a transaction (after it produced a code, or failed for good)."""
        with self._sql.write() as db:
            db.rows("delete from verity_idp_transactions where id_hash = ?", (digest(tx_id),))

    def put_code(self, code_hash: str, grant: CodeGrant) -> None:
        """Store a new authorization code (and purge every long-expired row)."""
        with self._sql.write() as db:
            for statement in _PURGE:
                db.rows(statement, (grant.expires - PURGE_AFTER,))
            db.rows(
                _PUT_CODE,
                (code_hash, encode_code(grant), grant.expires, grant.used, grant.family,
                 encode_jtis(grant.jtis)),
            )  # fmt: skip

    def peek_code(self, code_hash: str, *, now: float) -> CodeGrant | None:
        """The live code's grant, not marked used (a read; nothing changes)."""
        row = self._sql.read_one(_PEEK_CODE, (code_hash, now))
        if row is None:
            return None
        data, expires, used, family, jtis = row
        return decode_code(data, expires=expires, used=bool(used), family=family, jtis=jtis)

    def redeem_code(self, code_hash: str, *, now: float) -> CodeGrant | None:
        """The code's grant, marked used. A second redemption (on any node) returns it
        with ``used=True`` and is recorded as reuse."""
        with self._sql.write() as db:
            rows = db.rows(_REDEEM_CODE, (code_hash, now))
        if not rows:
            return None
        data, expires, was_used, family, jtis = rows[0]
        return decode_code(data, expires=expires, used=bool(was_used), family=family, jtis=jtis)

    def record_code_result(self, code_hash: str, *, family: str, jtis: tuple[str, ...]) -> bool:
        """Remember what a code produced; ``True`` (and the family revoked) if the code
        was presented again meanwhile."""
        with self._sql.write() as db:
            rows = db.rows(_RECORD, (family, encode_jtis(jtis), code_hash))
            reused = bool(rows and rows[0][0])
            if reused:
                db.lock_family(family)
                db.rows(_REVOKE, (family, family))
        return reused

    def put_refresh(self, token_hash: str, grant: RefreshGrant) -> bool:
        """Store a new refresh token (a revoked family stays revoked past its expiry);
        ``True`` if its family is revoked already. Serialized with the family's
        revocation: a revocation committed later sees this token's ``jti``."""
        family = grant.family
        with self._sql.write() as db:
            db.lock_family(family)
            db.rows(
                _PUT_REFRESH,
                (token_hash, family, encode_refresh(grant), grant.expires, grant.used),
            )
            db.rows(_EXTEND_REVOCATION, (grant.expires, family, grant.expires))
            return bool(db.rows(_REVOKED, (family,)))

    def peek_refresh(self, token_hash: str, *, now: float) -> RefreshGrant | None:
        """The unexpired refresh token's grant (a read; nothing changes)."""
        row = self._sql.read_one(_PEEK_REFRESH, (token_hash, now))
        if row is None:
            return None
        family, data, expires, used = row
        return decode_refresh(family, data, expires=expires, used=bool(used))

    def family_jtis(self, family: str) -> tuple[str, ...]:
        """The access-token ids issued with the family's refresh tokens."""
        rows = self._sql.read_all(_FAMILY_ROWS, (family,))
        jtis = (json.loads(row[0]).get("jti") for row in rows)
        return tuple(dict.fromkeys(jti for jti in jtis if isinstance(jti, str)))

    def redeem_refresh(self, token_hash: str, *, now: float) -> RefreshGrant | None:
        """Use a refresh token once. A used or revoked token yields ``None``; a used one
        also revokes its family, so the thief's and the victim's tokens both stop."""
        with self._sql.write() as db:
            rows = db.rows(_REDEEM_REFRESH, (token_hash, now))
            if not rows:
                return None
            family, data, expires, was_used = rows[0]
            db.lock_family(family)
            if was_used:
                db.rows(_REVOKE, (family, family))
                return None
            if db.rows(_REVOKED, (family,)):
                return None
        return decode_refresh(family, data, expires=expires, used=False)

    def revoke_family(self, family: str) -> None:
        """Revoke every refresh token of ``family``, including ones stored later."""
        with self._sql.write() as db:
            db.lock_family(family)
            db.rows(_REVOKE, (family, family))


class _SqliteTx:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def rows(self, statement: str, params: Sequence[Any] = ()) -> list[Row]:
        result: list[Row] = self._conn.execute(statement, params).fetchall()
        return result

    def lock_family(self, family: str) -> None:
        """Nothing to do: the write transaction holds the database's write lock."""


class _SqliteBackend:
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    @contextmanager
    def write(self) -> Iterator[_Tx]:
        with self._db.write() as conn:
            yield _SqliteTx(conn)

    def read_one(self, statement: str, params: Sequence[Any]) -> Row | None:
        return self._db.query_one(statement, params)

    def read_all(self, statement: str, params: Sequence[Any]) -> list[Row]:
        return list(self._db.query(statement, params))


def _pg(statement: str) -> str:
    """A ``?``-style statement in psycopg's ``%s`` style (the statements hold no ``%``)."""
    return statement.replace("?", "%s")


class _PostgresTx:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def rows(self, statement: str, params: Sequence[Any] = ()) -> list[Row]:
        cursor = self._conn.execute(_pg(statement), params)
        return [] if cursor.description is None else list(cursor.fetchall())

    def lock_family(self, family: str) -> None:
        """Serialize with every other transaction on this family, on any node."""
        self._conn.execute(f"select pg_advisory_xact_lock({FAMILY_LOCK}, hashtext(%s))", (family,))


class _PostgresBackend:
    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    @contextmanager
    def write(self) -> Iterator[_Tx]:
        with self._db.transaction() as conn:
            yield _PostgresTx(conn)

    def read_one(self, statement: str, params: Sequence[Any]) -> Row | None:
        with self._db.connection() as conn:
            row: Row | None = conn.execute(_pg(statement), params).fetchone()
        return row

    def read_all(self, statement: str, params: Sequence[Any]) -> list[Row]:
        with self._db.connection() as conn:
            return list(conn.execute(_pg(statement), params).fetchall())


class SqliteFlowState(_SqlFlowState):
    """``FlowState`` in the store's SQLite file (every process on the host shares it)."""

    def __init__(self, db: SqliteDatabase, *, migrate: bool = True) -> None:
        if migrate:
            sqlite_schema.migrate(db)
        super().__init__(_SqliteBackend(db))


class PostgresFlowState(_SqlFlowState):
    """``FlowState`` in the store's PostgreSQL database (every node shares it)."""

    def __init__(self, db: PostgresDatabase, *, migrate: bool = True) -> None:
        if migrate:
            postgres_schema.migrate(db)
        super().__init__(_PostgresBackend(db))
