"""Concurrent writers on one session, grant, key or schema: real threads and processes.

Correctness comes from the databases (row locks, single-statement updates, the SQLite
write lock, advisory locks, unique constraints), never from timing.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from typing import Any

import pytest

from verity.store import GrantStateError, GrantStatus, SessionRecord, postgres, sqlite

from ._workers import touch_then_rotate

T = 1_000_000.0


def _session() -> SessionRecord:
    return SessionRecord("s1", "alice", T, T, T + 3600, data={"start": True})


def _race(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` on ``count`` threads released together; results (or exceptions)."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_touches_lose_no_update(sessions: Any) -> None:
    sessions.create(_session())

    def touch(i: int) -> None:
        for j in range(10):
            sessions.touch("s1", now=T + i * 10 + j, expires=T + 3600 + i, data={f"t{i}": j})

    _race(8, touch)
    final = sessions.get("s1", now=T)
    assert final.version == 1 + 8 * 10
    assert (final.last_seen, final.expires) == (T + 79, T + 3607)
    assert dict(final.data) == {"start": True, **{f"t{i}": 9 for i in range(8)}}


def test_concurrent_rotations_leave_exactly_one_session(sessions: Any) -> None:
    sessions.create(_session())
    results = _race(8, lambda i: sessions.rotate("s1", f"new{i}", now=T + 1, expires=T + 900))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert not any(isinstance(r, Exception) for r in results)
    assert sessions.list_for_user("alice", now=T + 1) == winners


def test_concurrent_approve_and_deny_decide_once(grants: Any) -> None:
    grant = grants.request("alice", "prod-db", duration=60, now=T)
    deciders = [grants.approve, grants.deny] * 3
    results = _race(6, lambda i: deciders[i](grant.id, approver=f"admin{i}", now=T + 1))
    decided = [r for r in results if not isinstance(r, Exception)]
    assert len(decided) == 1
    assert all(isinstance(r, GrantStateError) for r in results if r is not decided[0])
    assert grants.get(grant.id).status in (GrantStatus.APPROVED, GrantStatus.DENIED)


def test_concurrent_key_versions_are_distinct(keys: Any) -> None:
    results = _race(6, lambda i: keys.put("signing", bytes([i + 1]) * 32, algorithm="HS256"))
    assert sorted(r.version for r in results) == [1, 2, 3, 4, 5, 6]
    assert [k.version for k in keys.versions("signing")] == [1, 2, 3, 4, 5, 6]


def test_concurrent_postgres_migrations_apply_each_version_once(
    postgres_dsn: str, pg_schema: str
) -> None:
    databases = [postgres.PostgresDatabase(postgres_dsn, schema=pg_schema) for _ in range(4)]
    results = _race(4, lambda i: postgres.migrate(databases[i]))
    assert sorted(v for r in results for v in r) == [1]
    assert postgres.status(databases[0]).pending == ()
    for db in databases:
        db.close()


def test_concurrent_sqlite_migrations_apply_each_version_once(tmp_path: Any) -> None:
    """Regression: four connections opening one fresh file could get "database is
    locked" from the WAL switch (about 1 round in 12 before the fix); 25 rounds."""
    for round_ in range(25):
        databases = [sqlite.SqliteDatabase(tmp_path / f"fresh{round_}.db") for _ in range(4)]
        results = _race(4, lambda i, dbs=databases: sqlite.migrate(dbs[i]))
        assert sorted(v for r in results for v in r) == [1], results
        for db in databases:
            db.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_processes_refreshing_one_session_neither_corrupt_nor_duplicate_it(
    request: pytest.FixtureRequest, backend: str
) -> None:
    """Three OS processes (as three nodes): touches all land, one rotation wins."""
    processes, touches = 3, 15
    if backend == "sqlite":
        db: Any = request.getfixturevalue("sqlite_db")
        store: Any = sqlite.SqliteSessions(db)
        target = {"path": db.path}
    else:
        db = request.getfixturevalue("pg_db")
        store = postgres.PostgresSessions(db)
        target = {"dsn": request.getfixturevalue("postgres_dsn"), "schema": db.schema}
    store.create(_session())
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    workers = [
        context.Process(
            target=touch_then_rotate, args=(backend, target, i, touches, barrier, results)
        )
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [w.exitcode for w in workers] == [0] * processes
    outcomes = [results.get(timeout=5) for _ in range(processes)]
    winners = [worker for worker, won in outcomes if won]
    assert len(winners) == 1
    (final,) = store.list_for_user("alice", now=T)
    assert final.id == f"s1-by-{winners[0]}"
    assert final.version == 1 + processes * touches + 1
    assert dict(final.data) == {"start": True, **{f"w{i}": touches - 1 for i in range(3)}}
