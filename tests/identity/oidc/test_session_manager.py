"""``SessionManager`` directly (no HTTP): login transactions, the per-node cache and its
limits, session and subject revocations at their time boundaries, back-channel matching."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from verity.config import StoreConfig
from verity.identity.oidc import LoginConfig, sessions
from verity.identity.oidc.cookies import CookieSigner
from verity.identity.oidc.errors import LoginStateError
from verity.identity.oidc.sessions import (
    INDEX_USER,
    TRANSACTION_USER,
    SessionManager,
    principal_data,
    principal_of,
)
from verity.model import Principal
from verity.store import (
    Revocation,
    RevocationKind,
    SessionRecord,
    StoreError,
    Stores,
    open_stores,
)

NOW = 1_800_000_000.0
ISSUER = "https://idp.example"
TX = {
    "provider": "fake",
    "state": "st-1",
    "nonce": "n-1",
    "verifier": "v-1",
    "return_url": "/docs",
    "redirect_uri": "https://gw.example/cb",
}


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class Subscription:
    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


class FakeRevocations:
    """Records what the manager fans out; hands the subscription callback to the test."""

    def __init__(self) -> None:
        self.revoked: list[tuple[RevocationKind, str, float, str]] = []
        self.subscription = Subscription()
        self.callback: Any = None

    def revoke(self, kind: RevocationKind, value: str, *, expires: float, reason: str = "") -> None:
        self.revoked.append((kind, value, expires, reason))

    def subscribe(self, callback: Any) -> Subscription:
        self.callback = callback
        return self.subscription


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    with open_stores(StoreConfig(url=f"sqlite:///{tmp_path}/verity.db")) as opened:
        yield opened


@pytest.fixture
def clock() -> Clock:
    return Clock()


def manager_for(stores: Stores, clock: Clock, **config: Any) -> SessionManager:
    settings = {"cache_seconds": 10, "session_lifetime_seconds": 3600, **config}
    return SessionManager(
        store=stores.sessions,
        signer=CookieSigner({1: b"k" * 32}, current=1),
        config=LoginConfig(**settings),
        clock=clock,
    )


@pytest.fixture
def manager(stores: Stores, clock: Clock) -> SessionManager:
    return manager_for(stores, clock)


def alice(**fields: Any) -> Principal:
    settings: dict[str, Any] = {
        "id": "alice",
        "email": "alice@example.com",
        "groups": frozenset({"eng", "ops"}),
        "roles": frozenset({"admin"}),
        "auth_methods": frozenset({"pwd", "otp"}),
        "mfa": True,
        "auth_time": NOW - 5,
        **fields,
    }
    return Principal(**settings)


def login(manager: SessionManager, principal: Principal | None = None, **data: Any) -> str:
    cookie, _ = manager.create(principal or alice(), {"iss": ISSUER, **data})
    return cookie


def stored_id(manager: SessionManager, cookie: str) -> str:
    session_id = manager.session_id(cookie)
    assert session_id is not None
    return session_id


# --- login transactions -------------------------------------------------------------------


def test_login_transaction_returns_its_fields_once(
    manager: SessionManager, stores: Stores, clock: Clock
) -> None:
    cookie = manager.begin(**TX, extra="ignored")
    assert manager.finish(cookie, "st-1") == TX
    with pytest.raises(LoginStateError, match="already used"):
        manager.finish(cookie, "st-1")


def test_login_transaction_expires_after_the_login_timeout(stores: Stores, clock: Clock) -> None:
    manager = manager_for(stores, clock, login_timeout_seconds=30)
    early, late = manager.begin(**TX), manager.begin(**TX)
    clock.now = NOW + 29.9
    assert manager.finish(early, "st-1")["nonce"] == "n-1"
    clock.now = NOW + 30
    with pytest.raises(LoginStateError, match="unknown, expired"):
        manager.finish(late, "st-1")


@pytest.mark.parametrize("state", [None, "", "st-2", "st-1x", "st-"])
def test_login_transaction_refuses_another_state_and_is_used_up(
    manager: SessionManager, state: str | None
) -> None:
    cookie = manager.begin(**TX)
    with pytest.raises(LoginStateError, match="state does not match"):
        manager.finish(cookie, state)
    with pytest.raises(LoginStateError, match="already used"):
        manager.finish(cookie, "st-1")  # a failed attempt burns the transaction


@pytest.mark.parametrize("cookie", [None, "", "garbage", "1.abc.def"])
def test_login_transaction_needs_a_signed_cookie(
    manager: SessionManager, cookie: str | None
) -> None:
    manager.begin(**TX)
    with pytest.raises(LoginStateError, match="no valid login-transaction cookie"):
        manager.finish(cookie, "st-1")


def test_a_session_cookie_is_not_a_login_transaction_and_back(
    manager: SessionManager,
) -> None:
    session = login(manager)
    with pytest.raises(LoginStateError, match="no valid login-transaction cookie"):
        manager.finish(session, "st-1")
    tx = manager.begin(**TX)
    assert manager.session_id(tx) is None
    assert manager.lookup(tx) is None


# --- sessions and their principal ---------------------------------------------------------


def test_created_session_stands_for_its_principal(manager: SessionManager, stores: Stores) -> None:
    cookie, record = manager.create(alice(), {"iss": ISSUER, "sub": "u-1", "claims": {"a": 1}})
    assert record.id == stored_id(manager, cookie)
    assert (record.created, record.expires) == (NOW, NOW + 3600)
    assert (record.mfa, record.auth_time, record.user_id) == (True, NOW - 5, "alice")
    found = manager.lookup(cookie)
    assert found is not None
    principal = found[1]
    assert principal.id == "alice"
    assert principal.email == "alice@example.com"
    assert principal.groups == frozenset({"eng", "ops"})
    assert principal.roles == frozenset({"admin"})
    assert principal.auth_methods == frozenset({"pwd", "otp"})
    assert (principal.mfa, principal.auth_time, principal.mfa_time) == (True, NOW - 5, NOW - 5)
    assert principal.session_id == record.id
    assert principal.claims == {"a": 1}


def test_a_session_without_mfa_has_no_mfa_time(manager: SessionManager) -> None:
    found = manager.lookup(login(manager, alice(mfa=False, auth_methods=frozenset({"pwd"}))))
    assert found is not None
    assert (found[1].mfa, found[1].auth_time, found[1].mfa_time) == (False, NOW - 5, None)


def test_principal_data_round_trips_sorted() -> None:
    data = principal_data(alice())
    assert data == {
        "email": "alice@example.com",
        "groups": ["eng", "ops"],
        "roles": ["admin"],
        "amr": ["otp", "pwd"],
    }
    record = SessionRecord(
        id="s", user_id="alice", created=NOW, last_seen=NOW, expires=NOW + 1,
        data={"principal": data},
    )  # fmt: skip
    principal = principal_of(record)
    assert (principal.email, principal.roles, principal.claims) == (
        "alice@example.com", frozenset({"admin"}), {},
    )  # fmt: skip


def test_each_login_gets_a_new_session_under_a_new_cookie(manager: SessionManager) -> None:
    first, second = login(manager), login(manager)
    assert first != second
    assert stored_id(manager, first) != stored_id(manager, second)


@pytest.mark.parametrize("cookie", [None, "", "1.x.y", "forged"])
def test_an_unsigned_cookie_names_no_session(manager: SessionManager, cookie: str | None) -> None:
    assert manager.session_id(cookie) is None
    assert manager.lookup(cookie) is None


def test_a_tampered_cookie_names_no_session(manager: SessionManager) -> None:
    cookie = login(manager)
    version, secret, mac = cookie.split(".")

    def flip(text: str) -> str:  # the first character carries 6 significant bits
        return ("B" if text[0] == "A" else "A") + text[1:]

    assert manager.lookup(f"{version}.{flip(secret)}.{mac}") is None
    assert manager.lookup(f"{version}.{secret}.{flip(mac)}") is None


def test_session_ends_at_its_expiry_even_when_cached(manager: SessionManager, clock: Clock) -> None:
    cookie = login(manager)
    clock.now = NOW + 3599.9
    assert manager.lookup(cookie) is not None  # cached from here
    clock.now = NOW + 3600
    assert manager.lookup(cookie) is None


def test_cached_lookup_is_reused_until_cache_seconds(
    manager: SessionManager, stores: Stores, clock: Clock
) -> None:
    """Within ``cache_seconds`` a lookup is served from this node's cache; exactly at it,
    the store is read again (and a session deleted there is gone)."""
    cookie = login(manager)
    assert manager.lookup(cookie) is not None
    stores.sessions.revoke(stored_id(manager, cookie))  # behind the cache's back
    clock.now = NOW + 9.9
    assert manager.lookup(cookie) is not None
    clock.now = NOW + 10
    assert manager.lookup(cookie) is None


def test_with_no_cache_every_lookup_reads_the_store(stores: Stores, clock: Clock) -> None:
    manager = manager_for(stores, clock, cache_seconds=0)
    cookie = login(manager)
    assert manager.lookup(cookie) is not None
    stores.sessions.revoke(stored_id(manager, cookie))
    assert manager.lookup(cookie) is None


@pytest.mark.parametrize("user", [TRANSACTION_USER, INDEX_USER])
def test_a_login_transaction_or_index_record_is_never_a_session(
    manager: SessionManager, stores: Stores, user: str
) -> None:
    cookie = login(manager)
    session_id = stored_id(manager, cookie)
    stores.sessions.revoke(session_id)
    stores.sessions.create(
        SessionRecord(id=session_id, user_id=user, created=NOW, last_seen=NOW, expires=NOW + 60)
    )
    manager.evict(session_id)
    assert manager.lookup(cookie) is None


def test_logout_index_records_name_the_sessions_by_sid_and_sub(
    manager: SessionManager, stores: Stores
) -> None:
    first = stored_id(manager, login(manager, sid="sid-1", sub="u-1"))
    second = stored_id(manager, login(manager, sid="sid-2", sub="u-1"))
    login(manager, sid="", sub=None)  # neither is indexed
    assert manager.revoke_matching(issuer=ISSUER, sub="u-1", sid=None) == 2
    assert stores.sessions.get(first, now=NOW) is None
    assert stores.sessions.get(second, now=NOW) is None


# --- revocations --------------------------------------------------------------------------


def test_revoked_session_is_refused_until_its_revocation_ends(
    manager: SessionManager, stores: Stores, clock: Clock
) -> None:
    cookie = login(manager)
    session_id = stored_id(manager, cookie)
    assert manager.lookup(cookie) is not None
    manager.revoke_session(session_id, until=NOW + 100)
    assert manager.lookup(cookie) is None  # evicted from the cache at once
    clock.now = NOW + 99.9
    assert manager.lookup(cookie) is None


def test_revoked_session_that_the_store_still_holds_is_refused_from_the_cache(
    manager: SessionManager, clock: Clock
) -> None:
    """A revocation applied while the session sits in the cache refuses the cached hit
    (not only the store read)."""
    cookie = login(manager)
    session_id = stored_id(manager, cookie)
    record, _ = manager.remember(manager.store.get(session_id, now=NOW))  # type: ignore[arg-type]
    manager.revoke_session(session_id, until=NOW + 100)
    manager.remember(record)  # a racing reader re-cached it
    assert manager.lookup(cookie) is None
    assert manager.store.get(session_id, now=NOW) is None  # and the row is deleted


def test_a_revocation_ending_now_is_not_remembered(manager: SessionManager, clock: Clock) -> None:
    cookie = login(manager)
    session_id = stored_id(manager, cookie)
    manager.revoke_session(session_id, until=NOW)
    assert manager._revoked_sessions == {}
    assert manager.lookup(cookie) is not None


def test_session_revocation_keeps_the_later_end(manager: SessionManager, clock: Clock) -> None:
    cookie = login(manager)
    session_id = stored_id(manager, cookie)
    manager.revoke_session(session_id, until=NOW + 100)
    manager.revoke_session(session_id, until=NOW + 50)
    assert manager._revoked_sessions == {session_id: NOW + 100}
    manager.revoke_session(session_id, until=NOW + 200)
    assert manager._revoked_sessions == {session_id: NOW + 200}


def test_expired_revocations_are_forgotten(manager: SessionManager, clock: Clock) -> None:
    manager.revoke_session("s-1", until=NOW + 10)
    manager.revoke_subject("bob", revoked_at=NOW, until=NOW + 10)
    clock.now = NOW + 9.9
    manager.purge()
    assert (len(manager._revoked_sessions), len(manager._revoked_subjects)) == (1, 1)
    clock.now = NOW + 10
    manager.purge()
    assert (manager._revoked_sessions, manager._revoked_subjects) == ({}, {})


def test_subject_revocation_ends_sessions_created_up_to_its_time(
    manager: SessionManager, stores: Stores, clock: Clock
) -> None:
    before = login(manager)
    clock.now = NOW + 10
    at = login(manager)
    clock.now = NOW + 10.5
    after = login(manager)
    bob = login(manager, alice(id="bob"))
    for cookie in (before, at, after, bob):
        assert manager.lookup(cookie) is not None  # all cached
    evicted = manager.revoke_subject("alice", revoked_at=NOW + 10, until=NOW + 100)
    assert evicted == 2
    assert manager.lookup(before) is None
    assert manager.lookup(at) is None
    assert manager.lookup(after) is not None
    assert manager.lookup(bob) is not None
    assert stores.sessions.get(stored_id(manager, before), now=clock.now) is None


def test_subject_revocation_matches_the_idp_sub_too(manager: SessionManager, clock: Clock) -> None:
    cookie = login(manager, alice(id="alice@corp"), sub="idp-sub-7")
    other = login(manager, alice(id="carol"), sub=None)
    assert manager.revoke_subject("idp-sub-7", revoked_at=NOW, until=NOW + 100) == 0
    assert manager.lookup(cookie) is None
    assert manager.lookup(other) is not None


def test_subject_revocation_lapses_at_its_end(stores: Stores, clock: Clock) -> None:
    manager = manager_for(stores, clock, cache_seconds=0)
    refused, kept = login(manager), login(manager)
    manager.revoke_subject("alice", revoked_at=NOW, until=NOW + 20)
    clock.now = NOW + 19.9
    assert manager.lookup(refused) is None
    clock.now = NOW + 20
    assert manager.lookup(kept) is not None


def test_subject_revocation_keeps_the_later_time_and_end(
    manager: SessionManager,
) -> None:
    manager.revoke_subject("alice", revoked_at=NOW + 5, until=NOW + 100)
    manager.revoke_subject("alice", revoked_at=NOW + 1, until=NOW + 50)
    assert manager._revoked_subjects["alice"] == (NOW + 5, NOW + 100)
    manager.revoke_subject("alice", revoked_at=NOW + 9, until=NOW + 300)
    assert manager._revoked_subjects["alice"] == (NOW + 9, NOW + 300)


def test_an_already_ended_subject_revocation_changes_nothing(
    manager: SessionManager,
) -> None:
    cookie = login(manager)
    assert manager.lookup(cookie) is not None
    assert manager.revoke_subject("alice", revoked_at=NOW, until=NOW) == 0
    assert manager._revoked_subjects == {}
    assert manager.lookup(cookie) is not None


class FailingRevoke:
    """A session store whose deletes fail (the database is down for writes)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def revoke(self, session_id: str) -> bool:
        raise StoreError("read-only")


def test_a_revoked_session_is_refused_even_when_its_delete_fails(
    stores: Stores, clock: Clock
) -> None:
    manager = SessionManager(
        store=FailingRevoke(stores.sessions),  # type: ignore[arg-type]
        signer=CookieSigner({1: b"k" * 32}, current=1),
        config=LoginConfig(cache_seconds=0),
        clock=clock,
    )
    cookie = login(manager)
    manager.revoke_subject("alice", revoked_at=NOW, until=NOW + 100)
    assert manager.lookup(cookie) is None
    assert manager.lookup(cookie) is None  # the row is still there, still refused


@pytest.mark.parametrize("kind", [RevocationKind.SESSION, RevocationKind.SUBJECT])
def test_revocations_from_other_nodes_are_applied(
    stores: Stores, clock: Clock, kind: RevocationKind
) -> None:
    fanout = FakeRevocations()
    manager = SessionManager(
        store=stores.sessions,
        signer=CookieSigner({1: b"k" * 32}, current=1),
        config=LoginConfig(cache_seconds=60),
        revocations=fanout,  # type: ignore[arg-type]
        clock=clock,
    )
    cookie = login(manager)
    assert manager.lookup(cookie) is not None
    value = stored_id(manager, cookie) if kind is RevocationKind.SESSION else "alice"
    fanout.callback(Revocation(kind, value, revoked_at=NOW, expires=NOW + 100))
    assert manager.lookup(cookie) is None
    manager.close()
    manager.close()
    assert fanout.subscription.closed == 1


def test_token_revocations_do_not_touch_sessions(manager: SessionManager) -> None:
    cookie = login(manager)
    for kind in (RevocationKind.TOKEN, RevocationKind.JTI):
        manager.apply(Revocation(kind, stored_id(manager, cookie), NOW, NOW + 100))
    assert manager.lookup(cookie) is not None


def test_revoke_deletes_here_and_fans_out_for_at_least_a_minute(
    stores: Stores, clock: Clock
) -> None:
    fanout = FakeRevocations()
    manager = SessionManager(
        store=stores.sessions,
        signer=CookieSigner({1: b"k" * 32}, current=1),
        config=LoginConfig(cache_seconds=60, session_lifetime_seconds=3600),
        revocations=fanout,  # type: ignore[arg-type]
        clock=clock,
    )
    cookie, record = manager.create(alice(), {"iss": ISSUER})
    assert manager.revoke(record, reason="logout") is True
    assert manager.lookup(cookie) is None
    assert fanout.revoked == [(RevocationKind.SESSION, record.id, NOW + 3600, "logout")]
    short = SessionRecord(id="s-short", user_id="x", created=NOW, last_seen=NOW, expires=NOW + 5)
    assert manager.revoke(short, reason="r") is False  # not in the store: nothing deleted
    assert fanout.revoked[-1][2] == NOW + 60
    assert manager._revoked_sessions["s-short"] == NOW + 60


# --- back-channel logout matching ---------------------------------------------------------


def test_backchannel_match_needs_issuer_sid_and_sub_to_agree(
    manager: SessionManager, stores: Stores
) -> None:
    a = login(manager, sid="sid-1", sub="u-1")
    b = login(manager, sid="sid-2", sub="u-1")
    assert manager.revoke_matching(issuer="https://other.example", sub="u-1", sid="sid-1") == 0
    assert manager.revoke_matching(issuer=ISSUER, sub="u-2", sid="sid-1") == 0
    assert manager.revoke_matching(issuer=ISSUER, sub="u-1", sid="sid-3") == 0
    assert manager.lookup(a) is not None
    assert manager.lookup(b) is not None
    assert manager.revoke_matching(issuer=ISSUER, sub="u-1", sid="sid-1") == 1
    assert manager.lookup(a) is None
    assert manager.lookup(b) is not None
    assert manager.revoke_matching(issuer=ISSUER, sub=None, sid="sid-2") == 1
    assert manager.lookup(b) is None
    assert manager.revoke_matching(issuer=ISSUER, sub=None, sid=None) == 0


def test_backchannel_match_skips_a_session_of_another_issuer_under_the_same_index(
    manager: SessionManager, stores: Stores
) -> None:
    """An index names session ids; the session itself must still be the issuer's."""
    cookie = login(manager, sid="sid-1", sub="u-1")
    session_id = stored_id(manager, cookie)
    record = stores.sessions.get(session_id, now=NOW)
    assert record is not None
    stores.sessions.revoke(session_id)
    stores.sessions.create(
        SessionRecord(id=session_id, user_id="alice", created=NOW, last_seen=NOW,
                      expires=NOW + 60, data={**record.data, "iss": "https://other.example"})
    )  # fmt: skip
    assert manager.revoke_matching(issuer=ISSUER, sub="u-1", sid="sid-1") == 0
    assert stores.sessions.get(session_id, now=NOW) is not None


def test_a_second_session_of_a_sid_is_added_to_its_index(
    manager: SessionManager, stores: Stores, clock: Clock
) -> None:
    first = login(manager, sid="sid-1")
    clock.now = NOW + 1
    second = login(manager, sid="sid-1")
    assert manager.revoke_matching(issuer=ISSUER, sub=None, sid="sid-1") == 2
    assert manager.lookup(first) is None
    assert manager.lookup(second) is None


def test_the_node_cache_keeps_the_most_recent_sessions(
    manager: SessionManager, stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bounded: the least recently used session leaves the cache (its next lookup reads
    the store, which no longer has it); the others are still served from the cache."""
    monkeypatch.setattr(sessions, "_CACHE_MAX", 2)
    first, second, third = login(manager), login(manager), login(manager)
    for cookie in (first, second, third):
        assert manager.lookup(cookie) is not None
    for cookie in (first, second, third):
        stores.sessions.revoke(stored_id(manager, cookie))  # behind the cache's back
    assert manager.lookup(first) is None
    assert manager.lookup(second) is not None
    assert manager.lookup(third) is not None


def test_a_cache_hit_answers_the_same_record_and_principal_as_the_store_read(
    manager: SessionManager,
) -> None:
    cookie = login(manager, sub="u-1")
    first = manager.lookup(cookie)  # cached by create? no: read from the store, then cached
    hit = manager.lookup(cookie)
    assert first is not None
    assert hit is not None
    record, principal = hit
    assert isinstance(record, SessionRecord)
    assert record.id == stored_id(manager, cookie)
    assert (record.user_id, record.data["sub"]) == ("alice", "u-1")
    assert isinstance(principal, Principal)
    assert principal.id == "alice"
    assert principal.session_id == record.id
    assert hit == first
