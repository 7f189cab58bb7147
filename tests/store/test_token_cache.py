"""TokenCache behaviour: in memory and shared in Redis."""

from __future__ import annotations

from typing import Any

import pytest

from verity.store import token_hash
from verity.store.redis import RedisTokenCache, connect

from .conftest import dead_url

T = 1_000_000.0
H = token_hash("eyJhbGciOi.token.sig")


def test_claims_are_cached_until_the_token_expires(token_cache: Any) -> None:
    token_cache.put(H, {"sub": "alice", "roles": ["a"]}, expires=T + 60, now=T)
    assert dict(token_cache.get(H, now=T + 59)) == {"sub": "alice", "roles": ["a"]}
    assert token_cache.get(H, now=T + 60) is None
    assert token_cache.get(token_hash("other"), now=T) is None


def test_evict_drops_at_once(token_cache: Any) -> None:
    token_cache.put(H, {"sub": "alice"}, expires=T + 60, now=T)
    token_cache.evict(H)
    assert token_cache.get(H, now=T) is None


def test_an_expired_token_is_not_cached(token_cache: Any) -> None:
    token_cache.put(H, {"sub": "alice"}, expires=T, now=T)
    assert token_cache.get(H, now=T - 1) is None


def test_only_hashes_are_accepted_as_keys(token_cache: Any) -> None:
    with pytest.raises(ValueError, match="SHA-256"):
        token_cache.put("eyJhbGciOi.raw.token", {}, expires=T + 60, now=T)


def test_redis_down_is_a_miss_not_an_error() -> None:
    cache = RedisTokenCache(connect(dead_url("redis"), timeout=0.5))
    cache.put(H, {"sub": "alice"}, expires=T + 60, now=T)
    assert cache.get(H, now=T) is None
    assert cache.health.degraded
