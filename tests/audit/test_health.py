"""``AuditLog.health()``: a writer that cannot write is reported, and recovers by itself.

The stores are broken for real: another connection holds SQLite's write lock (appends
fail after the busy timeout, or hang while it is long), the PostgreSQL table is renamed
away or locked by another session. Health must turn not-ok within ``unhealthy_after``,
say why in a fixed sentence, and come back once the store works, with no new event
(the idle writer probes), leaving a chain that verifies.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from verity.audit import (
    AuditHealth,
    AuditLog,
    AuditStore,
    AuditWriteError,
    CheckpointSigner,
    load_public_key,
    public_key_path,
    verify,
)
from verity.audit.postgres import PostgresStore
from verity.audit.sqlite import SQLiteStore

from .conftest import sample_events


def fast_log(store: AuditStore, **options: Any) -> AuditLog:
    """A log that turns unhealthy after 0.5 s and probes every 0.05 s while failing."""
    return AuditLog(store, unhealthy_after=0.5, probe_seconds=0.05, **options)


def wait_for(check: Callable[[], bool], *, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {within} s")
        time.sleep(0.02)


@contextmanager
def sqlite_write_lock(path: Path) -> Iterator[None]:
    """Another connection holds the database's write lock (as a stuck process would)."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("begin immediate")
    try:
        yield
    finally:
        other.execute("rollback")
        other.close()


def probe_rows(path: Path) -> list[tuple[int, int]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("select id, time_ms from audit_probe").fetchall()
    finally:
        conn.close()


def test_a_healthy_log_is_ok_and_never_probes(tmp_path: Path) -> None:
    with fast_log(SQLiteStore(tmp_path / "a.db")) as log:
        assert log.health() == AuditHealth(True, "ok", "")
        log.append_many(sample_events(3))
        time.sleep(0.2)
        assert log.health().ok
    assert probe_rows(tmp_path / "a.db") == []  # probes only while writes fail


def test_failing_writes_turn_unhealthy_then_recover_without_traffic(
    tmp_path: Path, signer: CheckpointSigner, key_path: Path
) -> None:
    path = tmp_path / "a.db"
    log = fast_log(SQLiteStore(path, timeout=0.1), signer=signer)
    log.append_many(sample_events(2))
    with sqlite_write_lock(path):
        with pytest.raises(AuditWriteError, match="locked"):
            log.append(sample_events(1)[0])
        first = log.health()
        assert first.ok
        assert first.status == "degraded"
        wait_for(lambda: log.health().status == "failing")
        failing = log.health()
        assert not failing.ok
        assert failing.reason == "audit log writes are failing"
        assert str(path) not in repr(failing)
        assert "locked" not in repr(failing)
    wait_for(lambda: log.health().ok)  # the idle writer's probe got through
    assert log.health() == AuditHealth(True, "ok", "")
    assert len(probe_rows(path)) == 1
    log.append_many(sample_events(2))
    log.close()
    store = SQLiteStore(path, create=False)
    try:
        report = verify(store, load_public_key(public_key_path(key_path)))
    finally:
        store.close()
    assert report.ok
    assert report.records == 4


def test_failing_probes_are_paced_not_a_busy_loop(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    attempts: list[float] = []

    class CountingStore(SQLiteStore):
        def probe(self) -> None:
            attempts.append(time.monotonic())
            super().probe()

    log = AuditLog(CountingStore(path, timeout=0.05), unhealthy_after=0.3, probe_seconds=0.1)
    with sqlite_write_lock(path):
        with pytest.raises(AuditWriteError):
            log.append(sample_events(1)[0])
        time.sleep(0.6)
    log.close()
    # each probe waits out the 0.05 s busy timeout, then 0.1 s until the next one
    assert 2 <= len(attempts) <= 6


def test_a_commit_that_hangs_is_stalled_then_recovers(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    log = fast_log(SQLiteStore(path, timeout=10))
    done = threading.Event()

    def produce() -> None:
        log.append(sample_events(1)[0])
        done.set()

    producer = threading.Thread(target=produce, daemon=True)
    with sqlite_write_lock(path):
        producer.start()
        wait_for(lambda: log.health().status == "stalled")
        assert log.health().reason == "audit log writes are not completing"
        assert not done.is_set()
    producer.join(5)
    assert done.is_set()  # the lock went away: the waiting commit went through
    assert log.health().ok
    log.close()


def test_a_full_queue_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    log = AuditLog(SQLiteStore(path, timeout=10), max_pending=1, unhealthy_after=30)
    with sqlite_write_lock(path):
        threads = [
            threading.Thread(target=log.append, args=(event,), daemon=True)
            for event in sample_events(2)
        ]
        for thread in threads:
            thread.start()
            time.sleep(0.1)  # the first is committing (blocked), the second waits in queue
        wait_for(lambda: log.health().status == "full")
        assert not log.health().ok
    for thread in threads:
        thread.join(5)
    wait_for(lambda: log.health().ok)
    log.close()


class _CrashingLog(AuditLog):
    def _sign_for(self, count: int) -> Any:
        raise RuntimeError("writer bug")


def test_a_dead_writer_is_stopped_and_a_closed_log_is_closed(tmp_path: Path) -> None:
    crashed = _CrashingLog(SQLiteStore(tmp_path / "a.db"))
    with pytest.raises(AuditWriteError):
        crashed.append(sample_events(1)[0], timeout=5)
    wait_for(lambda: crashed.health().status == "stopped")
    assert crashed.health().reason == "the audit log writer has stopped"
    assert "writer bug" not in repr(crashed.health())
    crashed.close()
    log = AuditLog(SQLiteStore(tmp_path / "b.db"))
    log.close()
    assert log.health() == AuditHealth(False, "closed", "the audit log is closed")


def _pg(dsn: str, schema: str, sql: str) -> None:
    with psycopg.connect(dsn, autocommit=True, options=f"-c search_path={schema}") as conn:
        conn.execute(sql.encode())


def test_postgres_table_gone_fails_then_recovers(postgres_dsn: str, pg_schema: str) -> None:
    log = fast_log(PostgresStore(postgres_dsn, schema=pg_schema))
    log.append_many(sample_events(2))
    _pg(postgres_dsn, pg_schema, "alter table audit_log rename to audit_log_away")
    try:
        with pytest.raises(AuditWriteError):
            log.append(sample_events(1)[0])
        wait_for(lambda: log.health().status == "failing")
    finally:
        _pg(postgres_dsn, pg_schema, "alter table audit_log_away rename to audit_log")
    wait_for(lambda: log.health().ok)
    log.append_many(sample_events(1))
    log.close()
    store = PostgresStore(postgres_dsn, schema=pg_schema)
    try:
        assert verify(store, None).ok
        assert store.count() == 3
    finally:
        store.close()


def test_postgres_lock_held_elsewhere_is_stalled(postgres_dsn: str, pg_schema: str) -> None:
    log = fast_log(PostgresStore(postgres_dsn, schema=pg_schema))
    options = f"-c search_path={pg_schema}"
    with psycopg.connect(postgres_dsn, options=options) as other:
        other.execute("lock table audit_log in access exclusive mode")
        producer = threading.Thread(target=log.append, args=(sample_events(1)[0],), daemon=True)
        producer.start()
        wait_for(lambda: log.health().status == "stalled")
        other.rollback()
    producer.join(5)
    assert not producer.is_alive()
    wait_for(lambda: log.health().ok)
    log.close()
