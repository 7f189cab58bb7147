"""``AuditLog``: the group-commit writer.

Producers (any number of threads, or coroutines through ``append_async``) encode their
event, add it to the open batch and wait. One writer thread takes the whole open batch,
appends it to the store in one durable transaction and then wakes every producer in it:
``append`` returns a ``Receipt`` only once its event is committed. While one batch
commits (the fsync releases the GIL), the next one fills, so the cost of the fsync is
shared by every event that arrived meanwhile.

Checkpoints are signed in the same transaction as the batch that reaches
``checkpoint_every`` events since the last one, by a timer after ``checkpoint_seconds``
with unsigned events, and on ``close``. On open, the records after the last checkpoint
(e.g. left by a writer killed with ``kill -9``) are verified and then signed.

``append_soon`` is the one exception to "acknowledged once durable", for the gateway's
repeated allows (see ``verity.observability.recorder`` and docs/audit.md): it queues the
event for the next group commit and returns at once, but only while the log is healthy
and keeping up: the writer is running, no store operation has failed since the last one
that succeeded, the queue is not full, and the oldest event not yet committed was queued
less than ``within`` seconds ago. Otherwise it queues nothing and answers False, and
the caller waits for a durable commit as usual. So the events acknowledged early and
not yet committed were all queued within one window of ``within`` seconds: that is what
a crash (or a failed commit) can lose, and the writer counts and logs such a loss.
A batch that holds only such events, with nobody waiting on it, is held until half the
window of its earliest event has passed (``_hold_early``), so a stream of repeated allows
costs one commit per half window instead of one per few events; the first event that
someone waits for (a deny, a first allow, any ``append``) ends the hold at once.

``health()`` says whether the writer takes events (see ``verity.audit.health``): a dead
writer thread, a full queue, a commit that does not complete, or writes that keep failing
for ``unhealthy_after`` seconds make it not ok; while writes fail, the idle writer probes
the store every ``probe_seconds`` so that health recovers without traffic.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType

from ._batch import Batch as _Batch
from .chain import Receipt
from .errors import AuditClosedError, AuditTamperedError, AuditWriteError
from .errors import ChainConflictError as _Conflict
from .health import AuditHealth, WriterHealth
from .keys import CheckpointSigner
from .schema import AuditEvent
from .store import AuditStore, EncodedEvent, SignFn
from .verify import verify_tail

log = logging.getLogger("verity.audit")


@dataclass(slots=True)
class WriterStats:
    """Counters for metrics: events and batches committed, checkpoints, last commit time."""

    events: int = 0
    batches: int = 0
    checkpoints: int = 0
    failures: int = 0
    last_commit_seconds: float = 0.0
    early: int = 0  # events acknowledged before their commit (append_soon)
    early_lost: int = 0  # of those, events whose commit then failed


class AuditLog:
    """A hash-chained, checkpointed audit log with group commit over an ``AuditStore``."""

    def __init__(
        self,
        store: AuditStore,
        *,
        signer: CheckpointSigner | None = None,
        checkpoint_every: int = 10_000,
        checkpoint_seconds: float = 5.0,
        max_pending: int = 100_000,
        commit_delay: float = 0.001,
        close_store: bool = True,
        unhealthy_after: float = 5.0,
        probe_seconds: float = 1.0,
    ) -> None:
        """Start the writer thread. Without ``signer`` no checkpoints are written (the
        chain alone then detects edits but not a rewritten or truncated log).

        ``commit_delay`` bounds how long the writer waits for a batch to fill up to the
        size of the previous one (PostgreSQL's ``commit_delay``, made adaptive): the
        producers just woken by a commit usually append again at once, and waiting the
        few microseconds it takes them lets one fsync serve them all. A lone producer is
        never delayed (its previous batch had one event).

        ``unhealthy_after`` (seconds) is how long writes may fail, or one commit may run,
        before ``health()`` reports the log as not ok; ``probe_seconds`` is how often the
        idle writer probes a failing store."""
        self.store = store
        self.stats = WriterStats()
        self.crash: Exception | None = None
        self._signer = signer
        self._every = max(1, checkpoint_every)
        self._seconds = checkpoint_seconds
        self._max_pending = max(1, max_pending)
        self._delay = max(0.0, commit_delay)
        self._target = 1
        self._close_store = close_store
        self._cv = threading.Condition()
        self._open = _Batch()
        self._committing_since: float | None = None  # ``opened`` of the batch in commit
        self._closing = False
        self._closed = False
        self._health = WriterHealth(unhealthy_after=unhealthy_after, probe_seconds=probe_seconds)
        self._unsigned = 0
        self._last_checkpoint = time.monotonic()
        if signer is not None:
            self._recover(signer)
        self._thread = threading.Thread(target=self._run, name="verity-audit-writer", daemon=True)
        self._thread.start()

    def _recover(self, signer: CheckpointSigner) -> None:
        finding = verify_tail(self.store, signer.public_key)
        if finding is not None:
            raise AuditTamperedError(finding.seq, f"{finding.kind.value}: {finding.reason}")
        if self.store.write_checkpoint(signer.sign) is not None:
            self.stats.checkpoints += 1

    @property
    def pending(self) -> int:
        """Events waiting for the next commit (queue depth)."""
        return len(self._open.items)

    def health(self) -> AuditHealth:
        """Whether the log takes events now (cheap; for readiness checks and metrics)."""
        return self._health.view(
            running=self._thread.is_alive(),
            closed=self._closed,
            full=len(self._open.items) >= self._max_pending,
        )

    def _enqueue(
        self, events: Iterable[EncodedEvent], waiter: threading.Lock | None = None
    ) -> tuple[_Batch, int]:
        with self._cv:
            while len(self._open.items) >= self._max_pending and not self._closing:
                self._cv.wait()
            if self._closing:
                raise AuditClosedError(f"the audit log is closed{_why(self.crash)}")
            batch = self._open
            first = len(batch.items)
            if first == 0:
                batch.opened = time.monotonic()
            batch.items.extend(events)
            if waiter is not None:
                batch.waiters.append(waiter)
            # (a batch held for early events only is committed as soon as anyone waits)
            if first == batch.early or len(batch.items) >= self._target:
                self._cv.notify()
        return batch, first

    def _wait(self, events: list[EncodedEvent], timeout: float | None) -> tuple[_Batch, int]:
        waiter = threading.Lock()
        waiter.acquire()
        batch, first = self._enqueue(events, waiter)
        if not waiter.acquire(timeout=-1 if timeout is None else timeout):
            raise AuditWriteError(f"audit event not acknowledged within {timeout} s")
        return batch, first

    def append(self, event: AuditEvent | EncodedEvent, *, timeout: float | None = None) -> Receipt:
        """Write ``event``; returns once it is durable (raises ``AuditWriteError`` if not,
        and also when ``timeout`` passes first: the event may still be written later).
        Every append takes an ``AuditEvent`` or its ``EncodedEvent`` (e.g. from
        ``encode_decision``)."""
        batch, index = self._wait([_encoded(event)], timeout)
        return batch.result(index)

    def append_many(self, events: Sequence[AuditEvent]) -> list[Receipt]:
        """Write several events in order, in one batch; returns once all are durable."""
        batch, first = self._wait([EncodedEvent.of(e) for e in events], None)
        return [batch.result(first + i) for i in range(len(events))]

    async def append_async(self, event: AuditEvent | EncodedEvent) -> Receipt:
        """``append`` for asyncio: awaits the commit without blocking the event loop
        (one wake-up of the loop per batch, however many of its events the batch holds)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        encoded = _encoded(event)
        with self._cv:
            if self._closing:
                raise AuditClosedError(f"the audit log is closed{_why(self.crash)}")
            batch, index = self._open, len(self._open.items)
            if index == 0:
                batch.opened = time.monotonic()
            batch.items.append(encoded)
            batch.async_waiters.setdefault(loop, []).append(future)
            if index == batch.early or len(batch.items) >= self._target:
                self._cv.notify()  # (the first waiter ends the hold of early events)
        await future
        return batch.result(index)

    def append_soon(self, event: AuditEvent | EncodedEvent, *, within: float) -> bool:
        """Queue ``event`` for the next group commit and return at once (True), without
        waiting for it to be durable, if the log keeps up: running, no store operation
        failed since the last success, the queue not full, and the oldest event not yet
        committed queued less than ``within`` seconds ago. Otherwise queue nothing and
        answer False: the caller then ``append``s and waits, as for any other event.

        Only for events whose loss in a crash the caller accepts (the gateway's repeated
        allows): at most those acknowledged within one window of ``within`` seconds."""
        if within <= 0:
            return False
        encoded = _encoded(event)
        with self._cv:
            now = time.monotonic()
            batch = self._open
            oldest = self._committing_since
            if oldest is None:
                oldest = batch.opened if batch.opened is not None and batch.items else now
            if (
                self._closing
                or self._health.failing_since is not None
                or len(batch.items) >= self._max_pending
                or now - oldest >= within
            ):
                return False
            index = len(batch.items)
            if index == 0:
                batch.opened = now
            batch.items.append(encoded)
            batch.early += 1
            self.stats.early += 1
            hold = now + within / 2
            if batch.hold_until is None or hold < batch.hold_until:
                batch.hold_until = hold
            if index == 0 or len(batch.items) >= self._max_pending:
                self._cv.notify()
        return True

    def checkpoint(self) -> bool:
        """Sign the current head now (from the caller's thread); True if one was written
        (False without a signer, or when the head is signed already)."""
        if self._signer is None:
            return False
        written = self.store.write_checkpoint(self._signer.sign) is not None
        self._mark_checkpoint(written=written)
        return written

    def _mark_checkpoint(self, *, written: bool = True) -> None:
        self.stats.checkpoints += written
        self._unsigned = 0
        self._last_checkpoint = time.monotonic()

    def _run(self) -> None:
        try:
            self._loop()
        finally:  # whatever stopped the writer, nobody may wait for it forever
            with self._cv:
                self._closing = True
                batch, self._open = self._open, _Batch()
                self._cv.notify_all()
            if batch.items:
                self._fail(batch, AuditClosedError(f"the audit writer stopped{_why(self.crash)}"))

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._open.items and not self._closing:
                    wait = self._idle_wait()
                    if wait is not None and wait <= 0:
                        break
                    self._cv.wait(wait)
                self._hold_early()
                self._fill_up()
                batch, self._open = self._open, _Batch()
                self._committing_since = batch.opened if batch.items else None
                self._cv.notify_all()
                closing = self._closing
            if batch.items:
                try:
                    self._commit(batch)
                except Exception as exc:  # noqa: BLE001 - a writer bug: fail the batch, stop
                    self.crash = exc
                    if not batch.done:
                        self._fail(batch, exc)
                    return
                finally:
                    self._committing_since = None
            elif closing:
                break
            else:
                self._upkeep()
        if self._unsigned:
            self._timed_checkpoint()

    def _idle_wait(self) -> float | None:
        """Seconds until the next timed checkpoint or probe (None: wait for events)."""
        waits = [w for w in (self._checkpoint_wait(), self._health.probe_wait()) if w is not None]
        return min(waits) if waits else None

    def _upkeep(self) -> None:
        """Idle work that is due: the timed checkpoint, else a probe of a failing store."""
        wait = self._checkpoint_wait()
        if wait is not None and wait <= 0:
            self._timed_checkpoint()
        elif self._health.failing_since is not None:
            self._probe()

    def _timed_checkpoint(self) -> None:
        self._health.started()
        try:
            self.checkpoint()
        except Exception as exc:  # noqa: BLE001 - keep the writer alive; retry after the interval
            self.stats.failures += 1
            self._last_checkpoint = time.monotonic()
            self._health.failed(exc)
        else:
            self._health.succeeded()

    def _probe(self) -> None:
        self._health.started()
        try:
            self.store.probe()
        except Exception as exc:  # noqa: BLE001 - still failing; probe again later
            self._health.failed(exc)
        else:
            self._health.succeeded()

    def _hold_early(self) -> None:
        """Wait (lock held by caller) while the open batch holds only early events
        (``append_soon``) and nobody waits for it, until half the window of its earliest
        event has passed: repeated allows then cost one commit per half window, not one
        each, and the window still bounds what a crash can lose. A waiter, a full
        queue or closing ends the hold at once."""
        batch = self._open
        while (
            batch.hold_until is not None
            and batch.early == len(batch.items)
            and len(batch.items) < self._max_pending
            and not self._closing
        ):
            remaining = batch.hold_until - time.monotonic()
            if remaining <= 0:
                return
            self._cv.wait(remaining)

    def _fill_up(self) -> None:
        """Wait (lock held by caller) up to ``commit_delay`` for the open batch to grow
        to the previous batch's size."""
        items, target = self._open.items, self._target
        if not items or len(items) >= target or self._closing:
            return
        deadline = time.monotonic() + self._delay
        while len(items) < target and not self._closing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._cv.wait(remaining)

    def _checkpoint_wait(self) -> float | None:
        if self._signer is None or not self._unsigned:
            return None
        return self._last_checkpoint + self._seconds - time.monotonic()

    def _sign_for(self, count: int) -> SignFn | None:
        if self._signer is None:
            return None
        due = time.monotonic() - self._last_checkpoint >= self._seconds
        return self._signer.sign if due or self._unsigned + count >= self._every else None

    def _commit(self, batch: _Batch) -> None:
        self._target = min(len(batch.items), self._max_pending)
        sign = self._sign_for(len(batch.items))
        started = time.perf_counter()
        self._health.started()
        try:
            try:
                receipts = self.store.append_batch(batch.items, sign=sign)
            except _Conflict:  # another writer ignored the lock: re-read the head once
                receipts = self.store.append_batch(batch.items, sign=sign)
        except Exception as exc:  # noqa: BLE001 - any failure is reported to every producer
            self.stats.failures += 1
            self._health.failed(exc)
            self._committing_since = None
            self._fail(batch, exc)
            return
        self._health.succeeded()
        self.stats.last_commit_seconds = time.perf_counter() - started
        self.stats.events += len(receipts)
        self.stats.batches += 1
        self._unsigned += len(receipts)
        if sign is not None:
            self._mark_checkpoint()
        self._committing_since = None  # before its producers wake: the log has caught up
        batch.finish(receipts, None)

    def _fail(self, batch: _Batch, exc: BaseException) -> None:
        """Fail every producer waiting on ``batch``; count and log its events that were
        acknowledged early (``append_soon``): they are lost."""
        if batch.early:
            self.stats.early_lost += batch.early
            log.error(
                "audit: %d early-acknowledged events were not written (%s)",
                batch.early,
                type(exc).__name__,
            )
        batch.finish([], exc)

    def close(self) -> None:
        """Write what is pending and a final checkpoint, stop the writer, close the store."""
        with self._cv:
            if self._closing:
                self._closed = True
                return
            self._closing = True
            self._closed = True
            self._cv.notify_all()
        self._thread.join()
        if self._close_store:
            self.store.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _encoded(event: AuditEvent | EncodedEvent) -> EncodedEvent:
    return event if isinstance(event, EncodedEvent) else EncodedEvent.of(event)


def _why(crash: Exception | None) -> str:
    return "" if crash is None else f" (writer failed: {crash!r})"
