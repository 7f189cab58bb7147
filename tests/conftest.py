"""Shared fixtures: real PostgreSQL and Redis on 127.0.0.1, isolated per test.

Tests that need a service use these fixtures. When the service is unreachable the test
is skipped with the reason, except under ``VERITY_REQUIRE_SERVICES=1`` (set by CI),
where an unreachable service is a failure.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

import verity.model

# Every ``trusted`` value built during the tests is rebuilt by the checking constructor and
# compared: a caller that breaks a precondition fails its tests (verity.model docstring).
verity.model.CHECK_TRUSTED = True

POSTGRES_DSN = os.environ.get("VERITY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("VERITY_TEST_REDIS", "redis://127.0.0.1:6379/0")


def services_required() -> bool:
    return os.environ.get("VERITY_REQUIRE_SERVICES") == "1"


def service_unavailable(name: str, reason: str) -> NoReturn:
    """Skip (or, under VERITY_REQUIRE_SERVICES=1, fail) a test whose service is missing."""
    message = f"{name} is not reachable: {reason}"
    if services_required():
        pytest.fail(f"{message} (VERITY_REQUIRE_SERVICES=1 makes a missing service a failure)")
    else:  # the only skip in the suite: a missing service, outside CI, with its reason
        pytest.skip(reason=message)


def debian_tool(binary: str, package: str) -> str:
    """``binary``, installing Debian's ``package`` (a pinned ``name=version*``) when it is
    absent; a missing tool that cannot be installed is ``service_unavailable``."""
    name = package.split("=", 1)[0]
    if Path(binary).exists():
        return binary
    if os.geteuid() != 0:
        service_unavailable(name, f"{binary} is absent and installing it needs root")
    install = ["apt-get", "install", "-y", "--no-install-recommends", package]
    for step in (["apt-get", "update"], install):
        result = subprocess.run(step, capture_output=True, timeout=300, check=False)  # noqa: S603
        if step[1] == "install" and result.returncode != 0:
            service_unavailable(name, result.stderr.decode(errors="replace")[-300:])
    if not Path(binary).exists():
        service_unavailable(name, f"apt-get install {package} gave no {binary}")
    return binary


def platform_feature(name: str, present: bool) -> None:
    """A test that needs an OS feature (``fork``, Linux ``/proc``): skipped without it,
    and a failure under VERITY_REQUIRE_SERVICES=1, like a missing service."""
    if not present:
        service_unavailable(name, "this platform does not have it")


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """The DSN of a reachable PostgreSQL (``$VERITY_TEST_POSTGRES``)."""
    try:
        import psycopg

        with psycopg.connect(POSTGRES_DSN, connect_timeout=3) as conn:
            conn.execute("select 1")
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        service_unavailable("PostgreSQL", f"{POSTGRES_DSN}: {exc}")
    return POSTGRES_DSN


@pytest.fixture
def pg_schema(postgres_dsn: str) -> Iterator[str]:
    """A fresh schema for one test (dropped afterwards); tests set ``search_path`` to it."""
    import psycopg

    name = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'create schema "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(f'drop schema "{name}" cascade')


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The URL of a reachable Redis (``$VERITY_TEST_REDIS``)."""
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
        client.ping()
        client.close()
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        service_unavailable("Redis", f"{REDIS_URL}: {exc}")
    return REDIS_URL


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A unique key prefix for one test; its keys are deleted afterwards."""
    import redis

    prefix = f"verity-test:{secrets.token_hex(6)}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)
    client.close()
