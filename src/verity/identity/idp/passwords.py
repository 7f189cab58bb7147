"""Password hashing: argon2id (argon2-cffi) with OWASP's parameters.

OWASP Password Storage Cheat Sheet: argon2id, 19 MiB memory, 2 iterations, parallelism
1. Verification of an unknown user still costs one hash (``verify_dummy``), so timing
does not tell whether an account exists.
"""

from __future__ import annotations

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024

HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1, type=Type.ID)
_DUMMY_HASH = HASHER.hash("verity dummy password for unknown users")


def check_policy(password: str) -> None:
    """Refuse passwords that are too short or too long (``ValueError``, no echo)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"a password has at most {MAX_PASSWORD_LENGTH} characters")


def hash_password(password: str) -> str:
    """The argon2id hash (PHC string) of an acceptable password."""
    check_policy(password)
    return HASHER.hash(password)


def verify_password(password_hash: str, untrusted_password: str) -> bool:
    """Whether ``untrusted_password`` matches (constant time inside argon2)."""
    if len(untrusted_password) > MAX_PASSWORD_LENGTH:
        return False
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
