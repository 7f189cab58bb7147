"""Password hashing: argon2id (argon2-cffi) with OWASP's parameters.

OWASP Password Storage Cheat Sheet: argon2id, 19 MiB memory, 2 iterations, parallelism
1. Verification of an unknown user still costs one hash (``verify_dummy``), so timing
does not tell whether an account exists.

Each hash costs 19 MiB for its duration, and memory the C allocator took for it is seldom
given back: 40 logins at once (the thread pool's size) grew a process by ~700 MB for
good. So at most ``limit_password_hashing(concurrency)`` hashes run at once (default: the
number of CPUs, at most 8; more would not finish sooner anyway); a caller waits for a slot
at most ``wait_seconds`` and then gets ``PasswordHashingBusyError``, which the sign-in apps
answer with 503 and ``Retry-After`` (``verity.identity.unavailable``) instead of growing.
A login step takes its slot (``hashing_slot``) *before* it counts anything, so a login
answered 503 has used none of the account's lockout attempts; a thread holding a slot
does not take a second one for the hashes it then runs.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ..unavailable import PasswordHashingBusyError

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024

HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1, type=Type.ID)
_DUMMY_HASH = HASHER.hash("verity dummy password for unknown users")
DEFAULT_CONCURRENCY = max(1, min(os.cpu_count() or 1, 8))
DEFAULT_WAIT_SECONDS = 10.0


class _HashingSlots:
    """At most ``concurrency`` argon2 computations at once; waiting is bounded in time."""

    def __init__(self, concurrency: int, wait_seconds: float) -> None:
        if concurrency < 1 or wait_seconds < 0:
            raise ValueError("concurrency >= 1 and wait_seconds >= 0")
        self.concurrency = concurrency
        self.wait_seconds = wait_seconds
        self._slots = threading.BoundedSemaphore(concurrency)
        self._held = threading.local()  # this thread's slot, taken by an outer ``slot()``

    @contextmanager
    def slot(self) -> Iterator[None]:
        if getattr(self._held, "slot", False):  # already this thread's: no second one
            yield
            return
        if not self._slots.acquire(timeout=self.wait_seconds):
            raise PasswordHashingBusyError(self.concurrency)
        self._held.slot = True
        try:
            yield
        finally:
            self._held.slot = False
            self._slots.release()


_SLOTS = _HashingSlots(DEFAULT_CONCURRENCY, DEFAULT_WAIT_SECONDS)


def limit_password_hashing(
    concurrency: int | None = None, *, wait_seconds: float = DEFAULT_WAIT_SECONDS
) -> None:
    """At most ``concurrency`` (None: ``DEFAULT_CONCURRENCY``) password hashes at once in
    this process; a caller waits ``wait_seconds`` at most (``PasswordHashingBusyError``).
    Hashes running now finish under the limit they started with."""
    global _SLOTS  # noqa: PLW0603 - one limit per process, set at start
    _SLOTS = _HashingSlots(
        DEFAULT_CONCURRENCY if concurrency is None else concurrency, wait_seconds
    )


def hashing_slot() -> AbstractContextManager[None]:
    """Hold one password-hashing slot (waiting ``wait_seconds`` at most, else
    ``PasswordHashingBusyError``); hashes run inside it use it instead of another."""
    return _SLOTS.slot()


def check_policy(password: str) -> None:
    """Refuse passwords that are too short or too long (``ValueError``, no echo)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"a password has at most {MAX_PASSWORD_LENGTH} characters")


def hash_password(password: str) -> str:
    """The argon2id hash (PHC string) of an acceptable password."""
    check_policy(password)
    with _SLOTS.slot():
        return HASHER.hash(password)


def verify_password(password_hash: str, untrusted_password: str) -> bool:
    """Whether ``untrusted_password`` matches (constant time inside argon2). An overlong
    password never matches but still costs one hash (of the dummy), as for an unknown
    account: a quick refusal would tell that the account exists."""
    if len(untrusted_password) > MAX_PASSWORD_LENGTH:
        verify_password(_DUMMY_HASH, untrusted_password[:MAX_PASSWORD_LENGTH])
        return False
    with _SLOTS.slot():
        try:
            return HASHER.verify(password_hash, untrusted_password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


def verify_dummy(untrusted_password: str) -> bool:
    """Spend the time of one verification, then fail (for unknown or disabled users)."""
    verify_password(_DUMMY_HASH, untrusted_password[:MAX_PASSWORD_LENGTH])
    return False


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with other parameters (rehash after a good login)."""
    try:
        return HASHER.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True
