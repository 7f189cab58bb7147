"""``GrantFacts``: the principal's active just-in-time grants, for the policy's ``jit:``.

The grants come from the node's ``GrantStore`` (``verity grants request|approve``) as a
mapping of grant name to the UNIX time it ends; the policy itself compares that time
with the request's, so a grant stops working at its end to the second, cached or not.

A short per-principal cache (``ttl_seconds``, default 2 s; at most ``max_entries``
principals, least recently used evicted) keeps a busy principal's requests off the
database: an approval takes effect within ``ttl_seconds``. Concurrent requests of one
principal share one store query.

Fail closed: when the store fails or does not answer within ``timeout_seconds``, the
principal holds no grants (a ``grants.unavailable`` security event is logged, and the
empty answer is cached like any other so a database outage costs one query per principal
per ``ttl_seconds``). No store error ever reaches the gateway, where it would become an
internal-error deny for every request, also for rules that need no grant.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType

from ..observability import log_security_event
from ..store.protocols import GrantStore
from ..store.records import Grant
from ._fact_cache import FactCache
from .facts import NO_FACTS, FactQuery, Facts

Clock = Callable[[], float]
_NONE: Mapping[str, float] = MappingProxyType({})


class GrantFacts:
    """A ``FactSource`` giving the policy each principal's active grants (name -> end)."""

    def __init__(
        self,
        store: GrantStore,
        *,
        ttl_seconds: float = 2.0,
        max_entries: int = 10_000,
        timeout_seconds: float = 2.0,
        clock: Clock = time.time,
    ) -> None:
        """``clock`` (UNIX seconds) must be the gateway's clock: the store is asked for the
        grants in force at that time."""
        self._store = store
        self._clock = clock
        self._cache: FactCache[Mapping[str, float]] = FactCache(
            self._active, fallback=_NONE, on_error=_unavailable, ttl_seconds=ttl_seconds,
            max_entries=max_entries, timeout_seconds=timeout_seconds,
        )  # fmt: skip

    @property
    def queries(self) -> int:
        """How many times the store was asked (for tests and metrics)."""
        return self._cache.loads

    @property
    def cached(self) -> int:
        """How many principals' grants are cached."""
        return len(self._cache)

    async def facts(self, query: FactQuery) -> Facts:
        """The principal's grants in force now; none for anonymous callers."""
        principal = query.principal
        if not principal.authenticated:
            return NO_FACTS
        now = self._clock()
        grants = await self._cache.get(principal.id, now)
        if not grants:
            return NO_FACTS
        if min(grants.values()) <= now:  # cached entries that ended since: drop them
            grants = MappingProxyType({k: t for k, t in grants.items() if t > now})
        return Facts(grants=grants)

    def invalidate(self, principal: str | None = None) -> None:
        """Forget the cached grants of ``principal`` (of everyone if ``None``)."""
        self._cache.invalidate(principal)

    def _active(self, principal: str, now: float) -> Mapping[str, float]:
        return MappingProxyType(_ends(self._store.active(principal, at=now)))


def _unavailable(principal: str, exc: Exception) -> None:
    log_security_event(
        "grants.unavailable",
        principal_id=principal,
        level="warning",
        error=type(exc).__name__,
        outcome="no grants (fail closed)",
    )


def _ends(active: Iterable[Grant]) -> dict[str, float]:
    """name -> the latest end among the principal's grants of that name."""
    ends: dict[str, float] = {}
    for grant in active:
        if grant.expires is not None:
            end = float(grant.expires)
            ends[grant.name] = max(ends.get(grant.name, end), end)
    return ends


__all__ = ["GrantFacts"]
