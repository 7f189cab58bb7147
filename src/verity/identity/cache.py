"""The verified-token cache and the revocation list.

``VerifiedTokenCache`` maps SHA-256(token) to its ``VerifiedToken``: least recently used
entries go first when full, entries leave at their token's ``exp``, and ``revoke`` (by
hash, ``jti`` or subject) or a removed signing key evicts them at once. A TOKEN revocation
is keyed on the SHA-256 of the token's JWS signing input (``header.payload``), so it
covers every signature over the same header and payload (an ECDSA signature (r, s) has a
second valid form (r, n - s)); the cache stays keyed on the whole token, so a hit costs
one SHA-256 of the token and a lookup.

Each entry also holds the ``Principal`` built from the token (``attach``/``principal``),
so a hit does not redo the claims -> principal mapping. The principal lives and dies with
its token's entry (expiry, LRU, every revocation and removed key evict both at once), and
is only served to the same ``scope`` (the verifier's rules) and the same claim ``mapping``
it was built with: a verifier with another claim mapping never gets it. Revocation is
also remembered in a ``RevocationList``, so a revoked token that is presented again fails
its fresh verification instead of being cached anew. Revocations read from the shared
store keep their own times (``revoked_at``, ``until``); see
``verity.identity.revocation_sync``.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .. import invalidation
from ..model import Principal
from .core import VerifiedToken
from .errors import TokenRevokedError

Clock = Callable[[], float]


@dataclass(slots=True)
class CacheStats:
    """Counters for metrics."""

    hits: int = 0
    misses: int = 0
    expired: int = 0
    evicted_lru: int = 0
    revoked: int = 0


class CacheEntry:
    """One cached token, the ``scope`` that put it, and (once built) its principal with
    the claim mapping it was built by."""

    __slots__ = ("mapping", "principal", "scope", "token")

    def __init__(self, token: VerifiedToken, scope: object) -> None:
        self.token = token
        self.scope = scope
        self.principal: Principal | None = None
        self.mapping: object = None


class VerifiedTokenCache:
    """A bounded LRU of verified tokens, thread-safe, evicting at expiry and on revocation."""

    def __init__(self, *, max_entries: int = 10000, clock: Clock = time.time) -> None:
        self.max_entries = max_entries
        self.stats = CacheStats()
        self._clock = clock
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()
        self._expiry: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self.generation = 0  # bumped by every revocation; see put()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, digest: str, scope: object = None) -> VerifiedToken | None:
        """The cached token for ``digest`` (SHA-256 hex), if present, not expired, and put
        by the same ``scope`` (a verifier's rules: a token verified for one issuer or
        audience is never a hit for another verifier sharing the cache)."""
        entry = self.entry(digest, scope)
        return None if entry is None else entry.token

    def entry(self, digest: str, scope: object = None) -> CacheEntry | None:
        """``get``, answering the whole entry (token and cached principal)."""
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None or entry.scope is not scope:
                self.stats.misses += 1
                return None
            if self._clock() >= entry.token.expires_at:
                del self._entries[digest]
                self.stats.expired += 1
                self.stats.misses += 1
                return None
            self._entries.move_to_end(digest)
            self.stats.hits += 1
            return entry

    def attach(
        self, token: VerifiedToken, principal: Principal, *, scope: object, mapping: object
    ) -> bool:
        """Keep ``principal`` (built from ``token`` by claim ``mapping``) with the token's
        entry; False when the entry is gone (revoked, evicted) or is another token's."""
        with self._lock:
            entry = self._entries.get(token.token_hash)
            if entry is None or entry.token is not token or entry.scope is not scope:
                return False
            entry.principal, entry.mapping = principal, mapping
            return True

    def put(
        self, token: VerifiedToken, *, scope: object = None, generation: int | None = None
    ) -> bool:
        """Cache ``token``; skipped when already expired or when a revocation happened
        since ``generation`` was read (so a racing verification cannot re-cache it)."""
        if self.max_entries <= 0:
            return False
        with self._lock:
            now = self._clock()
            if now >= token.expires_at or (
                generation is not None and generation != self.generation
            ):
                return False
            self._purge_expired(now)
            self._entries[token.token_hash] = CacheEntry(token, scope)
            self._entries.move_to_end(token.token_hash)
            heapq.heappush(self._expiry, (token.expires_at, token.token_hash))
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
                self.stats.evicted_lru += 1
            return True

    def _purge_expired(self, now: float) -> None:
        expiry = self._expiry
        while expiry and expiry[0][0] <= now:
            _, digest = heapq.heappop(expiry)
            entry = self._entries.get(digest)
            if entry is not None and entry.token.expires_at <= now:
                del self._entries[digest]
                self.stats.expired += 1
        if len(expiry) > 2 * self.max_entries + 64:  # drop heap entries of evicted tokens
            self._expiry = [(exp, d) for exp, d in expiry if d in self._entries]
            heapq.heapify(self._expiry)

    def evict(self, match: Callable[[VerifiedToken], bool]) -> int:
        """Remove every entry ``match`` selects; bumps ``generation``. Returns the count."""
        with self._lock:
            self.generation += 1
            doomed = [digest for digest, entry in self._entries.items() if match(entry.token)]
            for digest in doomed:
                del self._entries[digest]
            self.stats.revoked += len(doomed)
        invalidation.bump()  # cached decisions and assertions go too
        return len(doomed)

    def revoke(
        self,
        *,
        token_hash: str | None = None,
        jti: str | None = None,
        subject: str | None = None,
        issued_before: float | None = None,
    ) -> int:
        """Evict at once the tokens with this hash, ``jti`` or subject (any that is given).
        ``token_hash`` matches a token's ``signing_input_hash`` (every form of the token)
        or, for a value stored as the SHA-256 of the whole token, its ``token_hash``. With
        ``issued_before``, only the subject's tokens issued at or before that time (and
        those without ``iat``); the verifier passes the revocation time plus its leeway,
        as ``RevocationList`` rejects them."""

        def of_subject(t: VerifiedToken) -> bool:
            if subject is None or t.subject != subject:
                return False
            return issued_before is None or t.issued_at is None or t.issued_at <= issued_before

        return self.evict(
            lambda t: (
                (token_hash is not None and token_hash in (t.signing_input_hash, t.token_hash))
                or (jti is not None and t.jti == jti)
                or of_subject(t)
            )
        )

    def evict_keys(self, kids: Iterable[str | None]) -> int:
        """Evict tokens verified with keys that are no longer trusted."""
        gone = frozenset(kids)
        return self.evict(lambda t: t.key_id in gone) if gone else 0

    def clear(self) -> None:
        """Drop every entry."""
        self.evict(lambda _: True)


class RevocationList:
    """Revoked token hashes, ``jti`` values and subjects, each remembered until its
    ``until`` (default: ``ttl`` seconds from now); expired entries are dropped by every
    ``add`` and by ``purge``, so the list never outgrows the revocations in force.

    A token hash is the SHA-256 hex of the token's JWS signing input (``header.payload``,
    ``VerifiedToken.signing_input_hash``, as ``verity revoke token`` stores it): it
    rejects every token with that header and payload, whatever its signature. A hash of
    the whole token (``token_hash``, stored before this) still rejects that exact token.

    A subject revocation rejects that subject's tokens issued at or before ``revoked_at``
    plus the verifier's leeway (``check(token, leeway=...)``: an issuer's clock may run
    that far ahead of the host that revoked) and its tokens without ``iat``; tokens
    issued later are accepted. ``revoked_at`` defaults to now; a revocation read from the
    store keeps the store's time. Revoking a subject again keeps the later ``revoked_at``
    and the later ``until``.
    """

    def __init__(self, *, ttl: float = 86400, clock: Clock = time.time) -> None:
        self._ttl = ttl
        self._clock = clock
        self._hashes: dict[str, float] = {}
        self._jtis: dict[str, float] = {}
        self._subjects: dict[str, tuple[float, float]] = {}  # subject -> (revoked_at, until)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._hashes) + len(self._jtis) + len(self._subjects)

    def add(
        self,
        *,
        token_hash: str | None = None,
        jti: str | None = None,
        subject: str | None = None,
        revoked_at: float | None = None,
        until: float | None = None,
    ) -> None:
        """Remember a revocation; at least one of the three selectors must be given.

        ``revoked_at`` (default now) is when a subject was revoked; ``until`` (default
        ``ttl`` seconds from now) is when the entry is forgotten. A revocation that has
        already expired is not remembered."""
        if token_hash is None and jti is None and subject is None:
            raise ValueError("revoke needs token_hash, jti or subject")
        now = self._clock()
        until = now + self._ttl if until is None else until
        at = now if revoked_at is None else revoked_at
        with self._lock:
            self._purge(now)
            if until <= now:
                return
            if token_hash is not None:
                self._hashes[token_hash] = max(until, self._hashes.get(token_hash, until))
            if jti is not None:
                self._jtis[jti] = max(until, self._jtis.get(jti, until))
            if subject is not None:
                old_at, old_until = self._subjects.get(subject, (at, until))
                self._subjects[subject] = (max(at, old_at), max(until, old_until))
        invalidation.bump()  # cached decisions and assertions go too

    def purge(self) -> None:
        """Forget the entries that have expired."""
        with self._lock:
            self._purge(self._clock())

    def _purge(self, now: float) -> None:
        for table in (self._hashes, self._jtis):
            for key in [k for k, until in table.items() if until <= now]:
                del table[key]
        for key in [k for k, (_, until) in self._subjects.items() if until <= now]:
            del self._subjects[key]

    def check(self, token: VerifiedToken, *, leeway: float) -> None:
        """Raise ``TokenRevokedError`` if ``token`` is revoked. ``leeway`` is the
        verifier's allowed clock skew (seconds), applied to subject revocations."""
        if not (self._hashes or self._jtis or self._subjects):
            return
        now = self._clock()
        digest = token.token_hash
        hashes = self._hashes
        if hashes and (
            hashes.get(token.signing_input_hash, 0) > now or hashes.get(digest, 0) > now
        ):
            raise TokenRevokedError("token revoked by hash", token_hash=digest)
        if token.jti is not None and self._jtis.get(token.jti, 0) > now:
            raise TokenRevokedError("token revoked by jti", token_hash=digest)
        entry = self._subjects.get(token.subject) if token.subject is not None else None
        if (
            entry is not None
            and entry[1] > now
            and (token.issued_at is None or token.issued_at <= entry[0] + leeway)
        ):
            raise TokenRevokedError(
                "subject revoked; token issued before the revocation (plus leeway)",
                token_hash=digest,
            )
