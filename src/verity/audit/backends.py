"""Choosing a backend from a URL: ``sqlite:///PATH`` (default) or ``postgresql://...``."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from .errors import AuditStoreError
from .postgres import PostgresStore
from .sqlite import SQLiteStore
from .store import AuditStore


def open_store(url: str, *, schema: str | None = None, create: bool = True) -> AuditStore:
    """Open ``sqlite:///PATH`` (default backend) or ``postgresql://...``.

    ``schema`` selects a PostgreSQL schema (``search_path``); ``create=False`` refuses to
    create a missing SQLite file (readers such as ``verify`` must not invent a log).
    """
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        return SQLiteStore(sqlite_path(url), create=create)
    if scheme in ("postgresql", "postgres"):
        return PostgresStore(url, schema=schema, create=create)
    raise AuditStoreError(
        f"unsupported audit store URL {scheme!r}: use sqlite:/// or postgresql://"
    )


def sqlite_path(url: str) -> str:
    """``sqlite:///rel/path.db`` -> ``rel/path.db``; ``sqlite:////abs.db`` -> ``/abs.db``."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise AuditStoreError(f"sqlite URL must not name a host: {url}")
    path = unquote(parts.path)[1:] if parts.path.startswith("/") else unquote(parts.path)
    if not path:
        raise AuditStoreError(f"sqlite URL has no path: {url}")
    return path
