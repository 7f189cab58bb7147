"""open_stores: backends chosen from the configuration; failures are clear and masked."""

from __future__ import annotations

import time
from typing import Any

import pytest

from verity.config import StoreConfig
from verity.store import (
    RevocationKind,
    SessionRecord,
    StoreUnavailableError,
    open_stores,
)
from verity.store.delivery import TimedRevocations
from verity.store.factory import sqlite_path
from verity.store.fanout import FanoutRevocations
from verity.store.memory import MemoryTokenCache
from verity.store.redis import RedisCounters, RedisTokenCache

from .conftest import dead_url


def test_sqlite_is_the_embedded_default(tmp_path: Any) -> None:
    with open_stores(StoreConfig(url=f"sqlite:///{tmp_path}/v.db")) as stores:
        assert (stores.backend, stores.shared) == ("sqlite", None)
        assert isinstance(stores.token_cache, MemoryTokenCache)
        now = time.time()
        stores.sessions.create(SessionRecord("s", "u", now, now, now + 60))
    with open_stores(StoreConfig(url=f"sqlite:///{tmp_path}/v.db")) as stores:
        assert stores.sessions.get("s") is not None  # durable across opens


def test_postgres_with_redis_shares_counters_cache_and_fanout(
    postgres_dsn: str, pg_schema: str, redis_url: str, redis_prefix: str
) -> None:
    config = StoreConfig(url=postgres_dsn, redis_url=redis_url)
    with open_stores(config, schema=pg_schema, redis_prefix=redis_prefix) as stores:
        assert (stores.backend, stores.shared) == ("postgresql", "redis")
        assert isinstance(stores.revocations, TimedRevocations)
        assert isinstance(stores.revocations.inner, FanoutRevocations)
        assert isinstance(stores.counters, RedisCounters)
        assert isinstance(stores.token_cache, RedisTokenCache)
        stores.revocations.revoke(RevocationKind.JTI, "j1", expires=time.time() + 60)
        assert stores.revocations.is_revoked(RevocationKind.JTI, "j1")


def test_unreachable_postgres_fails_fast_with_the_password_masked() -> None:
    started = time.perf_counter()
    with pytest.raises(StoreUnavailableError) as failure:
        open_stores(StoreConfig(url=dead_url("postgresql")))
    assert time.perf_counter() - started < 5
    assert "s3cret-pw" not in str(failure.value)
    assert "***" in str(failure.value)


def test_unreachable_redis_closes_what_was_opened(tmp_path: Any) -> None:
    config = StoreConfig(url=f"sqlite:///{tmp_path}/v.db", redis_url=dead_url("redis"))
    with pytest.raises(StoreUnavailableError) as failure:
        open_stores(config)
    assert "s3cret-pw" not in str(failure.value)


@pytest.mark.parametrize(
    ("url", "path"),
    [("sqlite:///verity.db", "verity.db"), ("sqlite:////var/lib/v.db", "/var/lib/v.db")],
)
def test_sqlite_urls(url: str, path: str) -> None:
    assert str(sqlite_path(url)) == path


@pytest.mark.parametrize("url", ["sqlite://host/x.db", "sqlite:x.db"])
def test_malformed_sqlite_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="sqlite:///PATH"):
        sqlite_path(url)
