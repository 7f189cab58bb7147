"""Revocation delivery delays and the health of the shared channels (``Stores``)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from verity.config import StoreConfig
from verity.store import open_stores
from verity.store.delivery import BUCKETS, DeliveryStats, TimedRevocations
from verity.store.records import Revocation, RevocationKind


def test_delays_land_in_cumulative_buckets_and_skew_counts_as_zero() -> None:
    stats = DeliveryStats()
    for seconds in (0.0004, 0.003, 0.003, 0.2, 30.0, -1.0):
        stats.observe(seconds)
    snapshot = stats.snapshot()
    counts = dict(snapshot.buckets)
    assert snapshot.count == 6
    assert counts[0.001] == 2  # 0.4 ms and the negative (clock skew) one
    assert counts[0.005] == 4
    assert counts[0.25] == 5
    assert counts[10.0] == 5
    assert counts[float("inf")] == 6
    assert snapshot.total_seconds == pytest.approx(0.0004 + 0.006 + 0.2 + 30.0)
    assert [bound for bound, _ in snapshot.buckets] == [*BUCKETS, float("inf")]


def test_each_delivery_is_timed_logged_without_its_value_and_handed_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    received: list[Revocation] = []
    arrived = threading.Event()
    with open_stores(StoreConfig(url=f"sqlite:///{tmp_path}/v.db")) as stores:
        assert isinstance(stores.revocations, TimedRevocations)

        def on_revocation(revocation: Revocation) -> None:
            received.append(revocation)
            arrived.set()

        subscription = stores.revocations.subscribe(on_revocation)
        with caplog.at_level(logging.INFO, logger="verity.store"):
            stores.revocations.revoke(
                RevocationKind.SESSION, "secret-session-id", expires=time.time() + 60
            )
            assert arrived.wait(5)
        subscription.close()
        # a Redis that stops: tests/e2e/test_multinode.py (a private redis-server, killed)
        assert [r.value for r in received] == ["secret-session-id"]
        assert stores.deliveries.snapshot().count == 1
        assert "revocation delivered: kind=session delay_ms=" in caplog.text
        assert "secret-session-id" not in caplog.text
        # reads go to the wrapped store
        assert stores.revocations.is_revoked(RevocationKind.SESSION, "secret-session-id")
        assert len(stores.revocations.active()) == 1


def test_a_single_sqlite_node_has_no_shared_channels(tmp_path: Path) -> None:
    with open_stores(StoreConfig(url=f"sqlite:///{tmp_path}/v.db")) as stores:
        assert stores.health() == {}
        assert not stores.degraded


def test_shared_channels_report_up_once_subscribed(
    postgres_dsn: str, pg_schema: str, redis_url: str, redis_prefix: str
) -> None:
    config = StoreConfig(url=postgres_dsn, redis_url=redis_url)
    with open_stores(config, schema=pg_schema, redis_prefix=redis_prefix) as stores:
        assert stores.health() == {"redis": True}  # nobody listens on PostgreSQL yet
        subscription = stores.revocations.subscribe(lambda revocation: None)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and stores.health() != {
            "postgresql": True, "redis": True,
        }:  # fmt: skip
            time.sleep(0.05)
        assert stores.health() == {"postgresql": True, "redis": True}
        assert not stores.degraded
        subscription.close()
    # a Redis that stops: tests/e2e/test_multinode.py (a private redis-server, killed)


def test_a_revocation_is_timed_once_per_node_whatever_the_number_of_subscribers(
    tmp_path: Path,
) -> None:
    arrivals: list[str] = []

    def subscriber(name: str) -> Callable[[Revocation], None]:
        return lambda revocation: arrivals.append(name)

    with open_stores(StoreConfig(url=f"sqlite:///{tmp_path}/v.db")) as stores:
        first = stores.revocations.subscribe(subscriber("sessions"))
        second = stores.revocations.subscribe(subscriber("tokens"))
        stores.revocations.revoke(RevocationKind.SUBJECT, "alice", expires=time.time() + 60)
        deadline = time.monotonic() + 5
        while len(arrivals) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        first.close()
        second.close()
        assert sorted(arrivals) == ["sessions", "tokens"]  # every subscriber is served
        assert stores.deliveries.snapshot().count == 1  # the node is timed once
