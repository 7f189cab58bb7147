"""A PostgreSQL database behind a psycopg connection pool.

Connections are in autocommit mode; every multi-statement change runs in an explicit
transaction (``transaction()``). Connection failures surface as
``StoreUnavailableError`` with the URL's password masked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from ..errors import StoreUnavailableError

Conn = psycopg.Connection[tuple[Any, ...]]

MIGRATIONS_LOCK = 0x56450001  # advisory lock classes (first key of the two-key form)
COUNTERS_LOCK = 0x56450002
KEYS_LOCK = 0x56450003


def channel_name(schema: str) -> str:
    """The NOTIFY channel of revocations for a schema (at most 63 bytes)."""
    name = f"verity_revocations.{schema}"
    if len(name.encode()) <= 63:
        return name
    return "verity_revocations." + hashlib.sha256(schema.encode()).hexdigest()[:32]


class PostgresDatabase:
    """A pooled PostgreSQL database, optionally confined to one schema (``search_path``).

    Outages are bounded on both sides: a caller waits at most ``timeout`` seconds for a
    connection before ``StoreUnavailableError`` (a request must not hang on a database
    that is gone), and the pool gives up a reconnection attempt after ``reconnect_seconds``
    so that the next caller tries a fresh connection at once instead of waiting out the
    pool's growing backoff: a database that comes back is used again within a request.
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 3.0,
        reconnect_seconds: float = 2.0,
    ) -> None:
        self.url = url
        self._schema = schema
        self.pool: ConnectionPool[Conn] = ConnectionPool(
            url,
            kwargs={"autocommit": True, "connect_timeout": 5},
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            reconnect_timeout=reconnect_seconds,
            configure=self._configure,
            check=ConnectionPool.check_connection,
            name="verity-store",
            open=False,
        )
        try:
            psycopg.connect(url, connect_timeout=5).close()  # fail fast, with the reason
            self.pool.open(wait=True, timeout=timeout)
        except (PoolTimeout, psycopg.Error) as exc:
            self.pool.close()
            raise StoreUnavailableError(url, _reason(exc, url)) from None
        with self.connection() as conn:
            row = conn.execute("select current_schema()").fetchone()
        if row is None or row[0] is None:
            self.close()
            raise StoreUnavailableError(url, "no schema on the search_path exists")
        self.schema: str = row[0]
        self.channel = channel_name(self.schema)

    def _configure(self, conn: Conn) -> None:
        if self._schema is not None:
            conn.execute(sql.SQL("set search_path to {}").format(sql.Identifier(self._schema)))

    def connect(self) -> Conn:
        """A new connection outside the pool (for LISTEN), configured like pooled ones."""
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
        except psycopg.Error as exc:
            raise StoreUnavailableError(self.url, _reason(exc, self.url)) from None
        self._configure(conn)
        return conn

    @contextmanager
    def connection(self) -> Iterator[Conn]:
        """A pooled connection in autocommit mode."""
        try:
            with self.pool.connection() as conn:
                yield conn
        except (PoolTimeout, psycopg.OperationalError) as exc:
            raise StoreUnavailableError(self.url, _reason(exc, self.url)) from None

    @contextmanager
    def transaction(self) -> Iterator[Conn]:
        """A pooled connection inside one transaction (committed on success)."""
        with self.connection() as conn, conn.transaction():
            yield conn

    def close(self) -> None:
        """Close the pool."""
        self.pool.close()


def _reason(exc: BaseException, url: str) -> str:
    """The first line of a driver error, with the URL's password (if quoted back) masked."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    return text.replace(password, "***") if password else text
