"""The PostgreSQL schema as numbered migrations, applied under an advisory lock."""

from __future__ import annotations

import time

import psycopg
from psycopg import sql

from ..errors import MigrationError
from ..migrations import AppliedMigration, Migration, MigrationStatus, check_sequence, compare
from .db import MIGRATIONS_LOCK, Conn, PostgresDatabase

_TRACKING = """create table if not exists {} (
    version integer primary key,
    name text not null,
    checksum text not null,
    applied_at double precision not null
)"""
_TABLE = "verity_schema_migrations"

_INITIAL = (
    """create table verity_sessions (
        id text primary key,
        user_id text not null,
        created double precision not null,
        last_seen double precision not null,
        expires double precision not null,
        mfa boolean not null default false,
        auth_time double precision,
        device_id text,
        trust_score smallint check (trust_score between 0 and 100),
        data jsonb not null default '{}',
        version bigint not null default 1,
        rotated_from text unique
    )""",
    "create index verity_sessions_user on verity_sessions (user_id, created)",
    "create index verity_sessions_expires on verity_sessions (expires)",
    """create table verity_revocations (
        kind text not null check (kind in ('session', 'subject', 'token', 'jti')),
        value text not null,
        id text not null,
        revoked_at double precision not null,
        expires double precision not null,
        reason text not null default '',
        primary key (kind, value)
    )""",
    "create index verity_revocations_expires on verity_revocations (expires)",
    "create index verity_revocations_revoked_at on verity_revocations (revoked_at)",
    """create table verity_devices (
        id text primary key,
        owner text,
        created double precision not null,
        updated double precision not null,
        attributes jsonb not null default '{}',
        posture jsonb,
        reported_at double precision
    )""",
    "create index verity_devices_owner on verity_devices (owner)",
    """create table verity_risk_signals (
        id text primary key,
        subject text not null,
        kind text not null,
        at double precision not null,
        severity integer not null default 0,
        detail jsonb not null default '{}'
    )""",
    "create index verity_risk_signals_subject on verity_risk_signals (subject, at)",
    """create table verity_trust_scores (
        subject text primary key,
        score smallint not null check (score between 0 and 100),
        factors jsonb not null,
        updated double precision not null,
        version bigint not null
    )""",
    """create table verity_grants (
        id text primary key,
        principal text not null,
        name text not null,
        reason text not null default '',
        duration double precision not null check (duration > 0),
        requested_at double precision not null,
        status text not null check (status in ('pending', 'approved', 'denied', 'expired')),
        approver text,
        decided_at double precision,
        starts double precision,
        expires double precision,
        constraint verity_grants_no_self_approval check (
            approver is null or lower(btrim(approver)) <> lower(btrim(principal))
        )
    )""",
    "create index verity_grants_principal on verity_grants (principal, status)",
    """create table verity_counter_hits (
        seq bigint generated always as identity primary key,
        key text not null,
        at double precision not null
    )""",
    "create index verity_counter_hits_key on verity_counter_hits (key, at)",
    """create table verity_keys (
        name text not null,
        version integer not null check (version > 0),
        algorithm text not null,
        created double precision not null,
        material bytea not null,
        primary key (name, version)
    )""",
)

MIGRATIONS: tuple[Migration, ...] = (Migration(1, "initial", _INITIAL),)
check_sequence(MIGRATIONS)

_LOCK = sql.SQL("select pg_advisory_lock({}, hashtext(current_schema()))").format(MIGRATIONS_LOCK)
_UNLOCK = sql.SQL("select pg_advisory_unlock({}, hashtext(current_schema()))").format(
    MIGRATIONS_LOCK
)


def _applied(conn: Conn, table: str = _TABLE) -> list[AppliedMigration]:
    exists = conn.execute("select to_regclass(%s)", (table,)).fetchone()
    if exists is None or exists[0] is None:
        return []
    query = sql.SQL("select version, name, checksum, applied_at from {} order by version")
    rows = conn.execute(query.format(sql.Identifier(table))).fetchall()
    return [AppliedMigration(int(v), str(n), str(c), float(a)) for v, n, c, a in rows]


def status(
    db: PostgresDatabase,
    migrations: tuple[Migration, ...] = MIGRATIONS,
    *,
    table: str = _TABLE,
) -> MigrationStatus:
    """Applied and pending migrations (read-only)."""
    with db.connection() as conn:
        return compare("postgresql", migrations, _applied(conn, table))


def migrate(
    db: PostgresDatabase,
    migrations: tuple[Migration, ...] = MIGRATIONS,
    *,
    table: str = _TABLE,
) -> list[int]:
    """Apply pending migrations, each in its own transaction; returns the versions applied.

    Idempotent and safe under concurrency: a session advisory lock (per schema) makes
    concurrent migrators take turns; the later ones find nothing left to do. Other
    components (the embedded IdP) pass their own ``migrations`` and tracking ``table``.
    """
    if not table.isidentifier():
        raise ValueError(f"bad migrations table name {table!r}")
    done: list[int] = []
    with db.connection() as conn:
        conn.execute(_LOCK)
        try:
            conn.execute(sql.SQL(_TRACKING).format(sql.Identifier(table)))
            applied = {row.version for row in _applied(conn, table)}
            for migration in migrations:
                if migration.version not in applied:
                    _apply(conn, migration, table)
                    done.append(migration.version)
        finally:
            conn.execute(_UNLOCK)
    return done


def _apply(conn: Conn, migration: Migration, table: str) -> None:
    try:
        with conn.transaction():
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                sql.SQL("insert into {} values (%s, %s, %s, %s)").format(sql.Identifier(table)),
                (migration.version, migration.name, migration.checksum, time.time()),
            )
    except psycopg.errors.OperationalError:
        raise
    except psycopg.Error as exc:
        message = str(exc).strip().splitlines()
        raise MigrationError(migration.version, message[0] if message else "failed") from None
