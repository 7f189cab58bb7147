"""PostgreSQL audit store (psycopg 3), for several gateway nodes sharing one log.

Concurrency: each append takes ``LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE`` (a
lock that conflicts with itself but not with readers) before it reads the head, so
writers on every node extend one chain, in turn; ``seq`` is the primary key, so two
writers can never both commit the same sequence number (a fork). Rows go in with COPY.

Durability: a commit returns once its WAL is flushed (``synchronous_commit`` is forced to
``on`` for this connection), so an acknowledged batch survives a crash of the writer and
of the database server.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors

from .._urls import mask_url
from .chain import Receipt, Row
from .errors import AuditStoreError, ChainConflictError
from .keys import Checkpoint
from .store import (
    EncodedEvent,
    Query,
    SignFn,
    StoredRecord,
    chain_rows,
    checkpoint_of,
)

_T = TypeVar("_T")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_DDL = (
    "create table if not exists audit_log (seq bigint primary key, prev_hash bytea not null,"
    " hash bytea not null, time_ms bigint not null, class_uid integer not null,"
    " kind text not null, user_uid text, outcome text not null, body bytea not null)",
    "create index if not exists audit_log_time on audit_log (time_ms)",
    "create table if not exists audit_checkpoint (seq bigint primary key, hash bytea not null,"
    " time_ms bigint not null, key_id text not null, signature bytea not null)",
    "create table if not exists audit_probe (id integer primary key check (id = 1),"
    " time_ms bigint not null)",
    "create or replace function verity_audit_append_only() returns trigger language plpgsql"
    " as $$ begin raise exception '% is append-only', tg_table_name; end $$",
    "create or replace trigger audit_log_append_only before update or delete or truncate"
    " on audit_log for each statement execute function verity_audit_append_only()",
    "create or replace trigger audit_checkpoint_append_only before update or delete or truncate"
    " on audit_checkpoint for each statement execute function verity_audit_append_only()",
)
_COPY = (
    "copy audit_log (seq, prev_hash, hash, time_ms, class_uid, kind, user_uid, outcome, body)"
    " from stdin"
)
_INSERT_CHECKPOINT = (
    "insert into audit_checkpoint (seq, hash, time_ms, key_id, signature)"
    " values (%s, %s, %s, %s, %s) on conflict (seq) do nothing"
)
_PROBE = (
    "insert into audit_probe (id, time_ms) values (1, %s)"
    " on conflict (id) do update set time_ms = excluded.time_ms"
)
_HEAD = "select seq, hash from audit_log order by seq desc limit 1"
_SELECT = "select seq, prev_hash, hash, body from audit_log"
_CHECKPOINTS = "select seq, hash, time_ms, key_id, signature from audit_checkpoint order by seq"


class PostgresStore:
    """An audit chain in PostgreSQL tables ``audit_log`` and ``audit_checkpoint``."""

    def __init__(self, url: str, *, schema: str | None = None, create: bool = True) -> None:
        """Connect to ``url``; ``schema`` (an identifier) becomes the ``search_path``."""
        if schema is not None and not _IDENTIFIER.fullmatch(schema):
            raise AuditStoreError(f"invalid schema name {schema!r}")
        self._dsn = url
        self._schema = schema
        self._lock = threading.RLock()
        self._conn = self._connect()
        if create:
            self._transaction(self._create_schema)
        elif self._conn.execute("select to_regclass('audit_log')").fetchone() == (None,):
            self.close()
            raise AuditStoreError(f"no audit log at {self.url}")

    def _connect(self) -> psycopg.Connection[Any]:
        options = "-c synchronous_commit=on"
        if self._schema is not None:
            options += f" -c search_path={self._schema}"
        try:
            return psycopg.connect(self._dsn, autocommit=True, options=options, connect_timeout=10)
        except psycopg.Error as exc:
            raise AuditStoreError(f"{self.url}: {exc}") from exc

    def _create_schema(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute("select pg_advisory_xact_lock(hashtext('verity.audit.ddl'))")
        for statement in _DDL:
            conn.execute(statement)

    @property
    def url(self) -> str:
        """The DSN with its password masked."""
        return mask_url(self._dsn)

    def _transaction(self, work: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        """Run ``work`` in one transaction on a live connection (reconnecting if broken)."""
        with self._lock:
            if self._conn.closed or self._conn.broken:
                self._conn = self._connect()
            try:
                with self._conn.transaction():
                    return work(self._conn)
            except pg_errors.UniqueViolation as exc:
                raise ChainConflictError(_seq_of(exc)) from exc
            except psycopg.Error as exc:
                raise AuditStoreError(f"{self.url}: {exc}") from exc

    def append_batch(
        self, events: Sequence[EncodedEvent], *, sign: SignFn | None = None
    ) -> list[Receipt]:
        """Append under the table lock in one transaction; returns after the commit."""
        return self._transaction(lambda conn: self._append(conn, events, sign))

    def _append(
        self, conn: psycopg.Connection[Any], events: Sequence[EncodedEvent], sign: SignFn | None
    ) -> list[Receipt]:
        conn.execute("lock table audit_log in share row exclusive mode")
        rows = chain_rows(self._head(conn), events)
        if not rows:
            return []
        with conn.cursor() as cursor, cursor.copy(_COPY) as copy:
            for row in rows:
                copy.write_row(row)
        if sign is not None:
            self._insert_checkpoint(conn, sign(rows[-1][0], rows[-1][2]))
        return [Receipt(row[0], row[2]) for row in rows]

    def write_checkpoint(self, sign: SignFn) -> Checkpoint | None:
        """Sign and store a checkpoint of the current head (None if nothing new)."""
        return self._transaction(lambda conn: self._checkpoint_head(conn, sign))

    def _checkpoint_head(self, conn: psycopg.Connection[Any], sign: SignFn) -> Checkpoint | None:
        conn.execute("lock table audit_log in share row exclusive mode")
        head = self._head(conn)
        row = conn.execute("select max(seq) from audit_checkpoint").fetchone()
        last = row[0] if row else None
        if head is None or (last is not None and last >= head.seq):
            return None
        checkpoint = sign(head.seq, head.hash)
        self._insert_checkpoint(conn, checkpoint)
        return checkpoint

    @staticmethod
    def _insert_checkpoint(conn: psycopg.Connection[Any], cp: Checkpoint) -> None:
        values = (cp.seq, cp.hash, cp.time_ms, cp.key_id, cp.signature)
        conn.execute(_INSERT_CHECKPOINT, values)

    def probe(self) -> None:
        """Take the append lock and overwrite the one row of ``audit_probe`` (reconnects
        a broken connection, as an append would)."""
        now_ms = int(time.time() * 1000)

        def work(conn: psycopg.Connection[Any]) -> None:
            conn.execute("lock table audit_log in share row exclusive mode")
            conn.execute(_PROBE, (now_ms,))

        self._transaction(work)

    @staticmethod
    def _head(conn: psycopg.Connection[Any]) -> Receipt | None:
        row = conn.execute(_HEAD).fetchone()
        return Receipt(int(row[0]), bytes(row[1])) if row else None

    def head(self) -> Receipt | None:
        """The last record's seq and hash."""
        return self._transaction(self._head)

    def count(self) -> int:
        """The number of records."""
        row = self._transaction(lambda c: c.execute("select count(*) from audit_log").fetchone())
        return int(row[0]) if row else 0

    def iter_rows(self, *, after_seq: int = 0, batch_size: int = 20_000) -> Iterator[list[Row]]:
        """Records after ``after_seq`` in seq order, streamed through a server-side cursor
        on a connection of its own (one consistent snapshot)."""
        try:
            with self._connect() as conn, conn.transaction():
                conn.execute("set transaction isolation level repeatable read")
                with conn.cursor(name="verity_audit_rows", binary=True) as cursor:
                    cursor.itersize = batch_size
                    cursor.execute(f"{_SELECT} where seq > %s order by seq", (after_seq,))
                    while rows := cursor.fetchmany(batch_size):
                        yield rows
        except psycopg.Error as exc:
            raise AuditStoreError(f"{self.url}: {exc}") from exc

    def checkpoints(self) -> list[Checkpoint]:
        """Every checkpoint in seq order."""
        rows = self._transaction(lambda c: c.execute(_CHECKPOINTS).fetchall())
        return [checkpoint_of(row) for row in rows]

    def query(self, query: Query) -> list[StoredRecord]:
        """Records matching ``query``'s columns (see ``Query.matches`` to re-check)."""
        where, params = query.where("%s")
        order = "desc" if query.newest_first else "asc"
        sql = f"{_SELECT} where {where} order by seq {order}"
        if query.limit is not None:
            sql += f" limit {int(query.limit)}"
        rows = self._transaction(lambda c: c.execute(sql, params).fetchall())
        return [StoredRecord(int(r[0]), bytes(r[1]), bytes(r[2]), bytes(r[3])) for r in rows]

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()


def _seq_of(exc: pg_errors.UniqueViolation) -> int:
    detail = exc.diag.message_detail or ""
    match = re.search(r"\(seq\)=\((\d+)\)", detail)
    return int(match.group(1)) if match else 0
