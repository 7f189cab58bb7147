"""Is the audit writer taking events? ``AuditLog.health()`` answers with an ``AuditHealth``.

The writer reports every store operation it runs (a group commit, a timed checkpoint, a
probe) to a ``WriterHealth``, which keeps three facts: since when the current operation
has been running, since when every operation has failed, and when the last one ended.
From them and the writer's own state, ``view`` derives the answer that ``/readyz`` and
the ``verity_audit_writer_up`` gauge report:

=========  =====  =====================================================================
status     ok     when
=========  =====  =====================================================================
ok         yes    the last store operation succeeded
degraded   yes    operations fail, for less than ``unhealthy_after`` seconds so far
failing    no     every operation has failed for ``unhealthy_after`` seconds or more
stalled    no     one operation has been running for ``unhealthy_after`` seconds or more
full       no     the queue holds ``max_pending`` events (producers are blocked)
stopped    no     the writer thread is gone (a bug or a fatal error; restart the process)
closed     no     ``close()`` was called
=========  =====  =====================================================================

The reasons are fixed sentences: no exception text, path or URL reaches a client.
While operations fail, the idle writer probes the store (``AuditStore.probe``, a small
durable write outside the chain) every ``probe_seconds``, so health comes back on its
own once the store can be written again, even when no request arrives (a gateway that
is not ready gets none).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("verity.audit")

REASONS = {
    "ok": "",
    "degraded": "audit log writes are failing; retrying",
    "failing": "audit log writes are failing",
    "stalled": "audit log writes are not completing",
    "full": "the audit log queue is full",
    "stopped": "the audit log writer has stopped",
    "closed": "the audit log is closed",
}


@dataclass(frozen=True, slots=True)
class AuditHealth:
    """Whether the audit log takes events (``ok``), a ``status`` code from the table in
    ``verity.audit.health`` and a public ``reason`` ("" when all is well)."""

    ok: bool
    status: str
    reason: str

    @classmethod
    def of(cls, status: str) -> AuditHealth:
        """The health for ``status`` (a key of ``REASONS``)."""
        return cls(status in ("ok", "degraded"), status, REASONS[status])


class WriterHealth:
    """What the writer thread tells about its store operations (see the module doc).

    Written by the writer thread only; read from any thread (single attribute reads)."""

    def __init__(
        self,
        *,
        unhealthy_after: float,
        probe_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.unhealthy_after = max(0.0, unhealthy_after)
        self.probe_seconds = max(0.01, probe_seconds)
        self._clock = clock
        self.busy_since: float | None = None
        self.failing_since: float | None = None
        self.last_end = clock()

    def started(self) -> None:
        """A store operation begins."""
        self.busy_since = self._clock()

    def succeeded(self) -> None:
        """The operation succeeded: the store is writable."""
        now = self._clock()
        if self.failing_since is not None:
            log.warning("audit log writes recovered after %.1f s", now - self.failing_since)
        self.busy_since, self.failing_since, self.last_end = None, None, now

    def failed(self, exc: BaseException) -> None:
        """The operation failed (only the exception's type is logged: no paths or URLs)."""
        now = self._clock()
        if self.failing_since is None:
            log.error("audit log writes are failing (%s)", type(exc).__name__)
            self.failing_since = now
        self.busy_since, self.last_end = None, now

    def probe_wait(self) -> float | None:
        """Seconds until the next probe is due (None while writes succeed)."""
        if self.failing_since is None:
            return None
        return self.last_end + self.probe_seconds - self._clock()

    def view(self, *, running: bool, closed: bool, full: bool) -> AuditHealth:
        """The health given the writer's state (``running``: its thread is alive)."""
        if closed:
            return AuditHealth.of("closed")
        if not running:
            return AuditHealth.of("stopped")
        now = self._clock()
        busy, failing = self.busy_since, self.failing_since
        if busy is not None and now - busy >= self.unhealthy_after:
            return AuditHealth.of("stalled")
        if full:
            return AuditHealth.of("full")
        if failing is not None:
            late = now - failing >= self.unhealthy_after
            return AuditHealth.of("failing" if late else "degraded")
        return AuditHealth.of("ok")
