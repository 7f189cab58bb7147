"""A background thread that reads one Redis pub/sub channel and survives reconnects."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import redis

from ..errors import StoreError, StoreUnavailableError
from .client import Client, Health, text

_POLL = 0.2  # seconds between checks of the stop flag while idle


class PubSubListener:
    """SUBSCRIBE to ``channel``; payloads go to ``on_payload``.

    After a lost connection it subscribes again (with backoff up to 5 s) and calls
    ``on_reconnect(since)`` with the last time it was known to be connected.
    """

    def __init__(
        self,
        client: Client,
        channel: str,
        on_payload: Callable[[str], None],
        on_reconnect: Callable[[float], None],
        *,
        url: str,
    ) -> None:
        self._client = client
        self._channel = channel
        self._on_payload = on_payload
        self._on_reconnect = on_reconnect
        self._url = url
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._alive = 0.0  # last time the connection was known to work
        self._subscribed = False
        self.health = Health("revocation subscriber")
        self._thread = threading.Thread(target=self._run, name="verity-pubsub", daemon=True)

    @property
    def connected(self) -> bool:
        """Whether the subscription is currently live."""
        return self._subscribed

    def start(self, *, wait: bool = True, timeout: float = 5.0) -> None:
        """Start the thread; with ``wait``, return once the subscription is live."""
        self._thread.start()
        if wait and not self._ready.wait(timeout):
            self.stop()
            raise StoreUnavailableError(self._url, "could not subscribe to revocations")

    def stop(self) -> None:
        """Stop the thread (within about 0.2 s)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                self._listen()
                backoff = 0.1
            except (redis.RedisError, StoreError) as exc:
                self.health.failed(exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _listen(self) -> None:
        pubsub = self._client.pubsub()
        try:
            pubsub.subscribe(self._channel)
            while not self._stop.is_set():
                message = pubsub.get_message(timeout=_POLL)
                if message is not None:
                    self._handle(message["type"], message["data"])
                if self._subscribed:
                    self._alive = time.time()
        finally:
            self._subscribed = False
            pubsub.close()

    def _handle(self, kind: str, data: object) -> None:
        if kind == "subscribe":
            first = not self._ready.is_set()
            self._subscribed = True
            self._ready.set()
            self.health.ok()
            if not first:
                self._on_reconnect(self._alive)
        elif kind == "message":
            self._on_payload(text(data))
