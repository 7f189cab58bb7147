"""``verity.audit``: the tamper-evident audit log.

Events (OCSF-mapped, see ``docs/audit.md``) are built with ``decision_event``,
``authentication_event`` and ``session_event``, written through an ``AuditLog`` (group
commit, durable on acknowledgement) into a hash-chained ``AuditStore`` (SQLite or
PostgreSQL) with Ed25519-signed checkpoints, and checked with ``verify``.
"""

from __future__ import annotations

from .backends import open_store as open_store
from .builders import authentication_event as authentication_event
from .builders import decision_event as decision_event
from .builders import redact_detail as redact_detail
from .builders import session_event as session_event
from .builders import user_ref as user_ref
from .canonical import canonical_json as canonical_json
from .chain import GENESIS as GENESIS
from .chain import ChainVerifier as ChainVerifier
from .chain import Finding as Finding
from .chain import Receipt as Receipt
from .chain import Tamper as Tamper
from .chain import record_hash as record_hash
from .errors import AuditClosedError as AuditClosedError
from .errors import AuditError as AuditError
from .errors import AuditKeyError as AuditKeyError
from .errors import AuditStoreError as AuditStoreError
from .errors import AuditTamperedError as AuditTamperedError
from .errors import AuditWriteError as AuditWriteError
from .errors import ChainConflictError as ChainConflictError
from .health import AuditHealth as AuditHealth
from .keys import Checkpoint as Checkpoint
from .keys import CheckpointSigner as CheckpointSigner
from .keys import generate_key as generate_key
from .keys import load_private_key as load_private_key
from .keys import load_public_key as load_public_key
from .keys import public_key_path as public_key_path
from .ocsf import EventClass as EventClass
from .ocsf import EventKind as EventKind
from .ocsf import Severity as Severity
from .ocsf import Status as Status
from .schema import AuditEvent as AuditEvent
from .schema import Endpoint as Endpoint
from .schema import UserRef as UserRef
from .store import AuditStore as AuditStore
from .store import EncodedEvent as EncodedEvent
from .store import Query as Query
from .store import StoredRecord as StoredRecord
from .verify import VerifyReport as VerifyReport
from .verify import verify as verify
from .writer import AuditLog as AuditLog

__all__ = [
    "GENESIS",
    "AuditClosedError",
    "AuditError",
    "AuditEvent",
    "AuditHealth",
    "AuditKeyError",
    "AuditLog",
    "AuditStore",
    "AuditStoreError",
    "AuditTamperedError",
    "AuditWriteError",
    "ChainConflictError",
    "ChainVerifier",
    "Checkpoint",
    "CheckpointSigner",
    "EncodedEvent",
    "Endpoint",
    "EventClass",
    "EventKind",
    "Finding",
    "Query",
    "Receipt",
    "Severity",
    "Status",
    "StoredRecord",
    "Tamper",
    "UserRef",
    "VerifyReport",
    "authentication_event",
    "canonical_json",
    "decision_event",
    "generate_key",
    "load_private_key",
    "load_public_key",
    "open_store",
    "public_key_path",
    "record_hash",
    "redact_detail",
    "session_event",
    "user_ref",
    "verify",
]
