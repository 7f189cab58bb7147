"""SQLite backends: the embedded default (one file, WAL, no server)."""

from __future__ import annotations

from .counters import SqliteCounters as SqliteCounters
from .db import SqliteDatabase as SqliteDatabase
from .devices import SqliteDevices as SqliteDevices
from .grants import SqliteGrants as SqliteGrants
from .keys import SqliteKeys as SqliteKeys
from .revocations import SqliteRevocations as SqliteRevocations
from .risk import SqliteRisk as SqliteRisk
from .schema import migrate as migrate
from .schema import status as status
from .sessions import SqliteSessions as SqliteSessions

__all__ = [
    "SqliteCounters",
    "SqliteDatabase",
    "SqliteDevices",
    "SqliteGrants",
    "SqliteKeys",
    "SqliteRevocations",
    "SqliteRisk",
    "SqliteSessions",
    "migrate",
    "status",
]
