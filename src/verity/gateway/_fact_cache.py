"""``FactCache``: what the fact sources share: a bounded, short-lived, per-key cache of
answers loaded from a store in a worker thread, one load per key at a time, failing
closed to a given default.

A cached answer is served while ``0 <= now - loaded_at < ttl`` (a clock that goes back
does not stretch it); the least recently used key goes when ``max_entries`` is passed.
Concurrent lookups of one key share one load, and a cancelled lookup does not cancel the
load that others wait for. A load that raises or outlasts ``timeout_seconds`` yields
``fallback`` (cached like an answer, so an outage costs one load per key per ``ttl``),
and ``on_error`` is told the exception.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from .. import invalidation

V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class _Entry(Generic[V]):
    loaded_at: float
    value: V


class FactCache(Generic[V]):
    """Answers by key (e.g. a principal id), loaded by ``load(key, now)`` in a thread."""

    def __init__(
        self,
        load: Callable[[str, float], V],
        *,
        fallback: V,
        on_error: Callable[[str, Exception], None],
        ttl_seconds: float,
        max_entries: int,
        timeout_seconds: float,
    ) -> None:
        if ttl_seconds < 0 or max_entries < 1 or timeout_seconds <= 0:
            raise ValueError("ttl_seconds >= 0, max_entries >= 1 and timeout_seconds > 0")
        self._load = load
        self._fallback = fallback
        self._on_error = on_error
        self._ttl = ttl_seconds
        self._max = max_entries
        self._timeout = timeout_seconds
        self._entries: OrderedDict[str, _Entry[V]] = OrderedDict()
        self._loading: dict[str, asyncio.Task[V]] = {}
        self.loads = 0
        """How many times the store was asked (for tests and metrics)."""

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str, now: float) -> V:
        """The answer for ``key`` at ``now``: cached, or loaded (``fallback`` on failure)."""
        entry = self._entries.get(key)
        if entry is not None and 0 <= now - entry.loaded_at < self._ttl:
            self._entries.move_to_end(key)
            return entry.value
        task = self._loading.get(key)
        if task is None:
            task = asyncio.create_task(self._fetch(key, now))
            self._loading[key] = task
            task.add_done_callback(lambda _: self._loading.pop(key, None))
        return await asyncio.shield(task)

    def invalidate(self, key: str | None = None) -> None:
        """Forget ``key`` (every key if ``None``)."""
        if key is None:
            self._entries.clear()
        else:
            self._entries.pop(key, None)
        invalidation.bump()  # a fact changed: cached decisions and assertions go too

    async def _fetch(self, key: str, now: float) -> V:
        try:
            value = await asyncio.wait_for(asyncio.to_thread(self._load, key, now), self._timeout)
        except Exception as exc:  # noqa: BLE001 - any failure: the fail-closed fallback
            self._on_error(key, exc)
            value = self._fallback
        self.loads += 1
        self._entries[key] = _Entry(now, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return value


__all__ = ["FactCache"]
