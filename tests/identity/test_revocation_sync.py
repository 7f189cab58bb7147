"""Revocations from the shared store reach token verifiers (warm caches too) and sessions.

Two ``Stores`` on one database stand for two gateway nodes: one revokes, the other's
``RevocationSync`` must make its verifier and its sessions obey. PostgreSQL+Redis deliver
by NOTIFY and pub/sub (the sync's poll is off, so delivery is what is tested); SQLite
across store objects (another process, e.g. ``verity revoke``) relies on the poll.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.e2e.cluster import FaultProxy
from verity.config import StoreConfig
from verity.identity import KeySet, TokenRevokedError, TokenVerifier
from verity.identity.oidc import LoginConfig
from verity.identity.oidc.cookies import CookieSigner
from verity.identity.oidc.sessions import SessionManager
from verity.identity.revocation_sync import (
    WATCH_SQLITE,
    RevocationsUnavailableError,
    RevocationSync,
    record_revocation,
    start_revocation_sync,
)
from verity.model import Principal
from verity.store import (
    Revocation,
    RevocationKind,
    Stores,
    open_stores,
    postgres,
    token_hash,
)
from verity.store.errors import StoreUnavailableError

from .conftest import AUDIENCE, ISSUER, SigningKey, make_config, sign

BOUND = 5.0  # seconds a delivered revocation may take to be obeyed (it takes milliseconds)
TOKEN, JTI, SUBJECT, SESSION = (
    RevocationKind.TOKEN,
    RevocationKind.JTI,
    RevocationKind.SUBJECT,
    RevocationKind.SESSION,
)


class Clock:
    """Real time that a test can move forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def token(
    key: SigningKey, *, subject: str = "alice", jti: str = "jti-1", iat: float | None = None
) -> str:
    issued = int(time.time() if iat is None else iat)
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": subject, "jti": jti, "iat": issued,
               "exp": int(time.time()) + 86400 * 3}  # fmt: skip
    return sign(key, payload)


def wait_until(condition: Callable[[], bool], bound: float = BOUND) -> float:
    """Poll ``condition`` (every 10 ms) until it holds; returns the time it took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > bound:
            pytest.fail(f"not true within {bound} s")
        time.sleep(0.01)
    return time.monotonic() - start


def revoked(verifier: TokenVerifier, raw: str) -> bool:
    try:
        asyncio.run(verifier.averify(raw))
    except TokenRevokedError:
        return True
    return False


def open_node(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Stores:
    if backend == "sqlite":
        return open_stores(StoreConfig(url=f"sqlite:///{tmp_path}/verity.db"))
    dsn = request.getfixturevalue("postgres_dsn")
    config = StoreConfig(url=dsn, redis_url=request.getfixturevalue("redis_url"))
    return open_stores(
        config,
        schema=request.getfixturevalue("pg_schema"),
        redis_prefix=request.getfixturevalue("redis_prefix"),
    )


@pytest.fixture(params=["sqlite", "postgresql+redis"])
def nodes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Stores, Stores]]:
    """(this node's stores, another node's stores) on one database."""
    here = open_node(request, request.param, tmp_path)
    there = open_node(request, request.param, tmp_path)
    yield here, there
    there.close()
    here.close()


def poll_for(stores: Stores) -> float:
    return 0.05 if stores.backend == "sqlite" else 0.0  # PostgreSQL: delivery alone


@pytest.fixture
def make_verifier(keyset: KeySet) -> Callable[..., TokenVerifier]:
    def make(**kwargs: Any) -> TokenVerifier:
        return TokenVerifier(make_config(), keys=keyset, **kwargs)

    return make


@pytest.mark.parametrize("kind", [TOKEN, JTI, SUBJECT])
def test_a_revocation_by_another_node_rejects_a_warm_cached_token(
    nodes: tuple[Stores, Stores],
    make_verifier: Callable[..., TokenVerifier],
    ec_key: SigningKey,
    kind: RevocationKind,
) -> None:
    here, there = nodes
    verifier = make_verifier()
    alice, bob = token(ec_key, iat=time.time() - 5), token(ec_key, subject="bob", jti="jti-2")
    for raw in (alice, bob):
        verifier.verify(raw)
    assert verifier.cache.stats.hits == 0
    verifier.verify(alice)
    assert verifier.cache.stats.hits == 1  # warm: the next check would be a hit
    sync = RevocationSync(here.revocations, verifiers=[verifier], poll_seconds=poll_for(here))
    sync.start()
    try:
        value = {TOKEN: token_hash(alice), JTI: "jti-1", SUBJECT: "alice"}[kind]
        there.revocations.revoke(kind, value, expires=time.time() + 600, reason="test")
        wait_until(lambda: revoked(verifier, alice))
        assert not revoked(verifier, bob)
        assert len(sync) == 1
    finally:
        sync.close()


def test_revocations_in_force_before_start_are_loaded(
    nodes: tuple[Stores, Stores], make_verifier: Callable[..., TokenVerifier], ec_key: SigningKey
) -> None:
    here, there = nodes
    alice = token(ec_key, iat=time.time() - 5)
    there.revocations.revoke(SUBJECT, "alice", expires=time.time() + 600)
    verifier = make_verifier()
    sync = RevocationSync(here.revocations, verifiers=[verifier], poll_seconds=0)
    assert sync.start() == 1
    sync.close()
    with pytest.raises(TokenRevokedError):
        verifier.verify(alice)


def test_a_subject_revoked_at_t_refuses_tokens_issued_until_t_plus_leeway(
    nodes: tuple[Stores, Stores], make_verifier: Callable[..., TokenVerifier], ec_key: SigningKey
) -> None:
    here, there = nodes
    t = float(int(time.time()) - 100)
    before, at, skewed, after = (
        token(ec_key, jti=f"j{i}", iat=t + d) for i, d in enumerate((-10, 0, 20, 40))
    )
    verifier = make_verifier()
    assert verifier.config.leeway_seconds == 30
    for raw in (before, at, skewed, after):
        verifier.verify(raw)  # all cached
    stored = there.revocations.revoke(SUBJECT, "alice", expires=time.time() + 600, now=t)
    assert stored.revoked_at == t
    sync = RevocationSync(here.revocations, verifiers=[verifier], poll_seconds=0)
    sync.start()
    sync.close()
    for raw in (before, at, skewed):  # skewed: within the leeway (an issuer clock ahead)
        with pytest.raises(TokenRevokedError):
            verifier.verify(raw)
    assert verifier.verify(after).subject == "alice"  # issued after revocation + leeway
    fresh = token(ec_key, jti="new", iat=time.time())
    assert verifier.verify(fresh).subject == "alice"


def test_expired_revocations_are_ignored_and_forgotten(
    make_verifier: Callable[..., TokenVerifier], ec_key: SigningKey, tmp_path: Path
) -> None:
    clock = Clock()
    verifier = make_verifier(clock=clock)
    with open_stores(StoreConfig(url=f"sqlite:///{tmp_path}/v.db")) as stores:
        manager = session_manager(stores, clock)
        sync = RevocationSync(stores.revocations, verifiers=[verifier], sessions=manager,
                              poll_seconds=0, clock=clock)  # fmt: skip
        sync.start()
        now = time.time()
        for kind, value in ((JTI, "jti-1"), (SUBJECT, "alice"), (TOKEN, "0" * 64)):
            stores.revocations.revoke(kind, value, expires=now + 60)  # delivered in-process
        assert len(sync) == 3
        assert len(verifier.revocations) == 3
        assert len(manager._revoked_subjects) == 1
        gone = Revocation(JTI, "old", revoked_at=now - 120, expires=now - 60)
        assert not sync.apply(gone)  # already expired: never applied
        assert len(verifier.revocations) == 3
        clock.offset = 61  # every revocation has expired
        sync.purge()
        assert len(sync) == 0
        assert len(verifier.revocations) == 0
        assert manager._revoked_subjects == {}
        assert verifier.verify(token(ec_key, iat=now - 5)).jti == "jti-1"  # accepted again
        sync.close()
        manager.close()


def test_reapplying_an_unchanged_revocation_does_not_evict_again(
    make_verifier: Callable[..., TokenVerifier], tmp_path: Path
) -> None:
    verifier = make_verifier()
    with open_stores(StoreConfig(url=f"sqlite:///{tmp_path}/v.db")) as stores:
        stores.revocations.revoke(SUBJECT, "alice", expires=time.time() + 60)
        sync = RevocationSync(stores.revocations, verifiers=[verifier], poll_seconds=0)
        assert sync.start() == 1
        generation = verifier.cache.generation
        assert sync.reconcile() == 0  # a poll that finds nothing new
        assert verifier.cache.generation == generation
        stores.revocations.revoke(SUBJECT, "alice", expires=time.time() + 120)  # extended
        assert verifier.cache.generation == generation + 1
        sync.close()


# -- sessions --------------------------------------------------------------------------------


def session_manager(stores: Stores, clock: Callable[[], float] = time.time) -> SessionManager:
    """A node's sessions: cached for a minute, so a revocation must evict them."""
    return SessionManager(
        store=stores.sessions, signer=CookieSigner({1: b"k" * 32}, current=1),
        config=LoginConfig(cache_seconds=60), revocations=stores.revocations, clock=clock,
    )  # fmt: skip


def login(manager: SessionManager, user: str) -> str:
    principal = Principal(id=user, email=f"{user}@example.com")
    cookie, _ = manager.create(principal, {"iss": ISSUER, "sub": user})
    assert manager.lookup(cookie) is not None  # cached on this node
    return cookie


def test_a_subject_revocation_ends_that_subjects_cookie_sessions(
    nodes: tuple[Stores, Stores], make_verifier: Callable[..., TokenVerifier]
) -> None:
    here, there = nodes
    manager = session_manager(here)
    sync = RevocationSync(here.revocations, verifiers=[make_verifier()], sessions=manager,
                          poll_seconds=poll_for(here))  # fmt: skip
    sync.start()
    try:
        alice, alice2, bob = login(manager, "alice"), login(manager, "alice"), login(manager, "bob")
        alice_id = manager.session_id(alice)
        assert alice_id is not None
        revocation, ended = record_revocation(
            there.revocations, SUBJECT, "alice", expires=time.time() + 600
        )
        assert ended == 0  # no session store given: only the revocation is stored
        took = wait_until(lambda: manager.lookup(alice) is None)
        assert took < BOUND
        assert manager.lookup(alice2) is None
        assert here.sessions.get(alice_id) is None  # the refused session was deleted
        found = manager.lookup(bob)
        assert found is not None
        assert found[1].id == "bob"
        while time.time() <= revocation.revoked_at:  # a new login, strictly after
            time.sleep(0.001)
        again = login(manager, "alice")
        assert manager.lookup(again) is not None
    finally:
        sync.close()
        manager.close()


def test_a_restarted_node_refuses_sessions_of_a_subject_revoked_while_it_was_down(
    nodes: tuple[Stores, Stores], make_verifier: Callable[..., TokenVerifier]
) -> None:
    here, there = nodes
    first = session_manager(there)
    cookie = login(first, "alice")
    there.revocations.revoke(SUBJECT, "alice", expires=time.time() + 600)
    first.close()
    restarted = session_manager(here)
    sync = RevocationSync(here.revocations, verifiers=[make_verifier()], sessions=restarted,
                          poll_seconds=0)  # fmt: skip
    sync.start()
    assert restarted.lookup(cookie) is None  # read from the store, refused
    sync.close()
    restarted.close()


def test_record_revocation_deletes_the_stored_sessions_it_ends(tmp_path: Path) -> None:
    with open_stores(StoreConfig(url=f"sqlite:///{tmp_path}/v.db")) as stores:
        manager = session_manager(stores)
        alice, bob = login(manager, "alice"), login(manager, "bob")
        _, ended = record_revocation(
            stores.revocations, SUBJECT, "alice", expires=time.time() + 60, sessions=stores.sessions
        )
        assert ended == 1
        bob_id = manager.session_id(bob)
        assert bob_id is not None
        _, ended = record_revocation(
            stores.revocations, SESSION, bob_id, expires=time.time() + 60, sessions=stores.sessions
        )
        assert ended == 1
        assert manager.lookup(alice) is None
        assert manager.lookup(bob) is None
        assert stores.sessions.get(bob_id) is None
        manager.close()


# -- fail closed ------------------------------------------------------------------------------


def test_a_node_whose_store_is_down_does_not_start(
    postgres_dsn: str, pg_schema: str, make_verifier: Callable[..., TokenVerifier]
) -> None:
    target = urlsplit(postgres_dsn)
    proxy = FaultProxy((target.hostname or "127.0.0.1", target.port or 5432))
    proxy.start()
    url = f"postgresql://postgres:s3cret-pw@127.0.0.1:{proxy.port}/test"
    db = postgres.PostgresDatabase(url, schema=pg_schema, timeout=0.5)
    try:
        postgres.migrate(db)
        store = postgres.PostgresRevocations(db)
        proxy.cut()
        sync = RevocationSync(store, verifiers=[make_verifier()], poll_seconds=0)
        started = time.monotonic()
        with pytest.raises(RevocationsUnavailableError) as caught:
            sync.start(retry_delays=(0.05, 0.05))
        assert time.monotonic() - started < 10
        message = str(caught.value)
        assert "refusing to serve" in message
        assert "s3cret-pw" not in message
        assert not sync.loaded
        # back up during the retries: the node starts
        restored: list[float] = []

        def back_up(delay: float) -> None:
            if not restored:
                proxy.restore()
            restored.append(delay)
            time.sleep(delay)

        sync = RevocationSync(store, verifiers=[make_verifier()], poll_seconds=0)
        assert sync.start(retry_delays=(0.1,) * 50, sleep=back_up) == 0
        assert sync.loaded
        sync.close()
        store.close()
    finally:
        db.close()
        proxy.close()


def test_start_revocation_sync_polls_a_sqlite_store_written_by_another_process(
    make_verifier: Callable[..., TokenVerifier], ec_key: SigningKey, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/v.db"
    verifier = make_verifier()
    alice = token(ec_key, iat=time.time() - 5)
    verifier.verify(alice)
    with open_stores(StoreConfig(url=url)) as here, open_stores(StoreConfig(url=url)) as there:
        sync = start_revocation_sync(here, verifiers=[verifier])
        assert sync.poll_seconds == 2.0
        there.revocations.revoke(JTI, "jti-1", expires=time.time() + 60)  # not delivered here
        took = wait_until(lambda: revoked(verifier, alice))
        assert took < 2.0 + 1.0
        sync.close()


def test_a_revocation_stored_by_another_process_is_obeyed_within_the_sqlite_watch(
    make_verifier: Callable[..., TokenVerifier], ec_key: SigningKey, tmp_path: Path
) -> None:
    """``verity revoke`` (here: a separate Python process writing the store) reaches a
    node on SQLite through the store's revision, watched every 50 ms: well before the
    2 s full re-read, which therefore cannot be what made the node obey."""
    url = f"sqlite:///{tmp_path}/v.db"
    verifier = make_verifier()
    alice = token(ec_key, iat=time.time() - 5)
    verifier.verify(alice)
    with open_stores(StoreConfig(url=url)) as here:
        sync = start_revocation_sync(here, verifiers=[verifier])
        assert (sync.poll_seconds, sync.watch_seconds) == (2.0, WATCH_SQLITE)
        try:
            revoke = (
                "import sys, time\n"
                "from verity.config import StoreConfig\n"
                "from verity.store import RevocationKind, open_stores\n"
                "with open_stores(StoreConfig(url=sys.argv[1])) as stores:\n"
                "    stores.revocations.revoke(RevocationKind.JTI, 'jti-1', "
                "expires=time.time() + 60)\n"
            )
            subprocess.run([sys.executable, "-c", revoke, url], check=True, timeout=60)  # noqa: S603
            took = wait_until(lambda: revoked(verifier, alice))
            assert took < 1.0  # the watch (about 50 ms), not the 2 s re-read
        finally:
            sync.close()


def test_a_session_recached_after_the_revocation_is_still_refused(tmp_path: Path) -> None:
    """The cache-hit path checks the subject too (a refresh may re-cache a session)."""
    with open_stores(StoreConfig(url=f"sqlite:///{tmp_path}/v.db")) as stores:
        manager = session_manager(stores)
        cookie = login(manager, "alice")
        found = manager.lookup(cookie)
        assert found is not None
        now = time.time()
        manager.apply(Revocation(SUBJECT, "alice", revoked_at=now, expires=now + 60))
        manager.remember(found[0])  # a racing refresh puts it back into the cache
        assert manager.lookup(cookie) is None
        manager.close()


# -- the verifier's revocation list keeps the store's times ---------------------------------


def test_the_revocation_list_keeps_the_stores_times(
    make_verifier: Callable[..., TokenVerifier], ec_key: SigningKey
) -> None:
    clock = Clock()
    verifier = make_verifier(clock=clock)
    now = time.time()
    old, new = token(ec_key, jti="old", iat=now - 50), token(ec_key, jti="new", iat=now - 10)
    for raw in (old, new):
        verifier.verify(raw)
    evicted = verifier.revoke(subject="alice", revoked_at=now - 80, until=now + 100)
    assert evicted == 1  # only the token issued before revoked_at + leeway leaves the cache
    with pytest.raises(TokenRevokedError):
        verifier.verify(old)
    assert verifier.verify(new).jti == "new"
    verifier.revoke(subject="alice", revoked_at=now - 90, until=now + 50)  # older, shorter
    with pytest.raises(TokenRevokedError):
        verifier.verify(old)  # the later revoked_at and the later until are kept
    clock.offset = 99
    with pytest.raises(TokenRevokedError):
        verifier.verify(old)
    clock.offset = 101
    assert verifier.verify(old).jti == "old"  # expired: forgotten
    assert verifier.revoke(jti="x", until=clock() - 1) == 0  # already expired: not kept
    assert len(verifier.revocations) == 0


class _FailingRevoke:
    """A session store whose delete fails (the database went away mid-way)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def revoke(self, session_id: str) -> bool:
        raise StoreUnavailableError("sqlite:///x.db", "connection lost")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_revoked_session_stays_refused_even_if_its_row_survives(
    nodes: tuple[Stores, Stores], make_verifier: Callable[..., TokenVerifier]
) -> None:
    here, there = nodes
    manager = session_manager(here)
    sync = RevocationSync(here.revocations, verifiers=[make_verifier()], sessions=manager,
                          poll_seconds=poll_for(here))  # fmt: skip
    sync.start()
    try:
        cookie = login(manager, "alice")
        session_id = manager.session_id(cookie)
        assert session_id is not None
        # the revocation is stored, but the row is still there (as when its delete failed)
        there.revocations.revoke(SESSION, session_id, expires=time.time() + 600)
        assert wait_until(lambda: manager.lookup(cookie) is None) < BOUND
        assert manager.lookup(cookie) is None  # a store read finds the row: still refused
        manager.evict(session_id)
        assert manager.lookup(cookie) is None
    finally:
        sync.close()
        manager.close()


def test_record_revocation_deletes_a_session_before_storing_its_revocation(
    tmp_path: Path,
) -> None:
    with open_stores(StoreConfig(url=f"sqlite:///{tmp_path}/v.db")) as stores:
        manager = session_manager(stores)
        cookie = login(manager, "alice")
        session_id = manager.session_id(cookie)
        assert session_id is not None
        with pytest.raises(StoreUnavailableError):
            record_revocation(stores.revocations, SESSION, session_id,
                              expires=time.time() + 600,
                              sessions=_FailingRevoke(stores.sessions))  # fmt: skip
        assert stores.revocations.active() == []  # nothing half-done: the CLI can retry
        revocation, ended = record_revocation(
            stores.revocations, SESSION, session_id, expires=time.time() + 600,
            sessions=stores.sessions,
        )  # fmt: skip
        assert ended == 1
        assert stores.sessions.get(session_id) is None
        assert [r.value for r in stores.revocations.active()] == [revocation.value]
        manager.close()


def test_the_poll_survives_an_unexpected_error(
    tmp_path: Path, make_verifier: Callable[..., TokenVerifier]
) -> None:
    with open_stores(StoreConfig(url=f"sqlite:///{tmp_path}/v.db")) as stores:
        sync = RevocationSync(stores.revocations, verifiers=[make_verifier()], poll_seconds=0.05)
        sync.start()
        calls = []
        real_active = stores.revocations.active

        def flaky_active(**kwargs: Any) -> list[Any]:
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("database is locked")  # not a StoreError
            return real_active(**kwargs)

        stores.revocations.active = flaky_active  # type: ignore[method-assign]
        try:
            assert wait_until(lambda: len(calls) >= 3) < BOUND  # still polling after it
        finally:
            sync.close()


def test_a_logout_the_store_refused_changes_nothing_and_can_be_retried(tmp_path: Path) -> None:
    with open_stores(StoreConfig(url=f"sqlite:///{tmp_path}/v.db")) as stores:
        manager = session_manager(stores)
        cookie = login(manager, "alice")
        found = manager.lookup(cookie)
        assert found is not None
        working = manager.store
        manager.store = _FailingRevoke(working)  # type: ignore[assignment]
        with pytest.raises(StoreUnavailableError):
            manager.revoke(found[0], reason="logout")
        manager.store = working
        assert manager.lookup(cookie) is not None  # not half-revoked on this node
        assert stores.revocations.active() == []
        assert manager.revoke(found[0], reason="logout")  # the retry does it all
        assert manager.lookup(cookie) is None
        assert [r.kind for r in stores.revocations.active()] == [SESSION]
        manager.close()
