"""Replay caches for gateway assertions: each ``jti`` is accepted once until it expires.

``MemoryReplayCache`` (the default) holds at most ``max_entries`` ids, each until its
assertion's ``exp`` plus the leeway; it is thread-safe (Flask's threaded servers) and
refuses new assertions, rather than forgetting unexpired ids, when full. It protects
one process: an app served by several processes or hosts needs a shared cache, e.g.
``RedisReplayCache`` (``SET NX`` with the same expiry, as a TTL), or a replay accepted by a
sibling process goes unnoticed.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import redis

DEFAULT_MAX_ENTRIES = 100_000


class ReplayCacheFullError(Exception):
    """The cache holds ``max_entries`` unexpired ids: the assertion is refused."""


@runtime_checkable
class ReplayCache(Protocol):
    """Remembers assertion ids until they expire."""

    def first_use(self, key: str, expires_at: float) -> bool:
        """Record ``key`` until ``expires_at`` (epoch seconds); False if already recorded.

        Must be atomic: of two concurrent calls with one key, one returns True."""
        ...


class MemoryReplayCache:
    """An in-process ``ReplayCache``: bounded, expiring, thread-safe."""

    def __init__(
        self, max_entries: int = DEFAULT_MAX_ENTRIES, *, clock: Callable[[], float] = time.time
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._clock = clock
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._expiry)

    def _purge(self, now: float) -> None:
        heap, expiry = self._heap, self._expiry
        while heap and heap[0][0] <= now:
            _, key = heapq.heappop(heap)
            expiry.pop(key, None)

    def first_use(self, key: str, expires_at: float) -> bool:
        now = self._clock()
        with self._lock:
            self._purge(now)
            if key in self._expiry:
                return False
            if len(self._expiry) >= self.max_entries:
                raise ReplayCacheFullError(
                    f"{self.max_entries} unexpired assertion ids are remembered"
                )
            self._expiry[key] = expires_at
            heapq.heappush(self._heap, (expires_at, key))
            return True


class RedisReplayCache:
    """A ``ReplayCache`` shared by every process using one Redis (``SET NX PX``).

    The id lives for the time the assertion has left by *this* process's clock (the one
    that checked ``exp``), as a relative TTL: an absolute expiry (``EXAT``) would be read
    by the Redis server's clock, and a server clock ahead by more than an assertion's
    lifetime would expire every id at once, turning replay protection off."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "verity:assertion-jti:",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self._clock = clock

    def first_use(self, key: str, expires_at: float) -> bool:
        milliseconds = max(math.ceil((expires_at - self._clock()) * 1000) + 1000, 1000)
        return bool(self.client.set(self.prefix + key, b"1", nx=True, px=milliseconds))


__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "MemoryReplayCache",
    "RedisReplayCache",
    "ReplayCache",
    "ReplayCacheFullError",
]
