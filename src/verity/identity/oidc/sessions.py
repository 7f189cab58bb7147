"""Server-side login sessions and login transactions, kept in the ``SessionStore``.

The browser holds only a random secret inside a signed cookie; the store keys records
by the secret's SHA-256, so a leaked database row cannot be replayed as a cookie. A
login transaction (state, nonce, PKCE verifier, return URL) is a short-lived record of
its own, deleted when the callback uses it (single use), and never becomes the session:
a successful login always creates a new session under a new random secret.

Back-channel logout finds sessions through small index records per IdP ``sid`` and per
``sub`` (their ``data`` lists session ids), so it works on every store backend.

Revocations from the ``RevocationStore`` (``apply``): a ``SESSION`` revocation evicts that
session from this node's cache; a ``SUBJECT`` revocation ends the subject's sessions
created at or before its ``revoked_at``: an in-memory table subject -> (revoked_at, until)
is consulted on every lookup (one dictionary read), and a refused session is deleted from
the store. The subject is matched against the session's principal id and its IdP ``sub``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from ... import invalidation
from ...model import Principal
from ...store import (
    DuplicateSessionError,
    Revocation,
    RevocationKind,
    RevocationStore,
    SessionRecord,
    SessionStore,
    StoreError,
)
from .config import LoginConfig
from .cookies import CookieSigner
from .errors import LoginStateError
from .provider import random_token

log = logging.getLogger("verity.identity.oidc")
Clock = Callable[[], float]
TRANSACTION_USER = "verity:login-transaction"
INDEX_USER = "verity:oidc-index"
_CACHE_MAX = 10000
_TX_FIELDS = ("provider", "state", "nonce", "verifier", "return_url", "redirect_uri")


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def _index_id(issuer: str, kind: str, value: str) -> str:
    return "oidc-idx:" + _digest(issuer, kind, value)


def principal_of(record: SessionRecord) -> Principal:
    """The ``Principal`` a session stands for (``session_id`` is the store's session id)."""
    stored: Mapping[str, Any] = record.data.get("principal", {})
    return Principal(
        id=record.user_id,
        email=stored.get("email"),
        groups=frozenset(stored.get("groups", ())),
        roles=frozenset(stored.get("roles", ())),
        claims=record.data.get("claims", {}),
        auth_methods=frozenset(stored.get("amr", ())),
        mfa=record.mfa,
        auth_time=record.auth_time,
        mfa_time=record.auth_time if record.mfa else None,
        session_id=record.id,
    )


def principal_data(principal: Principal) -> dict[str, Any]:
    """What ``principal_of`` needs, as JSON."""
    return {
        "email": principal.email,
        "groups": sorted(principal.groups),
        "roles": sorted(principal.roles),
        "amr": sorted(principal.auth_methods),
    }


class SessionManager:
    """Creates, finds (with a brief per-node cache) and revokes login sessions."""

    def __init__(
        self,
        *,
        store: SessionStore,
        signer: CookieSigner,
        config: LoginConfig,
        revocations: RevocationStore | None = None,
        clock: Clock = time.time,
    ) -> None:
        """``revocations`` (optional) fans this node's session revocations out to the
        other nodes, and theirs (``SESSION``, ``SUBJECT``) in to this one (``apply``)."""
        self.store = store
        self.signer = signer
        self.config = config
        self.revocations = revocations
        self._clock = clock
        self._cache: OrderedDict[str, tuple[SessionRecord, Principal, float]] = OrderedDict()
        self._revoked_subjects: dict[str, tuple[float, float]] = {}  # -> (revoked_at, until)
        self._revoked_sessions: dict[str, float] = {}  # session id -> until
        self._lock = threading.Lock()
        self._subscription = revocations.subscribe(self._on_revocation) if revocations else None

    def close(self) -> None:
        """Stop listening for revocations."""
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None

    # -- login transactions ---------------------------------------------------------------
    def begin(self, **transaction: str) -> str:
        """Store a login transaction; returns the signed value of its cookie."""
        now = self._clock()
        secret = random_token()
        record = SessionRecord(
            id="login-tx:" + _digest(secret),
            user_id=TRANSACTION_USER,
            created=now,
            last_seen=now,
            expires=now + self.config.login_timeout_seconds,
            data={name: transaction[name] for name in _TX_FIELDS},
        )
        self.store.create(record)
        return self.signer.sign("login", secret)

    def finish(self, cookie: str | None, untrusted_state: str | None) -> dict[str, str]:
        """Use up the transaction of ``cookie`` (once) and check ``state`` against it."""
        secret = self.signer.unsign("login", cookie)
        if secret is None:
            raise LoginStateError("no valid login-transaction cookie")
        tx_id = "login-tx:" + _digest(secret)
        record = self.store.get(tx_id, now=self._clock())
        if record is None or not self.store.revoke(tx_id):
            raise LoginStateError("login transaction unknown, expired or already used")
        expected = str(record.data.get("state", ""))
        if not untrusted_state or not hmac.compare_digest(
            untrusted_state.encode(), expected.encode()
        ):
            raise LoginStateError("state does not match the login transaction")
        return {name: str(record.data[name]) for name in _TX_FIELDS}

    # -- sessions -------------------------------------------------------------------------
    def create(self, principal: Principal, data: Mapping[str, Any]) -> tuple[str, SessionRecord]:
        """A new session for ``principal`` under a new secret; returns (cookie, record)."""
        now = self._clock()
        secret = random_token()
        record = SessionRecord(
            id=_digest(secret),
            user_id=principal.id,
            created=now,
            last_seen=now,
            expires=now + self.config.session_lifetime_seconds,
            mfa=principal.mfa,
            auth_time=principal.auth_time,
            data={**data, "principal": principal_data(principal)},
        )
        self.store.create(record)
        issuer = str(data.get("iss", ""))
        for kind in ("sid", "sub"):
            value = data.get(kind)
            if isinstance(value, str) and value:
                self._index(_index_id(issuer, kind, value), record)
        return self.signer.sign("session", secret), record

    def _index(self, index_id: str, session: SessionRecord) -> None:
        entry = {session.id: session.expires}
        record = SessionRecord(
            id=index_id,
            user_id=INDEX_USER,
            created=session.created,
            last_seen=session.created,
            expires=session.expires,
            data=entry,
        )
        for _ in range(2):
            try:
                self.store.create(record)
            except DuplicateSessionError:
                if self.store.touch(index_id, expires=session.expires, data=entry) is not None:
                    return
            else:
                return

    def session_id(self, cookie: str | None) -> str | None:
        """The store id of the session a cookie value names (signature checked), or None."""
        secret = self.signer.unsign("session", cookie)
        return None if secret is None else _digest(secret)

    def lookup(self, cookie: str | None) -> tuple[SessionRecord, Principal] | None:
        """The live session and principal of a cookie value; cached ``cache_seconds``.

        A revoked session, and a session of a revoked subject (created at or before the
        revocation), is ``None``: checked on cache hits and on store reads alike, so a row
        the store still holds (its delete failed, or raced this read) never comes back."""
        session_id = self.session_id(cookie)
        if session_id is None:
            return None
        now = self._clock()
        with self._lock:
            hit = self._cache.get(session_id)
        if hit is not None and now - hit[2] < self.config.cache_seconds and now < hit[0].expires:
            if self._revoked(hit[0], now):
                self._refuse(hit[0])
                return None
            return hit[0], hit[1]
        record = self.store.get(session_id, now=now)
        if record is None or record.user_id in (TRANSACTION_USER, INDEX_USER):
            self.evict(session_id)
            return None
        if self._revoked(record, now):
            self._refuse(record)
            return None
        return self.remember(record)

    def _revoked(self, record: SessionRecord, now: float) -> bool:
        """Whether the session, or its subject, is revoked (two dict reads at most)."""
        until = self._revoked_sessions.get(record.id) if self._revoked_sessions else None
        if until is not None and now < until:
            return True
        return bool(self._revoked_subjects) and self._subject_revoked(record, now)

    def _subject_revoked(self, record: SessionRecord, now: float) -> bool:
        """Whether the session's subject was revoked at or after the session was created."""
        revoked = self._revoked_subjects
        sub = record.data.get("sub")
        for subject in (record.user_id, sub if isinstance(sub, str) else None):
            entry = revoked.get(subject) if subject is not None else None
            if entry is not None and record.created <= entry[0] and now < entry[1]:
                return True
        return False

    def _refuse(self, record: SessionRecord) -> None:
        """End a revoked session (or one of a revoked subject): off the cache, and deleted
        from the store."""
        self.evict(record.id)
        try:
            self.store.revoke(record.id)
        except StoreError as exc:  # refused anyway, for as long as the revocation lasts
            log.warning("revoked session %s... not deleted: %s", record.id[:12], exc)
        else:
            log.info("session %s... ended: it or its subject was revoked", record.id[:12])

    def remember(self, record: SessionRecord) -> tuple[SessionRecord, Principal]:
        """Cache a freshly read or updated session."""
        principal = principal_of(record)
        with self._lock:
            self._cache[record.id] = (record, principal, self._clock())
            self._cache.move_to_end(record.id)
            while len(self._cache) > _CACHE_MAX:
                self._cache.popitem(last=False)
        return record, principal

    def evict(self, session_id: str) -> None:
        """Forget a cached session on this node."""
        with self._lock:
            self._cache.pop(session_id, None)

    def _on_revocation(self, revocation: Revocation) -> None:
        self.apply(revocation)

    def apply(self, revocation: Revocation) -> None:
        """Obey a revocation from the store (idempotent): ``SESSION`` evicts the session
        from this node's cache and refuses it until the revocation expires; ``SUBJECT``
        ends the subject's sessions created at or before ``revoked_at``, until the
        revocation expires. Other kinds name tokens."""
        if revocation.kind is RevocationKind.SESSION:
            self.revoke_session(revocation.value, until=revocation.expires)
        elif revocation.kind is RevocationKind.SUBJECT:
            self.revoke_subject(
                revocation.value, revoked_at=revocation.revoked_at, until=revocation.expires
            )

    def revoke_subject(self, subject: str, *, revoked_at: float, until: float) -> int:
        """Refuse ``subject``'s sessions created at or before ``revoked_at`` until ``until``;
        evicts the cached ones at once. Returns how many were evicted from the cache."""
        now = self._clock()
        with self._lock:
            self._purge(now)
            if until <= now:
                return 0
            old_at, old_until = self._revoked_subjects.get(subject, (revoked_at, until))
            entry = (max(revoked_at, old_at), max(until, old_until))
            self._revoked_subjects[subject] = entry
            doomed = [
                session_id
                for session_id, (record, _, _) in self._cache.items()
                if self._subject_revoked(record, now)
            ]
            for session_id in doomed:
                del self._cache[session_id]
        invalidation.bump()  # cached decisions and assertions of the subject go too
        return len(doomed)

    def revoke_session(self, session_id: str, *, until: float) -> None:
        """Refuse ``session_id`` until ``until`` (whatever the store still holds), and
        evict it from this node's cache at once."""
        now = self._clock()
        with self._lock:
            self._purge(now)
            if until > now:
                self._revoked_sessions[session_id] = max(
                    until, self._revoked_sessions.get(session_id, until)
                )
            self._cache.pop(session_id, None)
        invalidation.bump()  # cached decisions and assertions of the session go too

    def purge(self) -> None:
        """Forget session and subject revocations that have expired."""
        with self._lock:
            self._purge(self._clock())

    def _purge(self, now: float) -> None:
        expired = [s for s, (_, until) in self._revoked_subjects.items() if until <= now]
        for subject in expired:
            del self._revoked_subjects[subject]
        ended = [s for s, until in self._revoked_sessions.items() if until <= now]
        for session_id in ended:
            del self._revoked_sessions[session_id]

    def revoke(self, record: SessionRecord, *, reason: str) -> bool:
        """Delete a session at once, here and (through revocations) on every node."""
        expires = max(record.expires, self._clock() + 60)
        existed = self.store.revoke(record.id)  # a store that fails here changes nothing
        self.revoke_session(record.id, until=expires)
        if self.revocations is not None:
            self.revocations.revoke(
                RevocationKind.SESSION, record.id, expires=expires, reason=reason
            )
        log.info("session %s... revoked (%s)", record.id[:12], reason)
        return existed

    def revoke_matching(self, *, issuer: str, sub: str | None, sid: str | None) -> int:
        """Revoke the sessions from ``issuer`` with this ``sid`` and/or ``sub``."""
        candidates: set[str] = set()
        for kind, value in (("sid", sid), ("sub", sub)):
            if value is not None:
                index = self.store.get(_index_id(issuer, kind, value), now=self._clock())
                candidates.update(index.data if index is not None else ())
        revoked = 0
        for session_id in sorted(candidates):
            record = self.store.get(session_id, now=self._clock())
            if record is None or record.data.get("iss") != issuer:
                continue
            if sid is not None and record.data.get("sid") != sid:
                continue
            if sub is not None and record.data.get("sub") != sub:
                continue
            revoked += self.revoke(record, reason="oidc back-channel logout")
        return revoked
