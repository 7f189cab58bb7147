"""Sans-I/O JWKS cache state: when to fetch, which keys are usable, and how stale they are.

The fetcher (``verity.identity.fetch``) does the HTTP; this module only decides. Keys are
fresh for the response's ``max-age`` clamped to ``[min_ttl, max_ttl]``. After that a
refresh is attempted; if it fails, the old keys stay usable for ``stale_if_error``
more seconds (``stale`` is then true). Fetch attempts of any kind, including the one
refetch for an unknown ``kid``, are at least ``refetch_interval`` apart.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from .config import JwksPolicy
from .keys import KeySet

log = logging.getLogger("verity.identity")


# RFC 9111 1.2.2: a delta-seconds value too large to represent counts as 2^31 seconds.
_DELTA_MAX = 2**31


def cache_lifetime(cache_control: str | None, age: str | None, policy: JwksPolicy) -> float:
    """Seconds a JWKS response stays fresh: ``max-age`` minus ``Age``, clamped. Whatever
    the IdP sends (a value too long for a float, non-ASCII digits), the answer is a
    lifetime within the policy's bounds, never an exception."""
    ttl = policy.default_ttl_seconds
    for directive in (cache_control or "").lower().split(","):
        name, _, value = directive.strip().partition("=")
        if name in ("no-cache", "no-store"):
            ttl = 0
            break
        if name == "max-age":
            try:
                ttl = float(min(int(value.strip().strip('"')), _DELTA_MAX))
            except ValueError:
                continue
    ttl -= _age_seconds(age)
    return min(max(ttl, policy.min_ttl_seconds), policy.max_ttl_seconds)


def _age_seconds(age: str | None) -> int:
    """The ``Age`` header in seconds (RFC 9111 5.1); 0 unless it is ASCII digits."""
    text = (age or "").strip()
    if not (text.isascii() and text.isdigit()):
        return 0
    return _DELTA_MAX if len(text) > len(str(_DELTA_MAX)) else min(int(text), _DELTA_MAX)


@dataclass(frozen=True, slots=True)
class JwksStatus:
    """A snapshot of a key source for metrics, health checks and logs."""

    source: str
    key_ids: tuple[str | None, ...]
    fetched_at: float | None
    fresh_until: float | None
    usable_until: float | None
    stale: bool
    fetches_ok: int
    fetches_failed: int
    unknown_kid_refetches: int
    rate_limited_refetches: int
    last_error: str | None


class JwksState:
    """The keys of one issuer and the bookkeeping that drives their refresh (no I/O)."""

    def __init__(self, policy: JwksPolicy, *, source: str) -> None:
        self.policy = policy
        self.source = source
        self.keys: KeySet | None = None
        self.fetched_at: float | None = None
        self.fresh_until = -math.inf
        self.last_attempt = -math.inf
        self.failing = False
        self.last_error: str | None = None
        self.fetches_ok = 0
        self.fetches_failed = 0
        self.unknown_kid_refetches = 0
        self.rate_limited_refetches = 0

    @property
    def usable_until(self) -> float:
        """Keys may be used (fresh or stale) until this time."""
        return self.fresh_until + self.policy.stale_if_error_seconds

    def usable(self, now: float) -> KeySet | None:
        """The keys that may verify tokens now, or ``None`` once they aged out."""
        return self.keys if self.keys is not None and now < self.usable_until else None

    def is_stale(self, now: float) -> bool:
        """True while the keys in use are past their freshness (refresh failing or pending)."""
        return self.keys is not None and now >= self.fresh_until

    def _spaced(self, now: float) -> bool:
        return now - self.last_attempt >= self.policy.refetch_interval_seconds

    def should_refresh(self, now: float) -> bool:
        """A refresh is due (no keys or past freshness) and allowed by the rate limit."""
        return now >= self.fresh_until and self._spaced(now)

    def should_refetch_for_unknown_kid(self, now: float) -> bool:
        """One refetch for an unknown ``kid``, at most once per ``refetch_interval``."""
        if self._spaced(now):
            self.unknown_kid_refetches += 1
            return True
        self.rate_limited_refetches += 1
        return False

    def begin(self, now: float) -> None:
        """Record a fetch attempt (before the I/O, so concurrent callers see it)."""
        self.last_attempt = now

    def succeeded(self, keys: KeySet, ttl: float, now: float) -> frozenset[str | None]:
        """Install fetched keys; returns the key ids that disappeared (rotated out)."""
        removed = frozenset() if self.keys is None else self.keys.kids - keys.kids
        if self.failing:
            log.warning("JWKS %s reachable again; keys are fresh", self.source)
        self.keys, self.fetched_at, self.fresh_until = keys, now, now + ttl
        self.failing, self.last_error = False, None
        self.fetches_ok += 1
        return removed

    def failed(self, error: str, now: float) -> None:
        """Record a failed fetch; stale keys, if any, stay usable until ``usable_until``."""
        self.failing, self.last_error = True, error
        self.fetches_failed += 1
        if self.keys is not None and now < self.usable_until:
            log.warning(
                "JWKS %s fetch failed (%s); verifying with cached keys, stale for %.0fs more",
                self.source,
                error,
                self.usable_until - now,
            )
        else:
            log.error("JWKS %s fetch failed (%s); no usable keys", self.source, error)

    def status(self, now: float) -> JwksStatus:
        """A snapshot for metrics."""
        has_keys = self.keys is not None
        return JwksStatus(
            source=self.source,
            key_ids=tuple(sorted(self.keys.kids, key=str)) if self.keys is not None else (),
            fetched_at=self.fetched_at,
            fresh_until=self.fresh_until if has_keys else None,
            usable_until=self.usable_until if has_keys else None,
            stale=self.is_stale(now),
            fetches_ok=self.fetches_ok,
            fetches_failed=self.fetches_failed,
            unknown_kid_refetches=self.unknown_kid_refetches,
            rate_limited_refetches=self.rate_limited_refetches,
            last_error=self.last_error,
        )
