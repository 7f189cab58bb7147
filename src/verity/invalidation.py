"""The node's invalidation epoch: one counter that every change of a decision input bumps.

Caches of derived answers (the gateway's decision cache, reused identity assertions)
remember the epoch they were filled at and treat an entry from an older epoch as gone.
Every event that can change a decision on this node bumps it, right after the event is
recorded where the decision path reads it:

- a token revocation (hash, ``jti`` or subject), local or from the shared store
  (``RevocationList.add``, ``VerifiedTokenCache.evict``, ``RevocationSync.apply``);
- a session revocation or eviction (``SessionManager``);
- a policy reload that put a new engine in force (``LivePolicy.reload``);
- a grant or device posture change made known to this node (``GrantFacts`` /
  ``DeviceFacts.invalidate``, ``FactCache.invalidate``).

One counter for the whole process (not per key): an event is rare next to requests, so
dropping every derived entry at once costs a few misses and can never miss a dependency.
``current()`` is a plain attribute read (the hot path checks it on every cache hit);
``bump()`` is safe from any thread (the revocation store delivers on its own threads).
"""

from __future__ import annotations

import threading

__all__ = ["bump", "current"]


class _Epoch:
    __slots__ = ("lock", "value")

    def __init__(self) -> None:
        self.value = 0
        self.lock = threading.Lock()


_EPOCH = _Epoch()


def current() -> int:
    """The epoch now: derived answers filled at another epoch are stale."""
    return _EPOCH.value


def bump() -> int:
    """Start a new epoch (every derived answer cached so far is dropped); returns it."""
    with _EPOCH.lock:
        _EPOCH.value += 1
        return _EPOCH.value
