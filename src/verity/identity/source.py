"""Key sources for a verifier: fixed keys, or a JWKS kept fresh over HTTP.

``JwksSource`` joins the sans-I/O ``JwksState`` to the ``JwksFetcher``. At most one
fetch runs at a time. A caller that has no usable keys waits for a running fetch; a
caller that has usable (possibly stale) keys never waits for another's fetch.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Callable
from typing import Protocol

from .errors import JwksError, KeysUnavailableError
from .fetch import FetchedKeys, JwksFetcher
from .jwks import JwksState, JwksStatus
from .keys import KeySet

Clock = Callable[[], float]
KeysRemoved = Callable[[frozenset[str | None]], object]


class KeySource(Protocol):
    """Where a ``TokenVerifier`` gets its keys."""

    def get_keys(self) -> KeySet:
        """The keys to verify with now (may block on a fetch)."""
        ...

    async def aget_keys(self) -> KeySet:
        """The keys to verify with now (may await a fetch)."""
        ...

    def refetch(self, seen: KeySet) -> KeySet | None:
        """After an unknown ``kid`` in ``seen``: newer keys (fetched now if the rate limit
        allows, or by someone else meanwhile), or ``None`` if there are none."""
        ...

    async def arefetch(self, seen: KeySet) -> KeySet | None:
        """Async ``refetch``."""
        ...

    def on_keys_removed(self, listener: KeysRemoved) -> None:
        """Call ``listener`` with the key ids that a refresh removed."""
        ...

    def status(self) -> JwksStatus | None:
        """Fetch state for metrics (``None`` for fixed keys)."""
        ...


class StaticKeys:
    """Keys given once (a JWKS file, a PEM key, a configured HMAC secret)."""

    def __init__(self, keys: KeySet) -> None:
        self.keys = keys

    def get_keys(self) -> KeySet:
        """The fixed keys."""
        return self.keys

    async def aget_keys(self) -> KeySet:
        """The fixed keys."""
        return self.keys

    def refetch(self, seen: KeySet) -> KeySet | None:
        """Fixed keys are never refetched."""
        return None

    async def arefetch(self, seen: KeySet) -> KeySet | None:
        """Fixed keys are never refetched."""
        return None

    def on_keys_removed(self, listener: KeysRemoved) -> None:
        """Fixed keys are never removed."""

    def status(self) -> JwksStatus | None:
        """No fetch state."""
        return None


class JwksSource:
    """An issuer's JWKS, fetched on demand, cached per ``Cache-Control``, stale-if-error."""

    def __init__(self, fetcher: JwksFetcher, *, clock: Clock = time.time) -> None:
        self.fetcher = fetcher
        self.state = JwksState(fetcher.config.jwks, source=fetcher.source)
        self._clock = clock
        self._state_lock = threading.Lock()
        self._fetch_lock = threading.Lock()
        self._async_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock]
        self._async_locks = weakref.WeakKeyDictionary()
        self._listeners: list[KeysRemoved] = []

    def on_keys_removed(self, listener: KeysRemoved) -> None:
        """Call ``listener`` with the key ids that a refresh removed (e.g. to evict caches)."""
        self._listeners.append(listener)

    def status(self) -> JwksStatus:
        """Fetch state: key ids, freshness, ``stale``, counters, last error."""
        return self.state.status(self._clock())

    def _claim_fetch(self, *, unknown_kid: bool) -> bool:
        now = self._clock()
        with self._state_lock:
            state = self.state
            due = (
                state.should_refetch_for_unknown_kid(now)
                if unknown_kid
                else state.should_refresh(now)
            )
            if due:
                state.begin(now)
            return due

    def _finish(self, result: FetchedKeys | JwksError) -> None:
        now = self._clock()
        with self._state_lock:
            if isinstance(result, JwksError):
                self.state.failed(str(result), now)
                return
            removed = self.state.succeeded(result.keys, result.ttl, now)
        if removed:
            for listener in self._listeners:
                listener(removed)

    def _usable(self) -> KeySet:
        keys = self.state.usable(self._clock())
        if keys is None:
            error = self.state.last_error or "no keys fetched yet"
            raise KeysUnavailableError(f"no usable keys from {self.state.source}: {error}")
        return keys

    def _sync_fetch(self, *, unknown_kid: bool) -> None:
        if self._claim_fetch(unknown_kid=unknown_kid):
            try:
                result: FetchedKeys | JwksError = self.fetcher.fetch()
            except JwksError as exc:
                result = exc
            self._finish(result)

    def get_keys(self) -> KeySet:
        """Usable keys, refreshing first when due (waits only when none are usable)."""
        now = self._clock()
        if self.state.usable(now) is not None:
            if self.state.should_refresh(now) and self._fetch_lock.acquire(blocking=False):
                try:
                    self._sync_fetch(unknown_kid=False)
                finally:
                    self._fetch_lock.release()
            return self._usable()
        with self._fetch_lock:
            self._sync_fetch(unknown_kid=False)
        return self._usable()

    def _newer(self, seen: KeySet) -> KeySet | None:
        keys = self.state.usable(self._clock())
        return keys if keys is not None and keys is not seen else None

    def refetch(self, seen: KeySet) -> KeySet | None:
        """Fetch again for an unknown ``kid`` unless one was fetched in the last interval."""
        with self._fetch_lock:
            if self._newer(seen) is None:
                self._sync_fetch(unknown_kid=True)
            return self._newer(seen)

    def _async_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._async_locks.get(loop)
        if lock is None:
            lock = self._async_locks[loop] = asyncio.Lock()
        return lock

    async def _async_fetch(self, *, unknown_kid: bool) -> None:
        if self._claim_fetch(unknown_kid=unknown_kid):
            try:
                result: FetchedKeys | JwksError = await self.fetcher.afetch()
            except JwksError as exc:
                result = exc
            self._finish(result)

    async def aget_keys(self) -> KeySet:
        """Async ``get_keys``."""
        now = self._clock()
        lock = self._async_lock()
        if self.state.usable(now) is not None:
            if self.state.should_refresh(now) and not lock.locked():
                async with lock:
                    await self._async_fetch(unknown_kid=False)
            return self._usable()
        async with lock:
            await self._async_fetch(unknown_kid=False)
        return self._usable()

    async def arefetch(self, seen: KeySet) -> KeySet | None:
        """Async ``refetch``."""
        async with self._async_lock():
            if self._newer(seen) is None:
                await self._async_fetch(unknown_kid=True)
            return self._newer(seen)
