"""Backends for the shared store test suite.

Every protocol fixture is parametrized over the backends that implement it; the
PostgreSQL and Redis ones use the real services (``pg_schema``, ``redis_prefix``).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from verity.store import postgres, sqlite
from verity.store.fanout import FanoutRevocations
from verity.store.memory import MemoryTokenCache
from verity.store.redis import RedisCounters, RedisRevocations, RedisTokenCache, connect
from verity.store.redis.client import Client

DURABLE = ["sqlite", "postgresql"]


@pytest.fixture
def sqlite_db(tmp_path: Any) -> Iterator[sqlite.SqliteDatabase]:
    db = sqlite.SqliteDatabase(tmp_path / "verity.db")
    sqlite.migrate(db)
    yield db
    db.close()


@pytest.fixture
def pg_db(postgres_dsn: str, pg_schema: str) -> Iterator[postgres.PostgresDatabase]:
    db = postgres.PostgresDatabase(postgres_dsn, schema=pg_schema, max_size=8)
    postgres.migrate(db)
    yield db
    db.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[Client]:
    client = connect(redis_url)
    yield client
    client.close()


def dead_url(scheme: str) -> str:
    """A URL on 127.0.0.1 where nothing listens (a real refused connection, not a mock)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"{scheme}://verity:s3cret-pw@127.0.0.1:{port}/0"


def _durable(request: pytest.FixtureRequest, classes: dict[str, Callable[[Any], Any]]) -> Any:
    name = request.param
    db = request.getfixturevalue("sqlite_db" if name == "sqlite" else "pg_db")
    return classes[name](db)


@pytest.fixture(params=DURABLE)
def sessions(request: pytest.FixtureRequest) -> Any:
    return _durable(
        request, {"sqlite": sqlite.SqliteSessions, "postgresql": postgres.PostgresSessions}
    )


@pytest.fixture(params=DURABLE)
def devices(request: pytest.FixtureRequest) -> Any:
    return _durable(
        request, {"sqlite": sqlite.SqliteDevices, "postgresql": postgres.PostgresDevices}
    )


@pytest.fixture(params=DURABLE)
def risk(request: pytest.FixtureRequest) -> Any:
    return _durable(request, {"sqlite": sqlite.SqliteRisk, "postgresql": postgres.PostgresRisk})


@pytest.fixture(params=DURABLE)
def grants(request: pytest.FixtureRequest) -> Any:
    return _durable(request, {"sqlite": sqlite.SqliteGrants, "postgresql": postgres.PostgresGrants})


@pytest.fixture(params=DURABLE)
def keys(request: pytest.FixtureRequest) -> Any:
    return _durable(request, {"sqlite": sqlite.SqliteKeys, "postgresql": postgres.PostgresKeys})


@pytest.fixture(params=[*DURABLE, "redis"])
def counters(request: pytest.FixtureRequest) -> Any:
    if request.param == "redis":
        client = request.getfixturevalue("redis_client")
        url = request.getfixturevalue("redis_url")
        return RedisCounters(client, url=url, prefix=request.getfixturevalue("redis_prefix"))
    return _durable(
        request, {"sqlite": sqlite.SqliteCounters, "postgresql": postgres.PostgresCounters}
    )


@pytest.fixture(params=["memory", "redis"])
def token_cache(request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        return MemoryTokenCache()
    client = request.getfixturevalue("redis_client")
    return RedisTokenCache(client, prefix=request.getfixturevalue("redis_prefix"))


def _redis_revocations(request: pytest.FixtureRequest) -> RedisRevocations:
    client = request.getfixturevalue("redis_client")
    url = request.getfixturevalue("redis_url")
    return RedisRevocations(client, url=url, prefix=request.getfixturevalue("redis_prefix"))


def _revocations(request: pytest.FixtureRequest, name: str) -> Any:
    if name == "sqlite":
        return sqlite.SqliteRevocations(request.getfixturevalue("sqlite_db"))
    if name == "postgresql":
        return postgres.PostgresRevocations(request.getfixturevalue("pg_db"))
    if name == "redis":
        return _redis_revocations(request)
    durable = postgres.PostgresRevocations(request.getfixturevalue("pg_db"))
    return FanoutRevocations(durable, _redis_revocations(request))


REVOCATION_BACKENDS = ["sqlite", "postgresql", "redis", "postgresql+redis"]


@pytest.fixture(params=REVOCATION_BACKENDS)
def revocations(request: pytest.FixtureRequest) -> Iterator[Any]:
    store = _revocations(request, request.param)
    yield store
    store.close()
