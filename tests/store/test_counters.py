"""CounterStore behaviour on every backend: sliding windows, atomic hits."""

from __future__ import annotations

import threading
from typing import Any

import pytest

T = 1_000_000.0


def test_hits_count_within_the_window_only(counters: Any) -> None:
    assert [counters.hit("login:alice", window=10, now=T + i) for i in range(3)] == [1, 2, 3]
    assert counters.count("login:alice", window=10, now=T + 5) == 3
    assert counters.count("login:alice", window=10, now=T + 10) == 2  # (now - window, now]
    assert counters.count("login:alice", window=10, now=T + 11.5) == 1
    assert counters.count("login:alice", window=10, now=T + 12) == 0
    assert counters.hit("login:alice", window=10, now=T + 12) == 1
    assert counters.count("login:bob", window=10, now=T + 12) == 0


def test_reset_forgets_the_key(counters: Any) -> None:
    counters.hit("k", window=60, now=T)
    counters.hit("other", window=60, now=T)
    counters.reset("k")
    assert counters.count("k", window=60, now=T) == 0
    assert counters.count("other", window=60, now=T) == 1


def test_concurrent_hits_each_see_a_distinct_count(counters: Any) -> None:
    threads, per_thread = 4, 15
    seen: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def worker() -> None:
        start.wait()
        for _ in range(per_thread):
            value = counters.hit("burst", window=3600)
            with lock:
                seen.append(value)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    assert sorted(seen) == list(range(1, threads * per_thread + 1))


def test_sql_counters_purge_hits_of_abandoned_keys(request: pytest.FixtureRequest) -> None:
    from verity.store import postgres, sqlite

    for store in (
        sqlite.SqliteCounters(request.getfixturevalue("sqlite_db")),
        postgres.PostgresCounters(request.getfixturevalue("pg_db")),
    ):
        store.hit("old", window=10, now=T)
        store.hit("new", window=10, now=T + 100)
        assert store.purge(before=T + 50) == 1
        assert store.count("new", window=10, now=T + 100) == 1
