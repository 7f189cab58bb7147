"""How long revocations take to reach this node: the revoking node's ``revoked_at`` to the
first delivery here, by whichever channel came first (Redis pub/sub or PostgreSQL NOTIFY).

``TimedRevocations`` wraps a node's ``RevocationStore``; every revocation that reaches the
node is measured once (whatever the number of subscribers), logged (kind and delay, never
the value) and counted in ``DeliveryStats``, which ``/metrics`` exports as
``verity_revocation_delivery_seconds``.
Delays compare two clocks (the revoking node's and this one's), so on several machines
they are as good as their clock synchronisation; a negative delay counts as zero.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

from .protocols import RevocationCallback, RevocationStore, Subscription, store_revision
from .records import Revocation, RevocationKind

log = logging.getLogger("verity.store")
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True, slots=True)
class DeliverySnapshot:
    """Cumulative counts per upper bound (the last one is +Inf), their sum and count."""

    buckets: tuple[tuple[float, int], ...]
    total_seconds: float
    count: int


class DeliveryStats:
    """A thread-safe histogram of delivery delays (seconds), with ``BUCKETS``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = [0] * (len(BUCKETS) + 1)
        self._sum = 0.0

    def observe(self, seconds: float) -> None:
        """Count one delivery that took ``seconds`` (negative: clock skew, counted as 0)."""
        seconds = max(0.0, seconds)
        with self._lock:
            self._counts[bisect.bisect_left(BUCKETS, seconds)] += 1
            self._sum += seconds

    def snapshot(self) -> DeliverySnapshot:
        """The cumulative histogram so far."""
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, running = [], 0
        for bound, count in zip((*BUCKETS, float("inf")), counts, strict=True):
            running += count
            cumulative.append((bound, running))
        return DeliverySnapshot(tuple(cumulative), total, running)


class TimedRevocations:
    """``RevocationStore`` that measures when each revocation reaches this node: the first
    delivery of a revocation id to any of its subscribers is timed and logged once."""

    def __init__(self, inner: RevocationStore, stats: DeliveryStats, *, size: int = 4096) -> None:
        self.inner = inner
        self.stats = stats
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def _first_arrival(self, revocation: Revocation) -> bool:
        with self._lock:
            if revocation.id in self._seen:
                return False
            self._seen[revocation.id] = None
            if len(self._seen) > self._size:
                self._seen.popitem(last=False)
            return True

    def revoke(
        self,
        kind: RevocationKind,
        value: str,
        *,
        expires: float,
        reason: str = "",
        now: float | None = None,
    ) -> Revocation:
        """As the wrapped store."""
        return self.inner.revoke(kind, value, expires=expires, reason=reason, now=now)

    def lookup(
        self, kind: RevocationKind, value: str, *, now: float | None = None
    ) -> Revocation | None:
        """As the wrapped store."""
        return self.inner.lookup(kind, value, now=now)

    def is_revoked(self, kind: RevocationKind, value: str, *, now: float | None = None) -> bool:
        """As the wrapped store."""
        return self.inner.is_revoked(kind, value, now=now)

    def active(self, *, now: float | None = None) -> list[Revocation]:
        """As the wrapped store."""
        return self.inner.active(now=now)

    def purge_expired(self, *, now: float | None = None) -> int:
        """As the wrapped store."""
        return self.inner.purge_expired(now=now)

    def revision(self) -> Hashable | None:
        """The wrapped store's ``revision()`` (a change marker), or None without one."""
        return store_revision(self.inner)

    def subscribe(self, callback: RevocationCallback) -> Subscription:
        """Subscribe ``callback``; each delivery is timed before it is handed over."""

        def timed(revocation: Revocation) -> None:
            if self._first_arrival(revocation):
                delay = time.time() - revocation.revoked_at
                self.stats.observe(delay)
                log.info("revocation delivered: kind=%s delay_ms=%.3f",
                         revocation.kind.value, delay * 1000)  # fmt: skip
            callback(revocation)

        return self.inner.subscribe(timed)

    def close(self) -> None:
        """Close the wrapped store."""
        self.inner.close()
