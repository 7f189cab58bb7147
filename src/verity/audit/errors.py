"""Errors of the audit log, under ``verity.errors.VerityError``.

AuditError
 ├── AuditKeyError       a signing/verification key is missing, unreadable or unsafe
 ├── AuditStoreError     the backend failed (unreachable, bad URL, I/O error)
 ├── AuditWriteError     an event could not be made durable (the append was not acknowledged)
 ├── AuditClosedError    the log was closed before or while appending
 ├── ChainConflictError  another writer extended the chain concurrently (a retried fork)
 ├── AuditTamperedError  the log failed verification where a writer or reader relies on it
 └── AuditExportError    exporting or forwarding (syslog) failed
"""

from __future__ import annotations

from ..errors import VerityError


class AuditError(VerityError):
    """Root of every audit log error."""


class AuditKeyError(AuditError):
    """A checkpoint key cannot be used (``path`` names the file when there is one)."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class AuditStoreError(AuditError):
    """The audit backend failed or its URL is unusable."""


class AuditWriteError(AuditError):
    """An event was not written; the caller must treat it as not audited (fail closed)."""


class AuditClosedError(AuditWriteError):
    """The audit log is closed."""


class ChainConflictError(AuditStoreError):
    """Two writers tried to append the same sequence number; the batch was rolled back."""

    def __init__(self, seq: int) -> None:
        self.seq = seq
        super().__init__(f"sequence number {seq} was taken by another writer")


class AuditTamperedError(AuditError):
    """The log does not verify: ``seq`` is the first bad record, ``reason`` says why."""

    def __init__(self, seq: int, reason: str) -> None:
        self.seq = seq
        self.reason = reason
        super().__init__(f"audit log fails verification at seq {seq}: {reason}")


class AuditExportError(AuditError):
    """An export or syslog forward failed (the destination, or a message too large)."""
