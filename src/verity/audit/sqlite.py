"""SQLite audit store (the default backend).

Durability: WAL journal with ``synchronous=FULL``, so SQLite fsyncs the WAL before a
commit returns; an acknowledged batch survives ``kill -9`` *and* an OS crash or power
loss. (``NORMAL`` would survive ``kill -9`` only.) Group commit pays that fsync once per
batch, not once per event.

WAL checkpoints (copying the WAL back into the database file) run in a background thread
on a connection of its own (``PASSIVE``, never blocking a writer), not inside a commit, so
an append does not stall while 4 MB are copied and fsynced.

Concurrency: every append runs in ``BEGIN IMMEDIATE``, which takes SQLite's single write
lock before the head is read, so writers in any number of processes extend one chain;
``seq`` is the INTEGER PRIMARY KEY, so a fork is impossible even for a buggy writer.
Triggers make the tables append-only for ordinary SQL (defence in depth, not security:
the hash chain and the signed checkpoints are what detect tampering).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Literal, TypeVar

from .._sqlite import enable_wal
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

_SCHEMA = f"""
create table if not exists audit_log (
    seq integer primary key, prev_hash blob not null, hash blob not null,
    time_ms integer not null, class_uid integer not null, kind text not null,
    user_uid text, outcome text not null, body blob not null);
create index if not exists audit_log_time on audit_log (time_ms);
create table if not exists audit_checkpoint (
    seq integer primary key, hash blob not null, time_ms integer not null,
    key_id text not null, signature blob not null);
create table if not exists audit_probe (
    id integer primary key check (id = 1), time_ms integer not null);
{
    "".join(
        f"create trigger if not exists {table}_no_{op} before {op} on {table} "
        f"begin select raise(abort, '{table} is append-only'); end;"
        for table in ("audit_log", "audit_checkpoint")
        for op in ("update", "delete")
    )
}
"""
_INSERT = (
    "insert into audit_log (seq, prev_hash, hash, time_ms, class_uid, kind, user_uid, outcome,"
    " body) values (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_CHECKPOINT = (
    "insert or ignore into audit_checkpoint (seq, hash, time_ms, key_id, signature)"
    " values (?, ?, ?, ?, ?)"
)
_SELECT = "select seq, prev_hash, hash, body from audit_log"
_CHECKPOINTS = "select seq, hash, time_ms, key_id, signature from audit_checkpoint order by seq"
_PROBE = "insert or replace into audit_probe (id, time_ms) values (1, ?)"
_T = TypeVar("_T")
_HEAD = "select seq, hash from audit_log order by seq desc limit 1"


class SQLiteStore:
    """An audit chain in one SQLite file (WAL, synchronous=FULL)."""

    def __init__(
        self,
        path: str | Path,
        *,
        create: bool = True,
        timeout: float = 30.0,
        checkpoint_interval: float = 1.0,
        synchronous: Literal["full", "normal"] = "full",
    ) -> None:
        """Open (and with ``create``, initialise) the database at ``path``.

        ``synchronous="normal"`` trades the power-loss guarantee for speed: commits are
        then durable against a crash of the process (``kill -9``) but not of the OS.

        ``checkpoint_interval`` is the period of the background WAL checkpoint (seconds;
        0 leaves checkpoints to SQLite's automatic ones, inside commits). A reader
        (``create=False``) runs none."""
        self.path = Path(path)
        if not create and not self.path.exists():
            raise AuditStoreError(f"no audit log at {self.path}")
        if synchronous not in ("full", "normal"):
            raise AuditStoreError(f"synchronous must be full or normal, not {synchronous!r}")
        self._lock = threading.RLock()
        self._timeout = timeout
        self._synchronous = synchronous
        try:
            self._conn = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
            self._setup(create=create)
        except sqlite3.Error as exc:
            raise AuditStoreError(f"{self.path}: {exc}") from exc
        self._stop = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if create and checkpoint_interval > 0:  # a reader leaves the WAL to the writers
            self._conn.execute("pragma wal_autocheckpoint = 0")
            self._checkpointer = threading.Thread(
                target=self._checkpoint_wal,
                args=(checkpoint_interval,),
                name="verity-audit-wal",
                daemon=True,
            )
            self._checkpointer.start()

    def _checkpoint_wal(self, interval: float) -> None:
        conn = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None)
        try:
            while not self._stop.wait(interval):
                conn.execute("pragma wal_checkpoint(passive)")
        except sqlite3.Error:  # the database went away; checkpoints resume on reopen
            return
        finally:
            conn.close()

    def _setup(self, *, create: bool) -> None:
        conn = self._conn
        conn.execute(f"pragma busy_timeout = {int(self._timeout * 1000)}")
        mode = enable_wal(conn, self._timeout)
        if mode != "wal":
            raise AuditStoreError(f"{self.path}: cannot enable WAL (journal_mode={mode})")
        conn.execute(f"pragma synchronous = {self._synchronous}")
        if create:
            conn.executescript(_SCHEMA)

    @property
    def url(self) -> str:
        """``sqlite:///PATH``."""
        return f"sqlite:///{self.path}"

    def append_batch(
        self, events: Sequence[EncodedEvent], *, sign: SignFn | None = None
    ) -> list[Receipt]:
        """Append in one ``BEGIN IMMEDIATE`` transaction; returns after the durable commit."""
        with self._lock:
            return self._in_write_transaction(lambda: self._append(events, sign))

    def _append(self, events: Sequence[EncodedEvent], sign: SignFn | None) -> list[Receipt]:
        rows = chain_rows(self._head(), events)
        if not rows:
            return []
        try:
            self._conn.executemany(_INSERT, rows)
        except sqlite3.IntegrityError:
            raise ChainConflictError(rows[0][0]) from None
        if sign is not None:
            self._insert_checkpoint(sign(rows[-1][0], rows[-1][2]))
        return [Receipt(row[0], row[2]) for row in rows]

    def write_checkpoint(self, sign: SignFn) -> Checkpoint | None:
        """Sign and store a checkpoint of the current head (None if nothing new)."""
        with self._lock:
            return self._in_write_transaction(lambda: self._checkpoint_head(sign))

    def _checkpoint_head(self, sign: SignFn) -> Checkpoint | None:
        head = self._head()
        last = self._conn.execute("select max(seq) from audit_checkpoint").fetchone()[0]
        if head is None or (last is not None and last >= head.seq):
            return None
        checkpoint = sign(head.seq, head.hash)
        self._insert_checkpoint(checkpoint)
        return checkpoint

    def _insert_checkpoint(self, cp: Checkpoint) -> None:
        values = (cp.seq, cp.hash, cp.time_ms, cp.key_id, cp.signature)
        self._conn.execute(_INSERT_CHECKPOINT, values)

    def _in_write_transaction(self, work: Callable[[], _T]) -> _T:
        """Run ``work`` inside ``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on error)."""
        conn = self._conn
        try:
            conn.execute("begin immediate")
            try:
                result = work()
                conn.execute("commit")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("rollback")
                raise
        except sqlite3.Error as exc:
            raise AuditStoreError(f"{self.path}: {exc}") from exc
        return result

    def probe(self) -> None:
        """Overwrite the one row of ``audit_probe`` in a ``BEGIN IMMEDIATE`` transaction
        (the write lock and the fsync of an append, none of the chain)."""
        now_ms = int(time.time() * 1000)
        with self._lock:
            self._in_write_transaction(lambda: self._conn.execute(_PROBE, (now_ms,)))

    def _head(self) -> Receipt | None:
        row = self._conn.execute(_HEAD).fetchone()
        return Receipt(int(row[0]), bytes(row[1])) if row else None

    def head(self) -> Receipt | None:
        """The last record's seq and hash."""
        with self._lock:
            return self._head()

    def count(self) -> int:
        """The number of records."""
        with self._lock:
            return int(self._conn.execute("select count(*) from audit_log").fetchone()[0])

    def iter_rows(self, *, after_seq: int = 0, batch_size: int = 20_000) -> Iterator[list[Row]]:
        """Records after ``after_seq`` in seq order, one keyset page at a time."""
        sql = "select seq, prev_hash, hash, body from audit_log where seq > ? order by seq limit ?"
        while True:
            with self._lock:
                rows: list[Row] = self._conn.execute(sql, (after_seq, batch_size)).fetchall()
            if not rows:
                return
            yield rows
            last = rows[-1][0]
            if not isinstance(last, int) or len(rows) < batch_size:
                return
            after_seq = last

    def checkpoints(self) -> list[Checkpoint]:
        """Every checkpoint in seq order."""
        with self._lock:
            return [checkpoint_of(row) for row in self._conn.execute(_CHECKPOINTS)]

    def query(self, query: Query) -> list[StoredRecord]:
        """Records matching ``query``'s columns (see ``Query.matches`` to re-check)."""
        where, params = query.where("?")
        order = "desc" if query.newest_first else "asc"
        # ``where`` holds constant column names and placeholders only; values are bound
        sql = f"{_SELECT} where {where} order by seq {order}"
        if query.limit is not None:
            sql += f" limit {int(query.limit)}"
        with self._lock:
            return [StoredRecord(*row) for row in self._conn.execute(sql, params)]

    def close(self) -> None:
        """Stop the WAL checkpointer and close the connection."""
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join()
        with self._lock:
            self._conn.close()
