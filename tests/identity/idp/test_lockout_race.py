"""Brute force by parallel requests: the account lockout is counted before the password
is checked, atomically in the shared counter store, on every node.

Two providers (nodes) share one store: the SQLite file, a PostgreSQL schema, or
PostgreSQL with the counters in Redis. Forty password guesses for one account arrive at
once, alternating between the nodes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from http.cookiejar import CookieJar
from typing import Any

import pytest

from verity.identity.idp import LockoutPolicy

from .conftest import Clock, Idp, Login, backend, running_idp

LIMIT = 5
PARALLEL = 40
LOCKOUT = LockoutPolicy(window_seconds=600, max_account_failures=LIMIT, max_ip_failures=1000)


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def two_nodes(request: pytest.FixtureRequest, clock: Clock) -> Iterator[tuple[Idp, Idp]]:
    """Nodes A and B whose lockout counters are in SQLite, PostgreSQL or Redis."""
    kind = "sqlite" if request.param == "sqlite" else "postgresql"
    redis = request.param == "redis"
    jar = CookieJar()
    overrides: dict[str, Any] = {"lockout": LOCKOUT}
    with ExitStack() as stack:
        stores_a, storage_a = stack.enter_context(backend(request, kind, redis=redis))
        stores_b, storage_b = stack.enter_context(backend(request, kind, redis=redis))
        a = stack.enter_context(running_idp(stores_a, storage_a, clock, overrides, cookies=jar))
        b = stack.enter_context(
            running_idp(stores_b, storage_b, clock, overrides, issuer=a.issuer, cookies=jar)
        )
        yield a, b


def test_parallel_password_guesses_on_one_account_check_at_most_the_limit(
    two_nodes: tuple[Idp, Idp],
) -> None:
    a, b = two_nodes
    a.add_user("target@example.com")
    logins = []
    for number in range(PARALLEL):  # each guess has its own login form, on either node
        login = Login((a, b)[number % 2])
        assert login.authorize().status_code == 200
        logins.append(login)
    start = threading.Barrier(PARALLEL)

    def guess(number: int) -> int:
        start.wait()
        return logins[number].password("target@example.com", f"wrong guess {number}").status_code

    with ThreadPoolExecutor(PARALLEL) as pool:
        statuses = list(pool.map(guess, range(PARALLEL)))
    checked = statuses.count(401)  # 401: the password was verified (and was wrong)
    assert 1 <= checked <= LIMIT, statuses
    assert statuses.count(429) == PARALLEL - checked, statuses  # refused, never checked
    # the right password after the limit is refused too, on either node
    for node in (a, b):
        late = Login(node)
        late.authorize()
        refused = late.password("target@example.com")
        assert refused.status_code == 429
        assert "code=" not in refused.headers.get("location", "")
