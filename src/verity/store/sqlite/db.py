"""One SQLite database file shared by threads: a connection per thread, WAL, short writes.

Every write runs in ``BEGIN IMMEDIATE``: it takes the database's single write lock
up front (waiting up to ``busy_timeout``), so a read-modify-write is atomic against
every other thread and process using the file, and never fails on a lock upgrade.
Readers are never blocked (WAL). A thread's connection stays open until ``close()``,
so use the database from a bounded set of threads (a server's worker pool).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..._sqlite import enable_wal
from ..errors import StoreUnavailableError

Row = tuple[Any, ...]


class SqliteDatabase:
    """A SQLite file opened in WAL mode; safe to share between threads."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 10.0) -> None:
        self.path = str(path)
        if self.path in ("", ":memory:") or self.path.startswith("file:"):
            raise ValueError("SQLite stores need a file path (in-memory databases are per thread)")
        self._timeout = busy_timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._closed = False

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
            )
            enable_wal(conn, self._timeout)
            conn.execute("pragma synchronous=full")
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"sqlite:///{self.path}", str(exc)) from None
        return conn

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            with self._lock:
                if self._closed:
                    raise StoreUnavailableError(f"sqlite:///{self.path}", "the store is closed")
            conn = self._connect()
            with self._lock:
                self._connections.append(conn)
            self._local.conn = conn
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding the database write lock (commit on success)."""
        conn = self.connection()
        conn.execute("begin immediate")
        try:
            yield conn
        except BaseException:
            conn.execute("rollback")
            raise
        conn.execute("commit")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run a read-only statement and return every row."""
        return self.connection().execute(sql, params).fetchall()

    def query_one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """Run a read-only statement and return its first row, if any."""
        row: Row | None = self.connection().execute(sql, params).fetchone()
        return row

    def close(self) -> None:
        """Close every thread's connection; the database cannot be used afterwards."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
