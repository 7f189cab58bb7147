"""Helpers shared by the backends: time, argument checks, in-process fan-out."""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections import OrderedDict

from .protocols import RevocationCallback
from .records import Grant, Revocation, new_id

log = logging.getLogger("verity.store")

MAX_VALUE = 512  # longest revoked value / key name accepted (fits a NOTIFY payload)
MAX_REASON = 256
_HEX64 = re.compile(r"[0-9a-f]{64}")


def current(now: float | None) -> float:
    """``now`` if given, else the current UNIX time."""
    return time.time() if now is None else float(now)


def check_text(what: str, value: str, limit: int = MAX_VALUE) -> str:
    """Refuse empty or overlong identifiers (``ValueError`` naming ``what``)."""
    if not value or len(value) > limit:
        raise ValueError(f"{what} must have 1 to {limit} characters")
    return value


def check_reason(reason: str) -> str:
    """Refuse overlong free-text reasons."""
    if len(reason) > MAX_REASON:
        raise ValueError(f"reason must have at most {MAX_REASON} characters")
    return reason


def check_score(score: int) -> int:
    """Refuse a trust score outside 0-100."""
    if not 0 <= score <= 100:
        raise ValueError("a trust score is between 0 and 100")
    return score


def check_positive(what: str, value: float) -> float:
    """Refuse a non-positive duration or window."""
    if not value > 0:
        raise ValueError(f"{what} must be positive")
    return float(value)


def check_future(what: str, value: float, now: float) -> float:
    """Refuse an expiry time that is not after ``now`` (or not finite)."""
    if not (math.isfinite(value) and value > now):
        raise ValueError(f"{what} must be after now")
    return float(value)


def check_token_hash(token_hash: str) -> str:
    """Refuse anything but a SHA-256 hex digest, so raw tokens are never stored."""
    if not _HEX64.fullmatch(token_hash):
        raise ValueError("token_hash must be a lower-case SHA-256 hex digest (token_hash())")
    return token_hash


class CallbackSubscription:
    """A subscription that removes its callback from a :class:`LocalBus` on close."""

    def __init__(self, bus: LocalBus, callback: RevocationCallback) -> None:
        self._bus = bus
        self._callback = callback

    def close(self) -> None:
        """Stop deliveries to the callback (idempotent)."""
        self._bus.remove(self._callback)


class LocalBus:
    """Delivers revocations to in-process callbacks; a failing callback is logged, not fatal."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: list[RevocationCallback] = []

    def add(self, callback: RevocationCallback) -> CallbackSubscription:
        """Register a callback."""
        with self._lock:
            self._callbacks.append(callback)
        return CallbackSubscription(self, callback)

    def remove(self, callback: RevocationCallback) -> None:
        """Unregister a callback (no error if absent)."""
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

    def __len__(self) -> int:
        with self._lock:
            return len(self._callbacks)

    def publish(self, revocation: Revocation) -> None:
        """Call every callback with ``revocation``."""
        with self._lock:
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback(revocation)
            except Exception:
                log.exception("revocation subscriber failed")


class Deduplicator:
    """Passes each revocation id once (bounded memory), for subscribers fed by two channels."""

    def __init__(self, callback: RevocationCallback, *, size: int = 4096) -> None:
        self._callback = callback
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def __call__(self, revocation: Revocation) -> None:
        key = revocation.id
        with self._lock:
            if key in self._seen:
                return
            self._seen[key] = None
            if len(self._seen) > self._size:
                self._seen.popitem(last=False)
        self._callback(revocation)


def new_grant(
    principal: str, name: str, *, duration: float, reason: str, now: float | None
) -> Grant:
    """A validated, pending ``Grant`` (what every backend's ``GrantStore.request`` files)."""
    return Grant(
        id=new_id(),
        principal=check_text("principal", principal),
        name=check_text("grant name", name),
        reason=check_reason(reason),
        duration=check_positive("duration", duration),
        requested_at=current(now),
    )
