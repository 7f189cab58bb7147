"""Opening the provider's durable storage (users and flow state) named by ``store.url``.

    sqlite:///PATH    SqliteUserStore + SqliteFlowState in the store's file (one host)
    postgresql://...  PostgresUserStore + PostgresFlowState (many nodes share them)

Both apply the provider's own migration track (``verity_idp_schema_migrations``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ...store.factory import backend_of, sqlite_path
from ...store.postgres.db import PostgresDatabase
from ...store.sqlite.db import SqliteDatabase
from .postgres_users import PostgresUserStore
from .sql_state import PostgresFlowState, SqliteFlowState
from .sqlite_users import SqliteUserStore
from .state import FlowState
from .users import UserStore


@dataclass
class IdpStorage:
    """The provider's users and flow state in one database; ``close()`` releases it."""

    backend: str
    users: UserStore
    state: FlowState
    _close: Callable[[], None] = field(repr=False)

    def close(self) -> None:
        """Close the database connections (idempotent)."""
        close, self._close = self._close, _nothing
        close()


def _nothing() -> None:
    return None


def open_idp_storage(url: str, *, schema: str | None = None, max_size: int = 10) -> IdpStorage:
    """Users and flow state in the database at ``url``, migrated.

    ``schema`` confines PostgreSQL to one schema (as ``open_stores(schema=...)`` does);
    ``max_size`` bounds its connection pool. Raises ``ValueError`` for a bad URL and
    ``StoreUnavailableError`` when the database cannot be reached."""
    if backend_of(url) == "sqlite":
        sdb = SqliteDatabase(sqlite_path(url))
        try:
            local = SqliteUserStore(sdb)
            return IdpStorage("sqlite", local, SqliteFlowState(sdb, migrate=False), sdb.close)
        except BaseException:
            sdb.close()
            raise
    pdb = PostgresDatabase(url, schema=schema, max_size=max_size)
    try:
        shared = PostgresUserStore(pdb)
        return IdpStorage("postgresql", shared, PostgresFlowState(pdb, migrate=False), pdb.close)
    except BaseException:
        pdb.close()
        raise


@contextmanager
def open_user_store(url: str, *, schema: str | None = None) -> Iterator[UserStore]:
    """The user store in the database at ``url`` (migrated), closed on exit."""
    storage = open_idp_storage(url, schema=schema, max_size=2)
    try:
        yield storage.users
    finally:
        storage.close()
