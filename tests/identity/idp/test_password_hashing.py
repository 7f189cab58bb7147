"""Bounded password hashing: argon2id takes 19 MiB per hash, so concurrent logins must not
run an unbounded number of them (the review: 40 concurrent logins grew the demo to
~700 MB for good). Beyond the wait, a login is answered 503, not queued."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from argon2 import PasswordHasher, Type

from verity.identity.idp import passwords
from verity.identity.idp.passwords import hash_password, limit_password_hashing, verify_password

from .conftest import Idp, Login


class CountingHasher(PasswordHasher):
    """The real argon2id hasher, counting how many hashes run at the same moment."""

    def __init__(self) -> None:
        super().__init__(time_cost=2, memory_cost=19456, parallelism=1, type=Type.ID)
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0

    def _enter(self) -> None:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)

    def _leave(self) -> None:
        with self.lock:
            self.running -= 1

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        self._enter()
        try:
            return super().hash(password, salt=salt)
        finally:
            self._leave()

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self._enter()
        try:
            time.sleep(0.02)  # widen the window in which hashes overlap
            return super().verify(hash, password)
        finally:
            self._leave()


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> Iterator[CountingHasher]:
    hasher = CountingHasher()
    monkeypatch.setattr(passwords, "HASHER", hasher)
    yield hasher
    limit_password_hashing()  # the process default again


def test_concurrent_logins_never_run_more_password_hashes_than_the_limit(
    counting: CountingHasher,
) -> None:
    limit_password_hashing(2, wait_seconds=60)
    stored = hash_password("a long enough password")
    results: list[bool] = []
    barrier = threading.Barrier(16)

    def login(password: str) -> None:
        barrier.wait()
        results.append(verify_password(stored, password))

    threads = [
        threading.Thread(target=login, args=("a long enough password" if i % 2 else "wrong",))
        for i in range(16)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results) == [False] * 8 + [True] * 8  # every one was checked, in turn
    assert counting.peak == 2


def test_login_flood_beyond_the_hashing_wait_is_answered_503_not_queued(idp: Idp) -> None:
    email = "flood@example.com"
    idp.add_user(email)
    limit_password_hashing(1, wait_seconds=0.2)
    release = threading.Event()
    held = threading.Event()

    def hold_the_only_slot() -> None:
        with passwords._SLOTS.slot():
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_only_slot)
    holder.start()
    try:
        held.wait(5)
        login = Login(idp)
        login.authorize()
        busy: Any = login.password(email)
        assert busy.status_code == 503
        assert busy.headers["retry-after"]
        assert "try again" in busy.text
    finally:
        release.set()
        holder.join(10)
        limit_password_hashing()
    login = Login(idp)
    login.authorize()
    assert login.password(email).status_code == 303  # slots free again: signs in


def test_hashing_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        limit_password_hashing(0)
    with pytest.raises(ValueError, match="wait_seconds"):
        limit_password_hashing(2, wait_seconds=-1)


def test_sign_ins_answered_busy_during_a_flood_do_not_lock_the_account_out(idp: Idp) -> None:
    """A flood of logins against *other* accounts keeps every hashing slot busy; each
    503 said "nothing was changed" but had already used one of the account's lockout
    attempts, so five retries by the real user locked them out for the whole window,
    long after the flood."""
    email = "patient@example.com"
    idp.add_user(email)
    limit = idp.provider.config.lockout.max_account_failures
    limit_password_hashing(1, wait_seconds=0)
    release = threading.Event()
    held = threading.Event()

    def flood_holds_the_only_slot() -> None:
        with passwords._SLOTS.slot():
            held.set()
            release.wait(10)

    holder = threading.Thread(target=flood_holds_the_only_slot)
    holder.start()
    try:
        held.wait(5)
        for _ in range(limit + 1):  # the user retries, with the right password
            login = Login(idp)
            login.authorize()
            assert login.password(email).status_code == 503
    finally:
        release.set()
        holder.join(10)
        limit_password_hashing()
    login = Login(idp)
    login.authorize()
    assert login.password(email).status_code == 303  # the flood is over: signs in


def test_overlong_password_costs_one_hash_for_known_and_unknown_accounts_alike(
    idp: Idp, counting: CountingHasher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """User enumeration by timing: a password over 1024 characters was refused without a
    hash for an existing account, but hashed (truncated) for an unknown one, so a fast
    answer said "this account exists"."""
    idp.add_user("known@example.com")
    verified: list[str] = []
    real_verify = counting.verify

    def counting_verify(hash: str | bytes, password: str | bytes) -> bool:
        verified.append("hash")
        return real_verify(hash, password)

    monkeypatch.setattr(counting, "verify", counting_verify)
    overlong = "x" * 1025
    for email in ("known@example.com", "unknown@example.com"):
        verified.clear()
        login = Login(idp)
        login.authorize()
        assert login.password(email, overlong).status_code == 401
        assert verified == ["hash"], email
