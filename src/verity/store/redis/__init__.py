"""Redis backends for shared, short-lived state: revocation fan-out, counters, token cache."""

from __future__ import annotations

from .client import connect as connect
from .counters import RedisCounters as RedisCounters
from .revocations import RedisRevocations as RedisRevocations
from .token_cache import RedisTokenCache as RedisTokenCache

__all__ = ["RedisCounters", "RedisRevocations", "RedisTokenCache", "connect"]
