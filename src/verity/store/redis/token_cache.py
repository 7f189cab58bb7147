"""The verified-token cache shared by every node, in Redis (best effort by design).

Entries are keyed by the token's SHA-256, never the token, and live until the token
expires (capped by ``max_ttl``). Redis being down is a miss, not an error: the node
verifies the token again.
"""

from __future__ import annotations

import json
import math

import redis

from .._common import check_token_hash, current
from ..records import JsonObject, frozen
from .client import Client, Health


class RedisTokenCache:
    """``TokenCache`` on Redis."""

    def __init__(self, client: Client, *, prefix: str = "verity:", max_ttl: float = 3600) -> None:
        self._client = client
        self._prefix = prefix + "tok:"
        self._max_ttl = max_ttl
        self.health = Health("token cache")

    def put(
        self, token_hash: str, claims: JsonObject, *, expires: float, now: float | None = None
    ) -> None:
        """Cache claims until ``expires`` (nothing happens if that is not in the future)."""
        key = self._prefix + check_token_hash(token_hash)
        ttl = min(expires - current(now), self._max_ttl)
        if not ttl > 0:
            return
        body = json.dumps({"exp": expires, "claims": dict(claims)}, separators=(",", ":"))
        try:
            self._client.set(key, body, px=math.ceil(ttl * 1000))
        except redis.RedisError as exc:
            self.health.failed(exc)
        else:
            self.health.ok()

    def get(self, token_hash: str, *, now: float | None = None) -> JsonObject | None:
        """The cached claims, or ``None`` (also when Redis is unavailable)."""
        key = self._prefix + check_token_hash(token_hash)
        try:
            raw = self._client.get(key)
        except redis.RedisError as exc:
            self.health.failed(exc)
            return None
        self.health.ok()
        if raw is None:
            return None
        body = json.loads(raw)
        if not float(body["exp"]) > current(now):
            return None
        return frozen(body["claims"])

    def evict(self, token_hash: str) -> None:
        """Drop an entry."""
        try:
            self._client.delete(self._prefix + check_token_hash(token_hash))
        except redis.RedisError as exc:
            self.health.failed(exc)
