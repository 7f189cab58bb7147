"""Durable revocations with Redis fan-out: the multi-node setup.

The durable store (PostgreSQL, or SQLite) is the source of truth: ``revoke`` returns
only once the revocation is committed there, and lookups read it. The revocation is
then published on Redis pub/sub for the fastest delivery; PostgreSQL's own NOTIFY
delivers it as well, so when Redis is down revocations still reach every node
(``degraded`` says so). Subscribers get each revocation once (duplicates dropped by id).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable

from ._common import Deduplicator
from .errors import StoreUnavailableError
from .protocols import RevocationCallback, RevocationStore, Subscription, store_revision
from .records import Revocation, RevocationKind
from .redis.client import Health
from .redis.revocations import RedisRevocations

log = logging.getLogger("verity.store")


class _Pair:
    def __init__(self, *subscriptions: Subscription) -> None:
        self._subscriptions = subscriptions

    def close(self) -> None:
        for subscription in self._subscriptions:
            subscription.close()


class FanoutRevocations:
    """``RevocationStore``: durable store + Redis pub/sub, delivered once per subscriber."""

    def __init__(self, durable: RevocationStore, bus: RedisRevocations) -> None:
        self.durable = durable
        self.bus = bus
        self.health = Health("revocation fan-out")

    @property
    def degraded(self) -> bool:
        """Whether Redis fan-out is currently failing (PostgreSQL NOTIFY still delivers)."""
        return self.health.degraded

    def revoke(
        self,
        kind: RevocationKind,
        value: str,
        *,
        expires: float,
        reason: str = "",
        now: float | None = None,
    ) -> Revocation:
        """Commit durably, then publish on Redis (a Redis failure is logged, not raised)."""
        revocation = self.durable.revoke(kind, value, expires=expires, reason=reason, now=now)
        try:
            self.bus.publish(revocation)
        except StoreUnavailableError as exc:
            self.health.failed(exc)
        else:
            self.health.ok()
        return revocation

    def lookup(
        self, kind: RevocationKind, value: str, *, now: float | None = None
    ) -> Revocation | None:
        """The revocation in force, from the durable store."""
        return self.durable.lookup(kind, value, now=now)

    def is_revoked(self, kind: RevocationKind, value: str, *, now: float | None = None) -> bool:
        """Whether a revocation is in force, from the durable store."""
        return self.durable.is_revoked(kind, value, now=now)

    def active(self, *, now: float | None = None) -> list[Revocation]:
        """Every revocation in force, from the durable store."""
        return self.durable.active(now=now)

    def purge_expired(self, *, now: float | None = None) -> int:
        """Forget expired revocations in the durable store."""
        return self.durable.purge_expired(now=now)

    def revision(self) -> Hashable | None:
        """The durable store's ``revision()`` (a change marker), or None without one."""
        return store_revision(self.durable)

    def subscribe(self, callback: RevocationCallback) -> Subscription:
        """Subscribe on both channels; ``callback`` sees each revocation once."""
        once = Deduplicator(callback)
        durable = self.durable.subscribe(once)
        return _Pair(durable, self.bus.subscribe(once, wait=False))

    def close(self) -> None:
        """Stop both subscriptions."""
        self.bus.close()
        self.durable.close()
