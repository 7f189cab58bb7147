"""PostgreSQL backends: durable state shared by many nodes (psycopg 3 + psycopg_pool)."""

from __future__ import annotations

from .counters import PostgresCounters as PostgresCounters
from .db import PostgresDatabase as PostgresDatabase
from .devices import PostgresDevices as PostgresDevices
from .grants import PostgresGrants as PostgresGrants
from .keys import PostgresKeys as PostgresKeys
from .revocations import PostgresRevocations as PostgresRevocations
from .risk import PostgresRisk as PostgresRisk
from .schema import migrate as migrate
from .schema import status as status
from .sessions import PostgresSessions as PostgresSessions

__all__ = [
    "PostgresCounters",
    "PostgresDatabase",
    "PostgresDevices",
    "PostgresGrants",
    "PostgresKeys",
    "PostgresRevocations",
    "PostgresRisk",
    "PostgresSessions",
    "migrate",
    "status",
]
