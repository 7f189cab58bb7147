"""Short-lived flow state: login transactions, authorization codes, refresh tokens.

Codes and refresh tokens are kept by their SHA-256 only. A code is redeemed at most once;
redeeming it again marks it ``reused`` so the provider can revoke what it issued. A
refresh token is rotated on use; presenting a used one revokes its whole family (the
OAuth 2.0 Security BCP's reuse detection). ``MemoryFlowState`` serves one process;
``SqliteFlowState`` and ``PostgresFlowState`` (``sql_state``) are shared by every process
or node using the same database.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass, field, replace
from typing import Protocol


def digest(untrusted_value: str) -> str:
    """SHA-256 hex of a code, token or handle (the only form that is stored)."""
    return hashlib.sha256(untrusted_value.encode()).hexdigest()


def new_secret() -> str:
    """A new random handle (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class Authentication:
    """Who logged in, how, and when."""

    user_id: str
    amr: tuple[str, ...]
    auth_time: float


@dataclass(frozen=True, slots=True)
class LoginTransaction:
    """An authorization request waiting for the user to log in (``id`` is the secret
    handle in the browser's form: left out of ``repr``)."""

    id: str = field(repr=False)
    client_id: str
    redirect_uri: str
    state: str | None
    nonce: str | None
    code_challenge: str
    scope: tuple[str, ...]
    csrf: str = field(repr=False)
    browser: str = field(repr=False)
    expires: float
    pending_user: str | None = None  # password accepted, waiting for TOTP


@dataclass(frozen=True, slots=True)
class CodeGrant:
    """What an authorization code stands for; ``family`` and ``jtis`` record what it
    produced, for revocation if the code is presented again."""

    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str | None
    scope: tuple[str, ...]
    auth: Authentication
    expires: float
    used: bool = False
    family: str | None = None
    jtis: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RefreshGrant:
    """A refresh token's record; ``family`` is shared by all its rotations, ``jti`` is the
    id of the access token issued with it (revoked with the family)."""

    family: str
    client_id: str
    scope: tuple[str, ...]
    auth: Authentication
    expires: float
    used: bool = False
    jti: str | None = None


class FlowState(Protocol):
    """Storage for the provider's flow state (thread-safe; each method atomic)."""

    def put_transaction(self, tx: LoginTransaction) -> None: ...
    def get_transaction(self, tx_id: str, *, now: float) -> LoginTransaction | None: ...
    def drop_transaction(self, tx_id: str) -> None: ...
    def put_code(self, code_hash: str, grant: CodeGrant) -> None: ...
    def peek_code(self, code_hash: str, *, now: float) -> CodeGrant | None:
        """The live code's grant, without redeeming it (to check who presents it)."""
        ...

    def redeem_code(self, code_hash: str, *, now: float) -> CodeGrant | None: ...
    def record_code_result(self, code_hash: str, *, family: str, jtis: tuple[str, ...]) -> bool:
        """Remember what a code produced; ``True`` if the code was presented again
        meanwhile (the family is then revoked, and the caller revokes ``jtis``)."""
        ...

    def put_refresh(self, token_hash: str, grant: RefreshGrant) -> bool:
        """Store a new refresh token; ``True`` if its family is revoked already (the
        token is dead on arrival: the caller revokes what it minted with it)."""
        ...

    def peek_refresh(self, token_hash: str, *, now: float) -> RefreshGrant | None:
        """The unexpired refresh token's grant (``used`` as stored), without using it."""
        ...

    def redeem_refresh(self, token_hash: str, *, now: float) -> RefreshGrant | None: ...
    def revoke_family(self, family: str) -> None: ...
    def family_jtis(self, family: str) -> tuple[str, ...]:
        """The ids of the access tokens issued with the family's refresh tokens."""
        ...


class MemoryFlowState:
    """``FlowState`` in memory (one process): entries vanish at expiry."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tx: dict[str, LoginTransaction] = {}
        self._codes: dict[str, CodeGrant] = {}
        self._refresh: dict[str, RefreshGrant] = {}
        self._revoked_families: set[str] = set()
        self._reused_codes: set[str] = set()

    def _purge(self, now: float) -> None:
        self._tx = {k: v for k, v in self._tx.items() if v.expires > now}
        self._codes = {k: v for k, v in self._codes.items() if v.expires > now}
        self._reused_codes = {k for k in self._reused_codes if k in self._codes}
        self._refresh = {k: v for k, v in self._refresh.items() if v.expires > now}

    def put_transaction(self, tx: LoginTransaction) -> None:
        """Store or replace a login transaction."""
        with self._lock:
            self._tx[tx.id] = tx

    def get_transaction(self, tx_id: str, *, now: float) -> LoginTransaction | None:
        """The live transaction, or ``None``."""
        with self._lock:
            tx = self._tx.get(tx_id)
            return tx if tx is not None and tx.expires > now else None

    def drop_transaction(self, tx_id: str) -> None:
        """Forget a transaction (after it produced a code, or failed for good)."""
        with self._lock:
            self._tx.pop(tx_id, None)

    def put_code(self, code_hash: str, grant: CodeGrant) -> None:
        """Store a new authorization code."""
        with self._lock:
            self._purge(grant.expires - 86400)
            self._codes[code_hash] = grant

    def peek_code(self, code_hash: str, *, now: float) -> CodeGrant | None:
        """The live code's grant, not marked used."""
        with self._lock:
            grant = self._codes.get(code_hash)
            return grant if grant is not None and grant.expires > now else None

    def redeem_code(self, code_hash: str, *, now: float) -> CodeGrant | None:
        """The code's grant, marked used. A second redemption returns it with
        ``used=True`` (the caller rejects it and revokes its results)."""
        with self._lock:
            grant = self._codes.get(code_hash)
            if grant is None or grant.expires <= now:
                return None
            if grant.used:
                self._reused_codes.add(code_hash)
            self._codes[code_hash] = replace(grant, used=True)
            return grant

    def record_code_result(self, code_hash: str, *, family: str, jtis: tuple[str, ...]) -> bool:
        """Remember the refresh family and token ids a code produced; ``True`` (and the
        family revoked) if the code was presented again meanwhile."""
        with self._lock:
            grant = self._codes.get(code_hash)
            if grant is not None:
                self._codes[code_hash] = replace(grant, family=family, jtis=jtis)
            if code_hash in self._reused_codes:
                self._revoked_families.add(family)
                return True
            return False

    def put_refresh(self, token_hash: str, grant: RefreshGrant) -> bool:
        """Store a new refresh token; ``True`` if its family is revoked already."""
        with self._lock:
            self._refresh[token_hash] = grant
            return grant.family in self._revoked_families

    def peek_refresh(self, token_hash: str, *, now: float) -> RefreshGrant | None:
        """The unexpired refresh token's grant, not used by this call."""
        with self._lock:
            grant = self._refresh.get(token_hash)
            return grant if grant is not None and grant.expires > now else None

    def family_jtis(self, family: str) -> tuple[str, ...]:
        """The access-token ids issued with the family's refresh tokens."""
        with self._lock:
            grants = [g for g in self._refresh.values() if g.family == family]
        return tuple(dict.fromkeys(g.jti for g in grants if g.jti is not None))

    def redeem_refresh(self, token_hash: str, *, now: float) -> RefreshGrant | None:
        """Use a refresh token once. A used or revoked token yields ``None``; a used one
        also revokes its family, so the thief's and the victim's tokens both stop."""
        with self._lock:
            grant = self._refresh.get(token_hash)
            if grant is None or grant.expires <= now:
                return None
            if grant.used or grant.family in self._revoked_families:
                self._revoked_families.add(grant.family)
                return None
            self._refresh[token_hash] = replace(grant, used=True)
            return grant

    def revoke_family(self, family: str) -> None:
        """Revoke every refresh token of ``family``."""
        with self._lock:
            self._revoked_families.add(family)
