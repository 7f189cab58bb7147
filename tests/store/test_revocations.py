"""RevocationStore behaviour on every backend: storage semantics and notification."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from verity.store import Revocation, RevocationKind

from .conftest import REVOCATION_BACKENDS, _revocations

T = 1_000_000.0
SESSION = RevocationKind.SESSION


def test_a_revocation_is_in_force_until_it_expires(revocations: Any) -> None:
    stored = revocations.revoke(SESSION, "s1", expires=T + 60, reason="logout", now=T)
    assert (stored.kind, stored.value, stored.revoked_at, stored.reason) == (
        SESSION,
        "s1",
        T,
        "logout",
    )
    assert revocations.lookup(SESSION, "s1", now=T + 59) == stored
    assert revocations.is_revoked(SESSION, "s1", now=T + 59)
    assert not revocations.is_revoked(SESSION, "s1", now=T + 60)
    assert not revocations.is_revoked(RevocationKind.JTI, "s1", now=T)


def test_revoking_again_extends_and_never_shortens(revocations: Any) -> None:
    revocations.revoke(RevocationKind.SUBJECT, "alice", expires=T + 100, now=T)
    later = revocations.revoke(RevocationKind.SUBJECT, "alice", expires=T + 50, now=T + 10)
    assert (later.revoked_at, later.expires) == (T + 10, T + 100)
    assert revocations.lookup(RevocationKind.SUBJECT, "alice", now=T + 99) == later


def test_active_lists_what_is_in_force_and_purge_forgets_the_rest(revocations: Any) -> None:
    revocations.revoke(SESSION, "short", expires=T + 10, now=T)
    revocations.revoke(RevocationKind.TOKEN, "ab" * 32, expires=T + 100, now=T + 1)
    assert [r.value for r in revocations.active(now=T + 5)] == ["short", "ab" * 32]
    assert [r.value for r in revocations.active(now=T + 10)] == ["ab" * 32]
    assert revocations.purge_expired(now=T + 10) == 1
    assert revocations.is_revoked(RevocationKind.TOKEN, "ab" * 32, now=T + 10)


def test_arguments_are_checked(revocations: Any) -> None:
    with pytest.raises(ValueError, match="expires"):
        revocations.revoke(SESSION, "s1", expires=T, now=T)
    with pytest.raises(ValueError, match="value"):
        revocations.revoke(SESSION, "", expires=T + 1, now=T)


@pytest.fixture(params=REVOCATION_BACKENDS)
def two_nodes(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Any]]:
    """Two store objects as two nodes would have them (SQLite: one process, one object)."""
    first = _revocations(request, request.param)
    if request.param == "sqlite":
        yield first, first
        first.close()
        return
    second = _revocations_on_new_connections(request, request.param)
    yield first, second
    first.close()
    second.close()


def _revocations_on_new_connections(request: pytest.FixtureRequest, name: str) -> Any:
    from verity.store import postgres
    from verity.store.fanout import FanoutRevocations
    from verity.store.redis import RedisRevocations, connect

    prefix = request.getfixturevalue("redis_prefix") if "redis" in name else ""
    if "postgresql" in name:
        db = postgres.PostgresDatabase(
            request.getfixturevalue("postgres_dsn"), schema=request.getfixturevalue("pg_schema")
        )
        request.addfinalizer(db.close)
        durable = postgres.PostgresRevocations(db)
        if name == "postgresql":
            return durable
    url = request.getfixturevalue("redis_url")
    client = connect(url)
    request.addfinalizer(client.close)
    bus = RedisRevocations(client, url=url, prefix=prefix)
    return bus if name == "redis" else FanoutRevocations(durable, bus)


class Inbox:
    """Collects deliveries with their arrival time."""

    def __init__(self) -> None:
        self.items: list[tuple[float, Revocation]] = []
        self.changed = threading.Condition()

    def __call__(self, revocation: Revocation) -> None:
        with self.changed:
            self.items.append((time.perf_counter(), revocation))
            self.changed.notify_all()

    def wait_for(self, count: int, timeout: float = 3.0) -> list[Revocation]:
        with self.changed:
            self.changed.wait_for(lambda: len(self.items) >= count, timeout)
            return [item for _, item in self.items]


def test_a_revocation_reaches_another_node_within_a_second(two_nodes: tuple[Any, Any]) -> None:
    node_a, node_b = two_nodes
    inbox = Inbox()
    subscription = node_b.subscribe(inbox)
    latencies = []
    for i in range(20):
        sent = time.perf_counter()
        stored = node_a.revoke(SESSION, f"s{i}", expires=time.time() + 60)
        assert inbox.wait_for(i + 1)[-1] == stored
        latencies.append(inbox.items[-1][0] - sent)
    time.sleep(0.05)
    assert len(inbox.items) == 20  # exactly once each, also through two channels
    assert max(latencies) < 1.0
    subscription.close()
    node_a.revoke(SESSION, "after-close", expires=time.time() + 60)
    time.sleep(0.2)
    assert len(inbox.items) == 20


def test_the_sqlite_revision_changes_on_every_write_of_another_connection(
    tmp_path: Any,
) -> None:
    """``revision()`` is the change marker a node watches instead of re-reading
    ``active()``: it moves when another connection (another process, e.g. ``verity
    revoke``) stores, extends or purges a revocation, and stays put when only other
    tables were written or nothing was."""
    from verity.store import SessionRecord, sqlite

    here_db = sqlite.SqliteDatabase(tmp_path / "v.db")
    there_db = sqlite.SqliteDatabase(tmp_path / "v.db")
    sqlite.migrate(here_db)
    here, there = sqlite.SqliteRevocations(here_db), sqlite.SqliteRevocations(there_db)
    try:
        seen = [here.revision()]
        assert here.revision() == seen[-1]  # nothing written: unchanged
        there.revoke(RevocationKind.SUBJECT, "alice", expires=T + 100, now=T)
        seen.append(here.revision())
        there.revoke(RevocationKind.SUBJECT, "alice", expires=T + 100, now=T + 5)  # later at
        seen.append(here.revision())
        there.revoke(RevocationKind.SUBJECT, "alice", expires=T + 200, now=T + 5)  # longer
        seen.append(here.revision())
        there.revoke(SESSION, "s1", expires=T + 10, now=T)
        seen.append(here.revision())
        assert there.purge_expired(now=T + 50) == 1
        seen.append(here.revision())
        assert all(a != b for a, b in itertools.pairwise(seen)), seen  # each write moved it
        sqlite.SqliteSessions(there_db).create(
            SessionRecord(id="x" * 64, user_id="bob", created=T, expires=T + 60, last_seen=T)
        )  # another table: the database changed, the revocations did not
        assert here.revision() == seen[-1]
    finally:
        here_db.close()
        there_db.close()
