"""Revocations from the shared store, obeyed by this node's token verifiers and sessions.

    sync = start_revocation_sync(stores, verifiers=verifiers, sessions=login.sessions)
    ...
    sync.close()

``RevocationSync`` loads every revocation in force from the node's ``RevocationStore``
(``active()``), subscribes, and reads ``active()`` once more, so nothing stored in between
is missed; after that each delivered revocation is applied at once, and ``active()`` is
read again every
``poll_seconds`` to catch what a subscription cannot deliver (a SQLite store written by
another process, e.g. ``verity revoke`` or another worker of ``verity serve --workers``;
a pub/sub message lost while disconnected).

On SQLite the store also has a cheap change marker (``SqliteRevocations.revision``:
``PRAGMA data_version``, then a one-row aggregate only after a write): with
``watch_seconds`` (``WATCH_SQLITE``, 50 ms, on SQLite) the poll thread checks it that
often and re-reads ``active()`` as soon as it changed, so another process's revocation
is obeyed here within ``watch_seconds`` plus one read of ``active()`` (about 50-60 ms),
not ``poll_seconds``. The full re-read every ``poll_seconds`` stays as the safety net;
after a failed check the thread waits ``poll_seconds`` (no log flood while the store is
down).

    TOKEN   (value: SHA-256 hex of the token's JWS signing input ``header.payload``,
            ``verity.identity.core.signing_input_hash``; a legacy value, the SHA-256 of
            the whole token, still matches that exact token)
            -> every verifier: ``revoke(token_hash=...)``, every signature form of it
    JTI     -> every verifier: ``revoke(jti=...)``
    SUBJECT -> every verifier: ``revoke(subject=..., revoked_at=...)``, the subject's
               tokens issued at or before ``revoked_at`` plus the verifier's
               ``leeway_seconds`` (or without ``iat``); and the
               subject's browser sessions created at or before ``revoked_at`` end
    SESSION -> the session leaves this node's session cache

Each revocation is remembered until its ``expires`` and then forgotten (here, in the
verifiers' ``RevocationList`` and in the ``SessionManager``), so memory follows the
revocations in force. Applying is idempotent and only new or extended revocations are
applied, so a poll that finds nothing new costs no cache eviction.

Fail closed: ``start`` raises ``RevocationsUnavailableError`` when the revocations in
force cannot be read after a few bounded retries; ``verity serve`` then refuses to start
rather than serve as if nothing were revoked. A later failed poll keeps what is known
(the subscription still delivers) and is logged; the next poll retries.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from .. import invalidation
from ..store import (
    Revocation,
    RevocationKind,
    RevocationStore,
    SessionStore,
    StoreError,
    Subscription,
    store_revision,
)
from .verifier import TokenVerifier

if TYPE_CHECKING:
    from ..store import Stores
    from .oidc.sessions import SessionManager

log = logging.getLogger("verity.identity")
Clock = Callable[[], float]
Sleep = Callable[[float], None]
POLL_SQLITE = 2.0  # the only way another process's revocation reaches this one
POLL_SHARED = 30.0  # NOTIFY / pub/sub deliver at once; the poll is a safety net
WATCH_SQLITE = 0.05  # SQLite's change marker: another process's revocation within ~50 ms
_UNSEEN = object()
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)  # before giving up at start: about 7.5 s in all


class RevocationsUnavailableError(StoreError):
    """The revocations in force could not be read: the node must not serve without them."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"cannot load the revocations in force from the store ({reason}); "
            "refusing to serve as if nothing were revoked"
        )


def apply_to_verifier(verifier: TokenVerifier, revocation: Revocation) -> int:
    """Apply one stored revocation to a verifier; returns the cache entries evicted."""
    kind, value, until = revocation.kind, revocation.value, revocation.expires
    if kind is RevocationKind.TOKEN:
        return verifier.revoke(token_hash=value, until=until)
    if kind is RevocationKind.JTI:
        return verifier.revoke(jti=value, until=until)
    if kind is RevocationKind.SUBJECT:
        return verifier.revoke(subject=value, revoked_at=revocation.revoked_at, until=until)
    return 0  # SESSION: a browser session, not a token


class RevocationSync:
    """Keeps a node's verifiers and sessions in step with the shared revocation store."""

    def __init__(
        self,
        store: RevocationStore,
        *,
        verifiers: Sequence[TokenVerifier],
        sessions: SessionManager | None = None,
        poll_seconds: float = POLL_SHARED,
        watch_seconds: float = 0.0,
        clock: Clock = time.time,
    ) -> None:
        """``poll_seconds`` <= 0 turns the periodic re-read off (tests). ``watch_seconds``
        > 0 checks the store's ``revision()`` that often and re-reads on a change (only
        for stores that have one, and only while the periodic re-read is on)."""
        self.store = store
        self.verifiers = tuple(verifiers)
        self.sessions = sessions
        self.poll_seconds = poll_seconds
        self.watch_seconds = watch_seconds
        self._clock = clock
        self._seen: dict[tuple[RevocationKind, str], tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._subscription: Subscription | None = None
        self._thread: threading.Thread | None = None
        self.loaded = False
        self.applied = 0

    def __len__(self) -> int:
        """How many revocations in force this node knows of."""
        return len(self._seen)

    def start(
        self, *, retry_delays: Iterable[float] = RETRY_DELAYS, sleep: Sleep = time.sleep
    ) -> int:
        """Load every revocation in force and subscribe (retrying after each of
        ``retry_delays``), then start polling. Returns how many were applied; raises
        ``RevocationsUnavailableError`` (after closing what it opened) if that fails."""
        try:
            count = self._load(tuple(retry_delays), sleep)
        except BaseException:
            self.close()
            raise
        self.loaded = True
        if self.poll_seconds > 0:
            self._thread = threading.Thread(
                target=self._poll, name="verity-revocation-sync", daemon=True
            )
            self._thread.start()
        log.info("revocations in force loaded: %d", count)
        return count

    def _load(self, delays: tuple[float, ...], sleep: Sleep) -> int:
        count = 0
        for delay in (*delays, None):
            try:
                count += self.reconcile()
                if self._subscription is None:
                    self._subscription = self.store.subscribe(self._deliver)
                    count += self.reconcile()  # stored while the subscription started
            except (StoreError, ValueError) as exc:
                if delay is None:
                    raise RevocationsUnavailableError(str(exc)) from None
                log.warning("revocations not loaded (%s); retrying", exc)
                sleep(delay)
            else:
                return count
        raise RevocationsUnavailableError("no attempt made")  # pragma: no cover

    def reconcile(self) -> int:
        """Read every revocation in force and apply the new ones; forget expired ones.
        Returns how many were applied. Raises ``StoreError`` if the store fails."""
        revocations = self.store.active()
        applied = sum(self.apply(revocation) for revocation in revocations)
        self.purge()
        return applied

    def _deliver(self, revocation: Revocation) -> None:
        self.apply(revocation)

    def apply(self, revocation: Revocation) -> bool:
        """Apply one revocation unless it is expired or already applied (the same or a
        later ``revoked_at`` and ``expires``). Returns whether it was applied. Never
        raises: it runs on the store's delivery threads."""
        key = (revocation.kind, revocation.value)
        with self._lock:
            if revocation.expires <= self._clock():
                return False
            known = self._seen.get(key)
            if (
                known is not None
                and known[0] >= revocation.revoked_at
                and known[1] >= revocation.expires
            ):
                return False
            at, until = known or (revocation.revoked_at, revocation.expires)
            self._seen[key] = (max(at, revocation.revoked_at), max(until, revocation.expires))
            self.applied += 1
        try:
            evicted = sum(apply_to_verifier(v, revocation) for v in self.verifiers)
            if self.sessions is not None:
                self.sessions.apply(revocation)
        except Exception:  # a delivery thread must survive; the next poll applies it again
            with self._lock:
                self._seen.pop(key, None)
            log.exception("revocation of kind %s not applied", revocation.kind.value)
            return False
        invalidation.bump()  # whatever kind it is: cached decisions and assertions go
        log.info("revocation applied: kind=%s evicted=%d", revocation.kind.value, evicted)
        return True

    def purge(self) -> None:
        """Forget expired revocations here, in the verifiers and in the sessions."""
        now = self._clock()
        with self._lock:
            for key in [k for k, (_, until) in self._seen.items() if until <= now]:
                del self._seen[key]
        for verifier in self.verifiers:
            verifier.revocations.purge()
        if self.sessions is not None:
            self.sessions.purge()

    def _poll(self) -> None:
        try:
            watch = self.watch_seconds > 0 and store_revision(self.store) is not None
        except Exception:  # noqa: BLE001 - a store failing now: watch, the first tick retries
            watch = self.watch_seconds > 0
        interval = self.watch_seconds if watch else self.poll_seconds
        seen: object = _UNSEEN  # the revision at the last re-read
        due = time.monotonic() + self.poll_seconds
        while not self._stop.wait(interval):
            interval = self.watch_seconds if watch else self.poll_seconds
            try:
                if watch:
                    revision = store_revision(self.store)  # read first: no change is missed
                    if revision == seen and time.monotonic() < due:
                        continue
                    seen = revision
                due = time.monotonic() + self.poll_seconds
                self.reconcile()
            except (StoreError, ValueError) as exc:
                seen, interval = _UNSEEN, self.poll_seconds  # retry at the poll, no log flood
                log.warning("revocations not re-read (%s); the subscription still delivers", exc)
            except Exception:  # the poll must outlive any error: on SQLite it is the channel
                seen, interval = _UNSEEN, self.poll_seconds
                log.exception("revocations not re-read; retrying at the next poll")

    def close(self) -> None:
        """Stop the subscription and the poll thread (idempotent)."""
        self._stop.set()
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            subscription.close()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)


def start_revocation_sync(
    stores: Stores,
    *,
    verifiers: Sequence[TokenVerifier],
    sessions: SessionManager | None = None,
    retry_delays: Iterable[float] = RETRY_DELAYS,
) -> RevocationSync:
    """A started ``RevocationSync`` on the node's stores (on SQLite: watching the store's
    revision every ``WATCH_SQLITE`` seconds and re-reading everything every
    ``POLL_SQLITE``; on PostgreSQL re-reading every ``POLL_SHARED``); raises
    ``RevocationsUnavailableError`` when the revocations in force cannot be loaded."""
    sqlite = stores.backend == "sqlite"
    sync = RevocationSync(
        stores.revocations, verifiers=verifiers, sessions=sessions,
        poll_seconds=POLL_SQLITE if sqlite else POLL_SHARED,
        watch_seconds=WATCH_SQLITE if sqlite else 0.0,
    )  # fmt: skip
    sync.start(retry_delays=retry_delays)
    return sync


def record_revocation(
    revocations: RevocationStore,
    kind: RevocationKind,
    value: str,
    *,
    expires: float,
    reason: str = "",
    sessions: SessionStore | None = None,
) -> tuple[Revocation, int]:
    """Store a revocation (every node obeys it) and, with ``sessions``, delete what it ends
    from the session store: a session's row first (then the revocation), a subject's
    sessions created at or before ``revoked_at`` after it. Returns (the stored
    revocation, sessions deleted).

    Raises ``ValueError`` for a bad value or expiry, ``StoreError`` if the store is
    down (before the revocation is stored, nothing is deleted)."""
    ended = 0
    if sessions is not None and kind is RevocationKind.SESSION:
        # the row first: no node reading the store between the two steps re-caches it
        ended = int(sessions.revoke(value))
    revocation = revocations.revoke(kind, value, expires=expires, reason=reason)
    if sessions is not None and kind is RevocationKind.SUBJECT:
        for record in sessions.list_for_user(value):
            if record.created <= revocation.revoked_at:
                ended += int(sessions.revoke(record.id))
    return revocation, ended


__all__ = [
    "POLL_SHARED",
    "POLL_SQLITE",
    "WATCH_SQLITE",
    "RevocationSync",
    "RevocationsUnavailableError",
    "apply_to_verifier",
    "record_revocation",
    "start_revocation_sync",
]
