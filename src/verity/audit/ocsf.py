"""OCSF 1.3 vocabulary used by Verity's audit events: classes, activities, status, severity.

Sources: the OCSF schema (https://schema.ocsf.io/1.3.0/): Authentication (3002) and
Authorize Session (3003) in the Identity & Access Management category (3), API Activity
(6003) in the Application Activity category (6). ``type_uid = class_uid * 100 +
activity_id``.
"""

from __future__ import annotations

import enum

OCSF_VERSION = "1.3.0"


class EventClass(enum.IntEnum):
    """The OCSF classes Verity emits (``class_uid``)."""

    AUTHENTICATION = 3002
    AUTHORIZE_SESSION = 3003
    API_ACTIVITY = 6003


CLASS_INFO: dict[EventClass, tuple[str, int, str]] = {
    EventClass.AUTHENTICATION: ("Authentication", 3, "Identity & Access Management"),
    EventClass.AUTHORIZE_SESSION: ("Authorize Session", 3, "Identity & Access Management"),
    EventClass.API_ACTIVITY: ("API Activity", 6, "Application Activity"),
}
ACTIVITY_NAMES: dict[EventClass, dict[int, str]] = {
    EventClass.AUTHENTICATION: {1: "Logon", 2: "Logoff", 99: "Other"},
    EventClass.AUTHORIZE_SESSION: {1: "Assign Privileges", 2: "Assign Groups", 99: "Other"},
    EventClass.API_ACTIVITY: {1: "Create", 2: "Read", 3: "Update", 4: "Delete", 99: "Other"},
}


class EventKind(enum.Enum):
    """What happened, in Verity's words (kept in ``unmapped.verity.kind``)."""

    DECISION = "decision"
    AUTHENTICATION = "authentication"
    LOGIN = "login"
    LOGOUT = "logout"
    MFA_FAILURE = "mfa_failure"
    SESSION_REVOKED = "session_revoked"
    POLICY_RELOADED = "policy_reloaded"
    GRANT_CREATED = "grant_created"
    GRANT_APPROVED = "grant_approved"
    GRANT_DENIED = "grant_denied"
    GRANT_EXPIRED = "grant_expired"
    DEVICE_STATE_CHANGED = "device_state_changed"


class Status(enum.IntEnum):
    """OCSF ``status_id``."""

    UNKNOWN = 0
    SUCCESS = 1
    FAILURE = 2
    OTHER = 99


class Severity(enum.IntEnum):
    """OCSF ``severity_id``."""

    UNKNOWN = 0
    INFORMATIONAL = 1
    LOW = 2
    MEDIUM = 3
    HIGH = 4
    CRITICAL = 5
    FATAL = 6
    OTHER = 99


class UserType(enum.IntEnum):
    """OCSF ``user.type_id`` (a workload is a System user)."""

    UNKNOWN = 0
    USER = 1
    ADMIN = 2
    SYSTEM = 3
