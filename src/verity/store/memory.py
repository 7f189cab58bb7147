"""In-process stores for the embedded, one-process setup."""

from __future__ import annotations

import threading
from collections import OrderedDict

from ._common import check_token_hash, current
from .records import JsonObject, frozen


class MemoryTokenCache:
    """``TokenCache`` in this process: a bounded LRU of verified claims, thread-safe."""

    def __init__(self, *, max_entries: int = 10_000) -> None:
        self._entries: OrderedDict[str, tuple[float, JsonObject]] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()

    def put(
        self, token_hash: str, claims: JsonObject, *, expires: float, now: float | None = None
    ) -> None:
        """Cache claims until ``expires`` (nothing happens if that is not in the future)."""
        check_token_hash(token_hash)
        if not expires > current(now):
            return
        with self._lock:
            self._entries[token_hash] = (expires, frozen(claims))
            self._entries.move_to_end(token_hash)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def get(self, token_hash: str, *, now: float | None = None) -> JsonObject | None:
        """The cached claims, or ``None``."""
        check_token_hash(token_hash)
        with self._lock:
            entry = self._entries.get(token_hash)
            if entry is None:
                return None
            if not entry[0] > current(now):
                del self._entries[token_hash]
                return None
            self._entries.move_to_end(token_hash)
            return entry[1]

    def evict(self, token_hash: str) -> None:
        """Drop an entry."""
        with self._lock:
            self._entries.pop(token_hash, None)
