"""Sliding-window counters in Redis: one sorted set per key, updated by one Lua script.

Each hit is a member scored by its time. The script drops hits that left the window,
adds this one, refreshes the key's TTL and counts, atomically (Redis runs a script
alone), so concurrent hits on one key from any node see distinct counts.
"""

from __future__ import annotations

import math
import secrets

import redis

from .._common import check_positive, check_text, current
from ..errors import StoreUnavailableError
from .client import Client

_HIT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[2], '+inf')
"""


class RedisCounters:
    """``CounterStore`` on Redis, shared by every node."""

    def __init__(self, client: Client, *, url: str, prefix: str = "verity:") -> None:
        self._client = client
        self._url = url
        self._prefix = prefix + "ctr:"
        self._hit = client.register_script(_HIT)

    def hit(self, key: str, *, window: float, now: float | None = None) -> int:
        """Record a hit; returns the count in the window including it."""
        at = current(now)
        check_positive("window", window)
        check_text("counter key", key)
        member = f"{at!r}:{secrets.token_hex(6)}"
        ttl_ms = math.ceil(window * 1000) + 1000
        try:
            result = self._hit(
                keys=[self._prefix + key], args=[repr(at), repr(at - window), member, ttl_ms]
            )
        except redis.RedisError as exc:
            raise StoreUnavailableError(self._url, str(exc)) from None
        return int(result)

    def count(self, key: str, *, window: float, now: float | None = None) -> int:
        """The hits in the window ending at ``now``."""
        at = current(now)
        low = at - check_positive("window", window)
        try:
            return int(self._client.zcount(self._prefix + key, f"({low!r}", repr(at)))
        except redis.RedisError as exc:
            raise StoreUnavailableError(self._url, str(exc)) from None

    def reset(self, key: str) -> None:
        """Forget the key's hits."""
        try:
            self._client.delete(self._prefix + key)
        except redis.RedisError as exc:
            raise StoreUnavailableError(self._url, str(exc)) from None
