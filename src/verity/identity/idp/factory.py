"""Opening the user store named by ``store.url`` (SQLite today)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ...store.factory import backend_of, sqlite_path
from ...store.sqlite.db import SqliteDatabase
from .sqlite_users import SqliteUserStore
from .users import UserStore


@contextmanager
def open_user_store(url: str) -> Iterator[UserStore]:
    """The user store in the database at ``url`` (migrated), closed on exit.

    Raises ``ValueError`` for a URL whose backend has no user store yet (PostgreSQL)."""
    if backend_of(url) != "sqlite":
        raise ValueError("the embedded identity provider stores users in SQLite only (for now)")
    db = SqliteDatabase(sqlite_path(url))
    try:
        yield SqliteUserStore(db)
    finally:
        db.close()
