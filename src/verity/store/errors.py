"""Errors of the state stores; every one is a ``verity.errors.VerityError``.

StoreError
 ├── StoreUnavailableError   the backend cannot be reached (URL shown with its password masked)
 ├── MigrationError          the schema could not be migrated, or has drifted
 ├── DuplicateSessionError   a session with this id already exists
 ├── UnknownDeviceError      a posture report names a device that is not registered
 ├── ConcurrentUpdateError   a compare-and-set lost against another writer
 └── GrantError
      ├── GrantNotFoundError a JIT grant id is unknown
      ├── GrantStateError    the grant is not in a state that allows this transition
      └── SelfApprovalError  the approver is the principal who asked
"""

from __future__ import annotations

from .._urls import mask_url
from ..errors import VerityError


class StoreError(VerityError):
    """Root of the errors raised by ``verity.store``."""


class StoreUnavailableError(StoreError):
    """A backend could not be reached or failed mid-operation."""

    def __init__(self, url: str, reason: str) -> None:
        try:
            self.url = mask_url(url)
        except ValueError:  # unparsable: show nothing of it
            self.url = "<invalid url>"
        self.reason = reason
        super().__init__(f"store {self.url} is unavailable: {reason}")


class MigrationError(StoreError):
    """The schema could not be brought up to date, or differs from what this code expects."""

    def __init__(self, version: int | None, message: str) -> None:
        self.version = version
        prefix = f"migration {version}: " if version is not None else ""
        super().__init__(prefix + message)


class DuplicateSessionError(StoreError):
    """``create`` was given the id of a session that already exists."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__("a session with this id already exists")


class UnknownDeviceError(StoreError):
    """A posture report for a device that was never registered."""

    def __init__(self, device_id: str) -> None:
        self.device_id = device_id
        super().__init__(f"device {device_id!r} is not registered")


class ConcurrentUpdateError(StoreError):
    """A compare-and-set update found another version than the one it expected."""

    def __init__(self, key: str, expected: int, actual: int | None) -> None:
        self.key = key
        self.expected = expected
        self.actual = actual
        super().__init__(f"{key!r} is at version {actual}, not {expected}")


class GrantError(StoreError):
    """A just-in-time grant could not be changed as asked."""


class GrantNotFoundError(GrantError):
    """No grant has this id."""

    def __init__(self, grant_id: str) -> None:
        self.grant_id = grant_id
        super().__init__(f"no grant {grant_id!r}")


class GrantStateError(GrantError):
    """The grant is not pending (it was already approved, denied or has expired)."""

    def __init__(self, grant_id: str, status: str) -> None:
        self.grant_id = grant_id
        self.status = status
        super().__init__(f"grant {grant_id!r} is {status}, not pending")


class SelfApprovalError(GrantError):
    """A principal tried to approve (or deny) their own request."""

    def __init__(self, grant_id: str, approver: str) -> None:
        self.grant_id = grant_id
        self.approver = approver
        super().__init__(f"{approver!r} cannot decide their own request {grant_id!r}")
