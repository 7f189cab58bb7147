"""``SecurityEventSink``: where identity and policy code send security-relevant events.

Login, logout, back-channel logout, MFA failure, lockout and policy reloads are built
with the builders of ``verity.audit`` and handed to ``publish`` (coroutines) or
``publish_sync`` (worker threads). Both always write one ``log_security_event`` line
(from the event's own fields: never a token, cookie or password) and, when a sink is
configured, one audit event. ``AuditSink`` connects a sink to an ``AuditLog``; ``None``
means no audit sink (the log line is still written).

Recording is best effort: a log that does not take the event within the timeout is
reported as ``audit.security_event_lost`` and the login or reload goes on (access
decisions, which must be audited, go through the gateway's own fail-closed path).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..observability.seclog import log_security_event
from .errors import AuditError
from .schema import AuditEvent
from .writer import AuditLog


@runtime_checkable
class SecurityEventSink(Protocol):
    """Receives security events; ``emit`` blocks until recorded, ``aemit`` awaits it."""

    def emit(self, event: AuditEvent) -> None:
        """Record ``event`` from a worker thread (may block)."""

    async def aemit(self, event: AuditEvent) -> None:
        """Record ``event`` without blocking the event loop."""


class AuditSink:
    """A ``SecurityEventSink`` writing into an ``AuditLog`` (the caller owns and closes it)."""

    def __init__(self, audit: AuditLog, *, timeout_seconds: float = 5.0) -> None:
        self.audit = audit
        self.timeout_seconds = timeout_seconds

    def emit(self, event: AuditEvent) -> None:
        """Append ``event``; returns once it is durable (or the timeout passed)."""
        self.audit.append(event, timeout=self.timeout_seconds)

    async def aemit(self, event: AuditEvent) -> None:
        """Append ``event`` from a coroutine; returns once it is durable."""
        await self.audit.append_async(event)


def _log(name: str, event: AuditEvent, level: str) -> None:
    log_security_event(
        name,
        client_ip=event.src_endpoint.ip if event.src_endpoint else None,
        principal_id=event.actor.uid if event.actor else None,
        level=level,
        kind=event.kind.value,
        class_uid=int(event.class_uid),
        activity_id=event.activity_id,
        status_id=int(event.status),
        status_detail=event.status_detail,
        session_uid=event.session_uid,
        audit_uid=event.uid,
    )


def _lost(name: str, event: AuditEvent, exc: AuditError) -> None:
    log_security_event(
        "audit.security_event_lost",
        level="error",
        lost_event=name,
        audit_uid=event.uid,
        error=type(exc).__name__,
    )


async def publish(
    sink: SecurityEventSink | None, event: AuditEvent, *, name: str, level: str = "info"
) -> None:
    """Log ``event`` as the security event ``name`` and record it in ``sink`` (if any)."""
    _log(name, event, level)
    if sink is None:
        return
    try:
        await sink.aemit(event)
    except AuditError as exc:
        _lost(name, event, exc)


def publish_sync(
    sink: SecurityEventSink | None, event: AuditEvent, *, name: str, level: str = "info"
) -> None:
    """``publish`` for synchronous code (worker threads: ``emit`` may block)."""
    _log(name, event, level)
    if sink is None:
        return
    try:
        sink.emit(event)
    except AuditError as exc:
        _lost(name, event, exc)
