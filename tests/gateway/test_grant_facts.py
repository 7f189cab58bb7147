"""``GrantFacts``: a principal's active JIT grants from a real SQLite ``GrantStore``, cached
per principal for a bounded time and size, ending exactly at ``ends_at``, and failing
closed (no grants, no exception) when the store does not answer."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from verity.gateway.facts import FactQuery
from verity.gateway.grant_facts import GrantFacts
from verity.model import AccessRequest, HttpTarget, NetworkContext, Principal
from verity.policy import compile_policy, load_policy
from verity.store import Grant, sqlite

pytestmark = pytest.mark.anyio
T0 = 1_800_000_000.0
POLICY = """
version: 1
rules:
  - name: prod-db-with-jit
    resources: [{host: db.test}]
    allow: {jit: prod-db}
"""


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite.SqliteDatabase]:
    database = sqlite.SqliteDatabase(tmp_path / "verity.db")
    sqlite.migrate(database)
    yield database
    database.close()


@pytest.fixture
def store(db: sqlite.SqliteDatabase) -> sqlite.SqliteGrants:
    return sqlite.SqliteGrants(db)


def query(principal: str = "alice") -> FactQuery:
    return FactQuery(Principal(principal), HttpTarget("db.test"), NetworkContext(), "db")


def approved(store: sqlite.SqliteGrants, *, at: float, seconds: float, name: str = "prod-db",
             principal: str = "alice") -> Grant:  # fmt: skip
    grant = store.request(principal, name, duration=seconds, reason="incident", now=at - 10)
    return store.approve(grant.id, approver="bob", now=at)


async def test_gives_the_active_grants_by_name_with_their_end(store: sqlite.SqliteGrants) -> None:
    grant = approved(store, at=T0 - 60, seconds=3600)
    store.request("alice", "pending-one", duration=60, reason="", now=T0 - 5)  # not approved
    denied = store.request("alice", "denied-one", duration=60, reason="", now=T0 - 5)
    store.deny(denied.id, approver="bob", now=T0 - 4)
    approved(store, at=T0 - 60, seconds=3600, principal="carol")  # someone else's
    facts = await GrantFacts(store, clock=Clock()).facts(query())
    assert dict(facts.grants) == {"prod-db": grant.expires}
    assert grant.expires == T0 + 3540


async def test_anonymous_callers_hold_no_grants_and_cost_no_query(
    store: sqlite.SqliteGrants,
) -> None:
    source = GrantFacts(store, clock=Clock())
    anonymous = FactQuery(Principal.anonymous(), HttpTarget("db.test"), NetworkContext(), "db")
    assert dict((await source.facts(anonymous)).grants) == {}
    assert source.queries == 0


async def test_two_grants_of_one_name_count_until_the_later_end(
    store: sqlite.SqliteGrants,
) -> None:
    approved(store, at=T0 - 60, seconds=600)
    later = approved(store, at=T0 - 30, seconds=1200)
    facts = await GrantFacts(store, clock=Clock()).facts(query())
    assert dict(facts.grants) == {"prod-db": later.expires}


async def test_cached_per_principal_for_the_ttl_then_asked_again(
    store: sqlite.SqliteGrants,
) -> None:
    clock = Clock()
    source = GrantFacts(store, ttl_seconds=2.0, clock=clock)
    assert dict((await source.facts(query())).grants) == {}
    grant = approved(store, at=T0 + 0.5, seconds=600)  # approved after the first look
    clock.now = T0 + 1.9
    assert dict((await source.facts(query())).grants) == {}, "served from the cache"
    assert source.queries == 1
    clock.now = T0 + 2.0
    assert dict((await source.facts(query())).grants) == {"prod-db": grant.expires}
    assert source.queries == 2


async def test_a_clock_going_back_does_not_stretch_the_cache(store: sqlite.SqliteGrants) -> None:
    clock = Clock()
    source = GrantFacts(store, ttl_seconds=2.0, clock=clock)
    await source.facts(query())
    clock.now = T0 - 30
    await source.facts(query())
    assert source.queries == 2


async def test_the_grant_ends_exactly_at_its_end_even_from_the_cache(
    store: sqlite.SqliteGrants,
) -> None:
    grant = approved(store, at=T0 - 599, seconds=600)  # ends at T0 + 1
    assert grant.expires == T0 + 1
    engine = compile_policy(load_policy(POLICY))
    clock = Clock()
    source = GrantFacts(store, ttl_seconds=5.0, clock=clock)

    async def decide(at: float) -> bool:
        clock.now = at
        facts = await source.facts(query())
        request = AccessRequest(Principal("alice"), time=at, http=HttpTarget("db.test"),
                                grants=facts.grants)  # fmt: skip
        return engine.decide(request).allowed

    assert await decide(T0 + 0.999)
    assert not await decide(T0 + 1), "at ends_at the grant is over"
    assert source.queries == 1, "the second answer came from the cache, trimmed"
    clock.now = T0 + 1
    assert dict((await source.facts(query())).grants) == {}
    denied = engine.decide(
        AccessRequest(Principal("alice"), time=T0 + 1, http=HttpTarget("db.test"))
    )
    assert denied.reasons[0].code == "jit.grant"
    assert denied.reasons[0].hint == "request just-in-time access 'prod-db'"


async def test_a_store_that_is_down_means_no_grants_not_an_error(
    db: sqlite.SqliteDatabase, store: sqlite.SqliteGrants, caplog: pytest.LogCaptureFixture
) -> None:
    approved(store, at=T0 - 60, seconds=600)
    clock = Clock()
    source = GrantFacts(store, ttl_seconds=2.0, clock=clock)
    db.close()  # every query now raises StoreUnavailableError
    with caplog.at_level("WARNING", logger="verity.security"):
        facts = await source.facts(query())
    assert dict(facts.grants) == {}
    assert "grants.unavailable" in caplog.text
    assert "StoreUnavailableError" in caplog.text
    clock.now = T0 + 1
    await source.facts(query())
    assert source.queries == 1, "the failure is cached like an answer: one query per TTL"


class Reconnecting:
    """A GrantStore whose database comes back: a closed one, then a working one."""

    def __init__(self, down: sqlite.SqliteGrants, up: sqlite.SqliteGrants) -> None:
        self.current = down
        self.up = up

    def active(self, principal: str, *, at: float | None = None) -> list[Grant]:
        return self.current.active(principal, at=at)


async def test_a_store_that_recovers_is_used_after_the_ttl(
    tmp_path: Path, store: sqlite.SqliteGrants
) -> None:
    grant = approved(store, at=T0 - 60, seconds=600)
    broken = sqlite.SqliteDatabase(tmp_path / "verity.db")
    broken.close()
    clock = Clock()
    backend = Reconnecting(sqlite.SqliteGrants(broken), store)
    source = GrantFacts(backend, ttl_seconds=2.0, clock=clock)  # type: ignore[arg-type]
    assert dict((await source.facts(query())).grants) == {}
    backend.current = backend.up  # the database is back (same file, a working connection)
    clock.now = T0 + 2
    assert dict((await source.facts(query())).grants) == {"prod-db": grant.expires}


class HangingStore:
    """A GrantStore whose database never answers (until released)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def active(self, principal: str, *, at: float | None = None) -> list[Grant]:
        self.calls += 1
        self.release.wait(10)
        return []


async def test_a_store_that_hangs_means_no_grants_after_the_timeout() -> None:
    hanging = HangingStore()
    source = GrantFacts(hanging, timeout_seconds=0.2, clock=Clock())  # type: ignore[arg-type]
    try:
        started = asyncio.get_running_loop().time()
        facts = await source.facts(query())
        waited = asyncio.get_running_loop().time() - started
    finally:
        hanging.release.set()
    assert dict(facts.grants) == {}
    assert 0.15 < waited < 2


async def test_concurrent_requests_of_one_principal_share_one_query() -> None:
    hanging = HangingStore()
    source = GrantFacts(hanging, timeout_seconds=5, clock=Clock())  # type: ignore[arg-type]

    async def release_soon() -> None:
        await asyncio.sleep(0.2)
        hanging.release.set()

    results = await asyncio.gather(release_soon(), *(source.facts(query()) for _ in range(20)))
    assert all(dict(r.grants) == {} for r in results[1:])
    assert hanging.calls == 1
    assert source.queries == 1


async def test_a_cancelled_request_does_not_cancel_the_shared_query(
    store: sqlite.SqliteGrants,
) -> None:
    grant = approved(store, at=T0 - 60, seconds=600)
    source = GrantFacts(store, clock=Clock())
    first = asyncio.ensure_future(source.facts(query()))
    second = asyncio.ensure_future(source.facts(query()))
    await asyncio.sleep(0)
    first.cancel()
    assert dict((await second).grants) == {"prod-db": grant.expires}


async def test_the_cache_holds_at_most_max_entries_principals(store: sqlite.SqliteGrants) -> None:
    source = GrantFacts(store, max_entries=2, clock=Clock())
    for name in ("alice", "bob", "carol"):
        await source.facts(query(name))
    assert source.queries == 3
    await source.facts(query("carol"))
    await source.facts(query("bob"))
    assert source.queries == 3, "the two most recent are cached"
    await source.facts(query("alice"))
    assert source.queries == 4, "the least recently used was evicted"
    assert source.cached == 2


async def test_invalidate_forgets_a_principal(store: sqlite.SqliteGrants) -> None:
    source = GrantFacts(store, clock=Clock())
    await source.facts(query())
    grant = approved(store, at=T0, seconds=60)
    source.invalidate("alice")
    assert dict((await source.facts(query())).grants) == {"prod-db": grant.expires}


def test_settings_are_checked(store: sqlite.SqliteGrants) -> None:
    with pytest.raises(ValueError, match="max_entries"):
        GrantFacts(store, max_entries=0)
    with pytest.raises(ValueError, match="timeout_seconds"):
        GrantFacts(store, timeout_seconds=0)
