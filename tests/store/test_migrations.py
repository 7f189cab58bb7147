"""Numbered migrations: idempotent, tracked, drift detected, on both SQL backends."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from verity.store import postgres, sqlite
from verity.store.postgres.schema import MIGRATIONS as PG_MIGRATIONS
from verity.store.sqlite.schema import MIGRATIONS as SQLITE_MIGRATIONS


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Any]:
    """(database, backend module, execute(sql)) on an empty database."""
    if request.param == "sqlite":
        sdb = sqlite.SqliteDatabase(tmp_path / "fresh.db")

        def run_sqlite(statement: str) -> None:
            with sdb.write() as conn:
                conn.execute(statement)

        yield sdb, sqlite, run_sqlite
        sdb.close()
        return
    pdb = postgres.PostgresDatabase(
        request.getfixturevalue("postgres_dsn"), schema=request.getfixturevalue("pg_schema")
    )

    def run_pg(statement: str) -> None:
        with pdb.connection() as conn:
            conn.execute(statement.encode())

    yield pdb, postgres, run_pg
    pdb.close()


def test_migrate_applies_once_and_status_reports_it(fresh: Any) -> None:
    db, backend, _ = fresh
    before = backend.status(db)
    assert (before.applied, [m.version for m in before.pending], before.ok) == ((), [1], True)
    assert backend.migrate(db) == [1]
    assert backend.migrate(db) == []
    after = backend.status(db)
    assert [(m.version, m.name) for m in after.applied] == [(1, "initial")]
    assert after.pending == ()
    assert after.ok


def test_status_detects_an_edited_or_unknown_migration(fresh: Any) -> None:
    db, backend, run = fresh
    backend.migrate(db)
    run("update verity_schema_migrations set checksum = 'x' where version = 1")
    run("insert into verity_schema_migrations values (99, 'future', 'y', 0)")
    problems = backend.status(db).problems
    assert problems == (
        "migration 1 (initial) was changed after it ran",
        "migration 99 (future) is newer than this Verity",
    )


def test_both_backends_ship_the_same_numbered_migrations() -> None:
    assert [(m.version, m.name) for m in PG_MIGRATIONS] == [
        (m.version, m.name) for m in SQLITE_MIGRATIONS
    ]
