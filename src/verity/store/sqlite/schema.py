"""The SQLite schema as numbered migrations, applied under the database write lock."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

from ..errors import MigrationError
from ..migrations import (
    AppliedMigration,
    Migration,
    MigrationStatus,
    check_sequence,
    compare,
)
from .db import SqliteDatabase

_TRACKING = """create table if not exists {table} (
    version integer primary key,
    name text not null,
    checksum text not null,
    applied_at real not null
)"""
_TABLE = "verity_schema_migrations"

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "initial",
        (
            """create table verity_sessions (
                id text primary key,
                user_id text not null,
                created real not null,
                last_seen real not null,
                expires real not null,
                mfa integer not null default 0,
                auth_time real,
                device_id text,
                trust_score integer check (trust_score between 0 and 100),
                data text not null default '{}',
                version integer not null default 1,
                rotated_from text unique
            )""",
            "create index verity_sessions_user on verity_sessions (user_id, created)",
            "create index verity_sessions_expires on verity_sessions (expires)",
            """create table verity_revocations (
                kind text not null check (kind in ('session', 'subject', 'token', 'jti')),
                value text not null,
                id text not null,
                revoked_at real not null,
                expires real not null,
                reason text not null default '',
                primary key (kind, value)
            )""",
            "create index verity_revocations_expires on verity_revocations (expires)",
            """create table verity_devices (
                id text primary key,
                owner text,
                created real not null,
                updated real not null,
                attributes text not null default '{}',
                posture text,
                reported_at real
            )""",
            "create index verity_devices_owner on verity_devices (owner)",
            """create table verity_risk_signals (
                id text primary key,
                subject text not null,
                kind text not null,
                at real not null,
                severity integer not null default 0,
                detail text not null default '{}'
            )""",
            "create index verity_risk_signals_subject on verity_risk_signals (subject, at)",
            """create table verity_trust_scores (
                subject text primary key,
                score integer not null check (score between 0 and 100),
                factors text not null,
                updated real not null,
                version integer not null
            )""",
            """create table verity_grants (
                id text primary key,
                principal text not null,
                name text not null,
                reason text not null default '',
                duration real not null check (duration > 0),
                requested_at real not null,
                status text not null
                    check (status in ('pending', 'approved', 'denied', 'expired')),
                approver text,
                decided_at real,
                starts real,
                expires real,
                constraint verity_grants_no_self_approval check (
                    approver is null or lower(trim(approver)) <> lower(trim(principal))
                )
            )""",
            "create index verity_grants_principal on verity_grants (principal, status)",
            """create table verity_counter_hits (
                seq integer primary key,
                key text not null,
                at real not null
            )""",
            "create index verity_counter_hits_key on verity_counter_hits (key, at)",
            """create table verity_keys (
                name text not null,
                version integer not null check (version > 0),
                algorithm text not null,
                created real not null,
                material blob not null,
                primary key (name, version)
            )""",
        ),
    ),
)
check_sequence(MIGRATIONS)


def _applied(db: SqliteDatabase) -> list[AppliedMigration]:
    exists = db.query_one(
        "select 1 from sqlite_master where type = 'table' and name = 'verity_schema_migrations'"
    )
    if exists is None:
        return []
    rows = db.query(
        "select version, name, checksum, applied_at from verity_schema_migrations order by version"
    )
    return [AppliedMigration(int(v), str(n), str(c), float(a)) for v, n, c, a in rows]


def status(db: SqliteDatabase) -> MigrationStatus:
    """Applied and pending migrations of ``db`` (read-only)."""
    return compare("sqlite", MIGRATIONS, _applied(db))


def migrate(
    db: SqliteDatabase,
    migrations: Sequence[Migration] = MIGRATIONS,
    *,
    table: str = _TABLE,
) -> list[int]:
    """Apply pending migrations in one transaction; returns the versions applied.

    Idempotent, and safe when several processes start at once: the transaction holds
    the database write lock, so the second process finds nothing left to do. Other
    components (the embedded IdP) pass their own ``migrations`` and tracking ``table``.
    """
    if not table.isidentifier():
        raise ValueError(f"bad migrations table name {table!r}")
    done: list[int] = []
    with db.write() as conn:
        conn.execute(_TRACKING.format(table=table))
        applied = {row[0] for row in conn.execute(f"select version from {table}")}  # noqa: S608
        for migration in migrations:
            if migration.version in applied:
                continue
            try:
                for statement in migration.statements:
                    conn.execute(statement)
            except sqlite3.DatabaseError as exc:
                raise MigrationError(migration.version, str(exc)) from None
            conn.execute(
                f"insert into {table} values (?, ?, ?, ?)",  # noqa: S608 - identifier checked
                (migration.version, migration.name, migration.checksum, time.time()),
            )
            done.append(migration.version)
    return done
