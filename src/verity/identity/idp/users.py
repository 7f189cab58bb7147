"""Local users of the embedded provider: the ``User`` record and the ``UserStore`` protocol.

E-mail addresses are unique, compared case-insensitively (stored lower-cased). The
password hash and TOTP secret are excluded from ``repr`` and never logged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol

from ...store._common import current
from ...store.records import new_id

_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}")


def normalize_email(email: str) -> str:
    """The stored form of an e-mail address (trimmed, lower-cased); ``ValueError`` if bad."""
    value = email.strip().lower()
    if not _EMAIL.fullmatch(value):
        raise ValueError("not an e-mail address")
    return value


def check_names(what: str, names: tuple[str, ...]) -> tuple[str, ...]:
    """Group or role names: short identifiers, without duplicates (sorted)."""
    for name in names:
        if not _NAME.fullmatch(name):
            raise ValueError(f"{what}: {name!r} is not a valid name")
    return tuple(sorted(set(names)))


@dataclass(frozen=True, slots=True)
class User:
    """A local user. ``totp_last_step`` is the last TOTP time step accepted (replay guard)."""

    id: str
    email: str
    display_name: str
    groups: tuple[str, ...]
    roles: tuple[str, ...]
    password_hash: str = field(repr=False)
    totp_secret: str | None = field(default=None, repr=False)
    totp_last_step: int = 0
    disabled: bool = False
    created: float = 0.0
    updated: float = 0.0

    @property
    def mfa(self) -> bool:
        """True when the user has a TOTP second factor."""
        return self.totp_secret is not None


def new_user(
    email: str,
    *,
    password_hash: str,
    display_name: str = "",
    groups: tuple[str, ...] = (),
    roles: tuple[str, ...] = (),
    totp_secret: str | None = None,
    now: float | None = None,
) -> User:
    """A validated new ``User`` (what every ``UserStore.add`` stores); ``ValueError`` for a
    bad e-mail address, group or role."""
    at = current(now)
    return User(
        id=new_id(),
        email=normalize_email(email),
        display_name=display_name.strip()[:200],
        groups=check_names("group", groups),
        roles=check_names("role", roles),
        password_hash=password_hash,
        totp_secret=totp_secret,
        created=at,
        updated=at,
    )


class UserStore(Protocol):
    """Where local users live. Thread-safe; every write is atomic."""

    def add(
        self,
        email: str,
        *,
        password_hash: str,
        display_name: str = "",
        groups: tuple[str, ...] = (),
        roles: tuple[str, ...] = (),
        totp_secret: str | None = None,
        now: float | None = None,
    ) -> User:
        """Create a user; raises ``UserExistsError`` if the e-mail address is taken."""

    def get(self, user_id: str) -> User | None:
        """The user with this id, or ``None``."""

    def by_email(self, email: str) -> User | None:
        """The user with this e-mail address (any case), or ``None``."""

    def list(self) -> list[User]:
        """Every user, by e-mail address."""

    def set_disabled(self, user_id: str, disabled: bool, *, now: float | None = None) -> User:
        """Disable or enable a user; raises ``UnknownUserError``."""

    def set_password(self, user_id: str, password_hash: str, *, now: float | None = None) -> User:
        """Replace the password hash; raises ``UnknownUserError``."""

    def set_totp(self, user_id: str, secret: str | None, *, now: float | None = None) -> User:
        """Set or remove (``None``) the TOTP secret; resets the replay guard."""

    def use_totp_step(self, user_id: str, step: int) -> bool:
        """Atomically record that TOTP time step ``step`` was used: ``True`` only if it is
        later than every step used before (so a code is accepted at most once)."""
