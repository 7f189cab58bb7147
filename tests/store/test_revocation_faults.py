"""Revocations still arrive when a channel fails: real refused connections, killed sessions."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest

from verity.store import RevocationKind, postgres
from verity.store.fanout import FanoutRevocations
from verity.store.redis import RedisRevocations, connect

from .conftest import dead_url
from .test_revocations import Inbox

SESSION = RevocationKind.SESSION


def test_with_redis_down_revocations_still_reach_subscribers_through_postgres(
    pg_db: postgres.PostgresDatabase,
) -> None:
    url = dead_url("redis")
    store = FanoutRevocations(
        postgres.PostgresRevocations(pg_db), RedisRevocations(connect(url, timeout=0.5), url=url)
    )
    inbox = Inbox()
    store.subscribe(inbox)  # does not wait for Redis
    sent = time.perf_counter()
    stored = store.revoke(SESSION, "s1", expires=time.time() + 60)
    assert inbox.wait_for(1) == [stored]
    assert inbox.items[0][0] - sent < 1.0
    assert store.degraded
    assert store.is_revoked(SESSION, "s1")
    store.close()


def test_the_postgres_listener_replays_what_it_missed_while_disconnected(
    pg_db: postgres.PostgresDatabase, postgres_dsn: str
) -> None:
    listening = postgres.PostgresRevocations(pg_db)
    inbox = Inbox()
    listening.subscribe(inbox)
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        killed = admin.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity "
            "where query ilike 'listen %%' and query like %s",
            (f"%{pg_db.channel}%",),
        ).fetchall()
    assert killed == [(True,)]
    stored = postgres.PostgresRevocations(pg_db).revoke(SESSION, "s1", expires=time.time() + 60)
    assert inbox.wait_for(1, timeout=5) == [stored]
    listening.close()


def test_the_redis_subscriber_resubscribes_and_replays(redis_url: str, redis_prefix: str) -> None:
    name = "verity-test-" + redis_prefix.split(":")[1]
    client = connect(redis_url)
    client.connection_pool.connection_kwargs["client_name"] = name
    listening = RedisRevocations(client, url=redis_url, prefix=redis_prefix)
    inbox = Inbox()
    listening.subscribe(inbox)
    other = connect(redis_url)
    ids = [c["id"] for c in other.client_list(_type="pubsub") if c.get("name") == name]
    assert len(ids) == 1
    other.client_kill_filter(_id=ids[0])
    stored = RedisRevocations(other, url=redis_url, prefix=redis_prefix).revoke(
        SESSION, "s1", expires=time.time() + 60
    )
    assert inbox.wait_for(1, timeout=5) == [stored]
    listening.close()
    client.close()
    other.close()


@pytest.mark.parametrize("backend", ["postgresql", "redis"])
def test_malformed_notifications_are_ignored(request: pytest.FixtureRequest, backend: str) -> None:
    store: Any
    if backend == "postgresql":
        db = request.getfixturevalue("pg_db")
        store = postgres.PostgresRevocations(db)

        def inject(payload: str) -> None:
            with db.connection() as conn:
                conn.execute("select pg_notify(%s, %s)", (db.channel, payload))
    else:
        url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
        client = connect(url)
        store = RedisRevocations(client, url=url, prefix=prefix)

        def inject(payload: str) -> None:
            client.publish(store.channel, payload)

    inbox = Inbox()
    store.subscribe(inbox)
    for payload in ["not json", "[]", '{"kind": "session"}', '{"kind": "x", "value": 1}']:
        inject(payload)
    stored = store.revoke(SESSION, "s1", expires=time.time() + 60)
    assert inbox.wait_for(1) == [stored]
    store.close()
