"""A group-commit batch: the events committed together and the producers waiting on it."""

from __future__ import annotations

import asyncio
import threading

from .chain import Receipt
from .errors import AuditWriteError
from .store import EncodedEvent


class Batch:
    """Events committed together. Each waiting producer parks on a lock of its own that
    the writer releases (cheaper than a shared Event: no convoy on one condition lock)."""

    __slots__ = (
        "async_waiters",
        "done",
        "early",
        "error",
        "hold_until",
        "items",
        "opened",
        "receipts",
        "waiters",
    )

    def __init__(self) -> None:
        self.items: list[EncodedEvent] = []
        self.opened: float | None = None  # time.monotonic() of the first event
        self.early = 0  # events acknowledged before this commit (AuditLog.append_soon)
        # While every event is early and nobody waits: when the writer commits at the latest
        # (half the earliest ``within`` of its events; see AuditLog.append_soon)
        self.hold_until: float | None = None
        self.waiters: list[threading.Lock] = []
        self.async_waiters: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        self.receipts: list[Receipt] = []
        self.error: BaseException | None = None
        self.done = False

    def finish(self, receipts: list[Receipt], error: BaseException | None) -> None:
        self.receipts, self.error, self.done = receipts, error, True
        for waiter in self.waiters:
            waiter.release()
        for loop, futures in self.async_waiters.items():
            try:
                loop.call_soon_threadsafe(_resolve, futures)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                continue

    def result(self, index: int) -> Receipt:
        if self.error is not None:
            raise AuditWriteError(f"audit event not written: {self.error}") from self.error
        return self.receipts[index]


def _resolve(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)
