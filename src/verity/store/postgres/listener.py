"""A background thread that LISTENs on one channel and survives reconnects."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import psycopg
from psycopg import sql

from ..errors import StoreError, StoreUnavailableError
from .db import PostgresDatabase

log = logging.getLogger("verity.store")

_POLL = 0.2  # seconds between checks of the stop flag while idle


class NotifyListener:
    """LISTEN on ``channel`` with a dedicated connection; payloads go to ``on_payload``.

    After a lost connection it reconnects (with backoff up to 5 s) and calls
    ``on_reconnect(since)`` with the time the connection was lost, so that the owner
    can replay what was missed.
    """

    def __init__(
        self,
        db: PostgresDatabase,
        channel: str,
        on_payload: Callable[[str], None],
        on_reconnect: Callable[[float], None],
    ) -> None:
        self._db = db
        self._channel = channel
        self._on_payload = on_payload
        self._on_reconnect = on_reconnect
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._lost: float | None = None
        self._backoff = 0.1
        self._thread = threading.Thread(target=self._run, name="verity-listen", daemon=True)

    def start(self, *, timeout: float = 5.0) -> None:
        """Start listening; returns once LISTEN is in effect."""
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise StoreUnavailableError(self._db.url, "could not LISTEN for revocations")

    @property
    def connected(self) -> bool:
        """Whether LISTEN is in effect on a live connection right now."""
        return self._ready.is_set() and self._lost is None and self._thread.is_alive()

    def stop(self) -> None:
        """Stop the thread (within about 0.2 s)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except (psycopg.Error, StoreError) as exc:
                self._lost = self._lost or time.time()
                log.warning("revocation listener lost PostgreSQL (%s); retrying", exc)
                self._stop.wait(self._backoff)
                self._backoff = min(self._backoff * 2, 5.0)

    def _listen(self) -> None:
        with self._db.connect() as conn:
            conn.execute(sql.SQL("listen {}").format(sql.Identifier(self._channel)))
            self._ready.set()
            if self._lost is not None:
                self._on_reconnect(self._lost)
            self._lost, self._backoff = None, 0.1
            while not self._stop.is_set():
                for notify in conn.notifies(timeout=_POLL):
                    self._on_payload(notify.payload)
