"""Redis connections and the small helpers every Redis-backed store shares."""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

import redis

from ..errors import StoreUnavailableError

log = logging.getLogger("verity.store")

Client = redis.Redis
_GLOB = re.compile(r"([*?\[\]\\])")


def connect(url: str, *, timeout: float = 2.0) -> Client:
    """A Redis client for ``url`` with bounded timeouts (no network I/O until first use)."""
    try:
        return redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=30,
        )
    except ValueError as exc:
        raise StoreUnavailableError(url, str(exc)) from None


def ping(client: Client, url: str) -> None:
    """Fail with ``StoreUnavailableError`` unless Redis answers."""
    try:
        client.ping()
    except redis.RedisError as exc:
        raise StoreUnavailableError(url, str(exc)) from None


def glob_escape(text: str) -> str:
    """``text`` quoted for a SCAN ``MATCH`` pattern."""
    return _GLOB.sub(r"\\\1", text)


def text(value: Any) -> str:
    """A Redis reply (bytes) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


class Health:
    """Remembers whether the last Redis call failed; logs only on a change of state."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._lock = threading.Lock()
        self.degraded = False

    def failed(self, exc: BaseException) -> None:
        """Record a failure (logged once until the next success)."""
        with self._lock:
            first, self.degraded = not self.degraded, True
        if first:
            log.warning("%s: Redis is unavailable (%s); degraded", self._what, exc)

    def ok(self) -> None:
        """Record a success."""
        if self.degraded:
            with self._lock:
                self.degraded = False
            log.warning("%s: Redis is back", self._what)
