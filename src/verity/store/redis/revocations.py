"""Revocations in Redis: one key per revocation (TTL until it expires) and pub/sub fan-out.

``revoke`` merges with what is stored (the later ``revoked_at`` and ``expires`` win)
and publishes in one MULTI/EXEC under WATCH, so the notification carries exactly the
stored value. Pub/sub is at-most-once: a node that was disconnected replays what it
missed from the stored keys when it reconnects.
"""

from __future__ import annotations

import logging
import math
import threading

import redis

from .._common import Deduplicator, LocalBus, check_future, check_reason, check_text, current
from ..errors import StoreUnavailableError
from ..protocols import RevocationCallback, Subscription
from ..records import Revocation, RevocationKind
from .client import Client, glob_escape
from .subscriber import PubSubListener

log = logging.getLogger("verity.store")

CLOCK_SKEW = 30.0
_DELETE_IF_SAME = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _merge(raw: bytes | str | None, new: Revocation) -> Revocation:
    if raw is None:
        return new
    old = Revocation.from_json(raw)
    return Revocation(
        new.kind,
        new.value,
        max(old.revoked_at, new.revoked_at),
        max(old.expires, new.expires),
        new.reason,
        new.id,
    )


class RedisRevocations:
    """``RevocationStore`` on Redis (short-lived, shared; PostgreSQL is the durable one)."""

    def __init__(self, client: Client, *, url: str, prefix: str = "verity:") -> None:
        self._client = client
        self._url = url
        self._keys = prefix + "rev:"
        self.channel = prefix + "revocations"
        self._bus = LocalBus()
        self._deliver = Deduplicator(self._bus.publish)
        self._listener: PubSubListener | None = None
        self._lock = threading.Lock()
        self._delete_if_same = client.register_script(_DELETE_IF_SAME)

    def _key(self, kind: RevocationKind, value: str) -> str:
        return f"{self._keys}{kind.value}:{value}"

    def revoke(
        self,
        kind: RevocationKind,
        value: str,
        *,
        expires: float,
        reason: str = "",
        now: float | None = None,
    ) -> Revocation:
        """Store (or extend) a revocation and publish it, atomically."""
        at = current(now)
        check_future("expires", expires, at)
        new = Revocation(kind, check_text("value", value), at, expires, check_reason(reason))
        key = self._key(kind, value)
        try:
            with self._client.pipeline() as pipe:
                while True:
                    try:
                        pipe.watch(key)  # type: ignore[no-untyped-call]
                        merged = _merge(pipe.get(key), new)
                        payload = merged.to_json()
                        pipe.multi()
                        pipe.set(key, payload, px=math.ceil((merged.expires - at) * 1000) + 1000)
                        pipe.publish(self.channel, payload)
                        pipe.execute()
                    except redis.WatchError:
                        continue
                    return merged
        except redis.RedisError as exc:
            raise StoreUnavailableError(self._url, str(exc)) from None

    def publish(self, revocation: Revocation) -> None:
        """Publish a revocation stored elsewhere (fan-out only, nothing stored)."""
        try:
            self._client.publish(self.channel, revocation.to_json())
        except redis.RedisError as exc:
            raise StoreUnavailableError(self._url, str(exc)) from None

    def lookup(
        self, kind: RevocationKind, value: str, *, now: float | None = None
    ) -> Revocation | None:
        """The revocation in force, if any."""
        try:
            raw = self._client.get(self._key(kind, value))
        except redis.RedisError as exc:
            raise StoreUnavailableError(self._url, str(exc)) from None
        if raw is None:
            return None
        revocation = Revocation.from_json(raw)
        return revocation if revocation.expires > current(now) else None

    def is_revoked(self, kind: RevocationKind, value: str, *, now: float | None = None) -> bool:
        """Whether a revocation is in force."""
        return self.lookup(kind, value, now=now) is not None

    def _stored(self) -> list[tuple[str, bytes | str]]:
        keys = list(self._client.scan_iter(match=glob_escape(self._keys) + "*", count=500))
        pairs: list[tuple[str, bytes | str]] = []
        for start in range(0, len(keys), 500):
            batch = keys[start : start + 500]
            pairs.extend(
                (k, v)
                for k, v in zip(batch, self._client.mget(batch), strict=True)
                if v is not None
            )
        return pairs

    def active(self, *, now: float | None = None) -> list[Revocation]:
        """Every revocation in force (SCAN of the stored keys)."""
        at = current(now)
        try:
            found = [Revocation.from_json(raw) for _, raw in self._stored()]
        except redis.RedisError as exc:
            raise StoreUnavailableError(self._url, str(exc)) from None
        return sorted((r for r in found if r.expires > at), key=lambda r: r.revoked_at)

    def purge_expired(self, *, now: float | None = None) -> int:
        """Delete revocations that expired (keys also expire on their own)."""
        at = current(now)
        deleted = 0
        try:
            for key, raw in self._stored():
                if Revocation.from_json(raw).expires <= at:
                    deleted += int(self._delete_if_same(keys=[key], args=[raw]))
        except redis.RedisError as exc:
            raise StoreUnavailableError(self._url, str(exc)) from None
        return deleted

    def subscribe(self, callback: RevocationCallback, *, wait: bool = True) -> Subscription:
        """Deliver every revocation published from now on to ``callback``.

        With ``wait=False`` this returns at once even if Redis is down; delivery starts
        when it is reachable.
        """
        with self._lock:
            if self._listener is None:
                listener = PubSubListener(
                    self._client, self.channel, self._payload, self._replay, url=self._url
                )
                listener.start(wait=wait)
                self._listener = listener
        return self._bus.add(callback)

    @property
    def subscribed(self) -> bool:
        """Whether ``subscribe`` started the pub/sub listener (which then keeps reconnecting)."""
        return self._listener is not None

    @property
    def connected(self) -> bool:
        """Whether the pub/sub subscription is live (``False`` before ``subscribe``)."""
        return self._listener is not None and self._listener.connected

    def _payload(self, payload: str) -> None:
        try:
            revocation = Revocation.from_json(payload)
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed revocation message")
            return
        self._deliver(revocation)

    def _replay(self, since: float) -> None:
        for revocation in self.active():
            if revocation.revoked_at >= since - CLOCK_SKEW:
                self._deliver(revocation)

    def close(self) -> None:
        """Stop the subscriber thread (the client belongs to the caller)."""
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
