"""The store protocols: what every backend of each kind of state promises.

Every method is synchronous and thread-safe; ``now`` (UNIX seconds) defaults to the
current time and is a parameter so that expiry is testable and replayable. Each protocol
states its consistency guarantees; backends are tested against them by one shared,
parametrized test suite (``tests/store``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Protocol

from .records import (
    DeviceRecord,
    Grant,
    JsonObject,
    KeyVersion,
    PostureReport,
    Revocation,
    RevocationKind,
    RiskSignal,
    ScoreFactor,
    SessionRecord,
    TrustScore,
)

RevocationCallback = Callable[[Revocation], None]


class Subscription(Protocol):
    """A live subscription; ``close()`` stops deliveries to its callback."""

    def close(self) -> None: ...


class SessionStore(Protocol):
    """Server-side sessions.

    Consistency: linearizable per session id (one database row). ``touch`` is one atomic
    update that only moves ``last_seen``/``expires`` forward and bumps ``version``, so
    concurrent refreshes from many nodes never lose a write nor regress expiry; ``rotate``
    replaces a session by a new id exactly once (one caller wins, the others get ``None``).
    A session whose ``expires`` is not after ``now`` is invisible.
    """

    def create(self, session: SessionRecord) -> SessionRecord:
        """Store a new session; raises ``DuplicateSessionError`` if the id exists."""

    def get(self, session_id: str, *, now: float | None = None) -> SessionRecord | None:
        """The live session, or ``None`` if unknown, revoked or expired."""

    def touch(
        self,
        session_id: str,
        *,
        now: float | None = None,
        expires: float | None = None,
        trust_score: int | None = None,
        data: JsonObject | None = None,
    ) -> SessionRecord | None:
        """Record activity: ``last_seen=max(last_seen, now)``, ``expires=max(expires, expires)``.

        ``trust_score`` replaces the score if given; ``data`` is merged key by key (top
        level). Returns the updated session, or ``None`` if it is not live.
        """

    def rotate(
        self, session_id: str, new_id: str, *, now: float | None = None, expires: float
    ) -> SessionRecord | None:
        """Atomically replace a live session by ``new_id`` (same user and data).

        Of concurrent rotations of one session exactly one succeeds; the others get ``None``.
        """

    def list_for_user(self, user_id: str, *, now: float | None = None) -> list[SessionRecord]:
        """The user's live sessions, oldest first."""

    def revoke(self, session_id: str) -> bool:
        """Delete the session; ``True`` if it existed. (Publish a Revocation for caches.)"""

    def delete_expired(self, *, now: float | None = None) -> int:
        """Delete sessions expired at ``now``; returns how many."""


class RevocationStore(Protocol):
    """Revocations of sessions, subjects, token hashes and JWT ids, until they expire.

    Consistency: a ``revoke`` that returned is visible to every later ``lookup`` on every
    node (durable backends) and is delivered to every live subscription, at least once,
    after it is stored: SQLite in-process (synchronously, one process), PostgreSQL by
    NOTIFY at commit, Redis by pub/sub. Subscribers may see duplicates (drop them by
    ``Revocation.id``) and, over pub/sub, may miss events while disconnected: a node
    rebuilds its view with ``active()`` on (re)start. Revoking again extends the expiry.
    """

    def revoke(
        self,
        kind: RevocationKind,
        value: str,
        *,
        expires: float,
        reason: str = "",
        now: float | None = None,
    ) -> Revocation:
        """Revoke ``kind``/``value`` until ``expires``; returns what is now stored."""

    def lookup(
        self, kind: RevocationKind, value: str, *, now: float | None = None
    ) -> Revocation | None:
        """The revocation in force for ``kind``/``value`` at ``now``, if any."""

    def is_revoked(self, kind: RevocationKind, value: str, *, now: float | None = None) -> bool:
        """Whether a revocation is in force (for ``SUBJECT``, compare ``revoked_at`` too)."""

    def active(self, *, now: float | None = None) -> list[Revocation]:
        """Every revocation in force at ``now`` (to warm a node's local view)."""

    def purge_expired(self, *, now: float | None = None) -> int:
        """Forget revocations that expired; returns how many."""

    def subscribe(self, callback: RevocationCallback) -> Subscription:
        """Call ``callback`` with every revocation stored from now on (on a background
        thread for PostgreSQL and Redis). Returns once the subscription is live."""

    def close(self) -> None:
        """Stop every subscription and release connections."""


def store_revision(store: RevocationStore) -> Hashable | None:
    """``store.revision()`` when the store has one, else None.

    A revision is an optional change marker (SQLite: ``SqliteRevocations.revision``): it
    differs after any process stored, extended or purged a revocation, so a node that no
    notification reaches can watch it cheaply and re-read ``active()`` only on a change.
    Stores that notify every node (PostgreSQL, Redis) need none."""
    revision: Callable[[], Hashable | None] | None = getattr(store, "revision", None)
    return None if revision is None else revision()


class DeviceStore(Protocol):
    """Registered devices and their newest posture report.

    Consistency: per device, last-writer-wins for registration; posture reports are
    ordered by ``reported_at``, so an older report arriving late never replaces a newer one.
    """

    def upsert(
        self,
        device_id: str,
        *,
        owner: str | None,
        attributes: JsonObject | None = None,
        now: float | None = None,
    ) -> DeviceRecord:
        """Register a device or update its owner and attributes (posture is kept)."""

    def report(self, report: PostureReport) -> bool:
        """Store a posture report; ``False`` if a newer one is already stored.

        Raises ``UnknownDeviceError`` for a device that is not registered.
        """

    def get(self, device_id: str) -> DeviceRecord | None:
        """The device with its newest posture, or ``None``."""

    def list(self, *, owner: str | None = None) -> list[DeviceRecord]:
        """Every device (of ``owner``, if given), by id."""

    def delete(self, device_id: str) -> bool:
        """Forget a device; ``True`` if it existed."""


class RiskStore(Protocol):
    """Risk signals (append-only) and the current trust score of each subject.

    Consistency: signals are durable once ``append`` returns and are listed in time
    order. Scores are compare-and-set: ``set_score(expected_version=v)`` succeeds only if
    the stored version is ``v`` (0 = no score yet), else ``ConcurrentUpdateError``.
    """

    def append(self, signal: RiskSignal) -> None:
        """Store a signal (storing the same ``id`` twice keeps one)."""

    def signals(self, subject: str, *, since: float = 0.0, limit: int = 100) -> list[RiskSignal]:
        """The subject's signals at or after ``since``, oldest first, at most ``limit``."""

    def get_score(self, subject: str) -> TrustScore | None:
        """The current score of ``subject``, or ``None``."""

    def set_score(
        self,
        subject: str,
        score: int,
        factors: tuple[ScoreFactor, ...],
        *,
        now: float | None = None,
        expected_version: int | None = None,
    ) -> TrustScore:
        """Store a score (0-100) and why; bumps the version. See the class for CAS."""


class GrantStore(Protocol):
    """Just-in-time grants: request, decide (never by the requester), expire.

    Consistency: a pending grant is decided exactly once (a concurrent approve and deny:
    one wins, the other raises ``GrantStateError``). Self-approval is refused by the
    store and by a database constraint. ``active`` is computed from times, so a grant
    ends on time whether or not ``expire`` has run.
    """

    def request(
        self,
        principal: str,
        name: str,
        *,
        duration: float,
        reason: str = "",
        now: float | None = None,
    ) -> Grant:
        """File a pending request for ``name`` lasting ``duration`` seconds once approved."""

    def approve(self, grant_id: str, *, approver: str, now: float | None = None) -> Grant:
        """Approve a pending grant: active from ``now`` for its duration."""

    def deny(self, grant_id: str, *, approver: str, now: float | None = None) -> Grant:
        """Deny a pending grant."""

    def get(self, grant_id: str) -> Grant | None:
        """The grant with this id, or ``None``."""

    def active(self, principal: str, *, at: float | None = None) -> list[Grant]:
        """The principal's grants in force at ``at``, by expiry."""

    def expire(self, *, now: float | None = None) -> int:
        """Mark approved grants that have ended as expired; returns how many."""


class CounterStore(Protocol):
    """Sliding-window counters (brute force, rate).

    A hit at time ``t`` counts at ``now`` when ``now - window < t <= now``. ``hit`` is
    atomic: concurrent hits on one key each see a distinct count (1, 2, 3, ...). Use
    one window length per key.
    """

    def hit(self, key: str, *, window: float, now: float | None = None) -> int:
        """Record a hit and return the count in the window, this hit included.

        Hits that other nodes stamped a little later than ``now`` but stored first are
        counted too, so the results of concurrent hits are 1, 2, 3 ... without repeats.
        """

    def count(self, key: str, *, window: float, now: float | None = None) -> int:
        """The hits in the window ending at ``now``."""

    def reset(self, key: str) -> None:
        """Forget every hit of ``key`` (e.g. after a successful login)."""


class KeyStore(Protocol):
    """Versioned key material, by name. Material is returned only by ``get``; never logged.

    Consistency: versions of a name are numbered 1, 2, 3 ... without gaps or duplicates,
    also under concurrent ``put``; a stored version never changes.
    """

    def put(
        self, name: str, material: bytes, *, algorithm: str, now: float | None = None
    ) -> KeyVersion:
        """Store a new version of ``name``; returns it (with its number)."""

    def get(self, name: str, version: int | None = None) -> KeyVersion | None:
        """A version of the key (the newest if ``version`` is ``None``)."""

    def versions(self, name: str) -> list[KeyVersion]:
        """Every version of ``name``, oldest first."""

    def names(self) -> list[str]:
        """The names of all keys."""


class TokenCache(Protocol):
    """Verified token claims by token hash, until the token expires.

    Consistency: best effort. A hit is a token verified earlier by some node; a miss
    means "verify again". Revocation is checked separately on every request, so a stale
    entry can never keep a revoked token alive; ``evict`` is immediate where it runs.
    """

    def put(
        self, token_hash: str, claims: JsonObject, *, expires: float, now: float | None = None
    ) -> None:
        """Cache ``claims`` until ``expires`` (``token_hash`` is a SHA-256 hex digest)."""

    def get(self, token_hash: str, *, now: float | None = None) -> JsonObject | None:
        """The cached claims, or ``None``."""

    def evict(self, token_hash: str) -> None:
        """Drop an entry."""
