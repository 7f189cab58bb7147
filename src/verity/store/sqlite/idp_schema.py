"""The embedded identity provider's SQLite tables: their own migration track.

Tracked in ``verity_idp_schema_migrations`` (not ``verity_schema_migrations``), applied
when the provider's user store or flow state opens the database, or by ``migrate()``.
"""

from __future__ import annotations

from ..migrations import AppliedMigration, Migration, MigrationStatus, check_sequence, compare
from .db import SqliteDatabase
from .schema import migrate as _migrate

TABLE = "verity_idp_schema_migrations"

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "idp users",
        (
            """create table verity_idp_users (
                id text primary key,
                email text not null unique,
                display_name text not null default '',
                groups text not null default '[]',
                roles text not null default '[]',
                password_hash text not null,
                totp_secret text,
                totp_last_step integer not null default 0,
                disabled integer not null default 0,
                created real not null,
                updated real not null
            )""",
        ),
    ),
    Migration(
        2,
        "idp flow state",
        (
            """create table verity_idp_transactions (
                id_hash text primary key,
                data text not null,
                expires real not null
            )""",
            "create index verity_idp_transactions_expires on verity_idp_transactions (expires)",
            """create table verity_idp_codes (
                code_hash text primary key,
                data text not null,
                expires real not null,
                used integer not null default 0,
                reused integer not null default 0,
                family text,
                jtis text not null default '[]'
            )""",
            "create index verity_idp_codes_expires on verity_idp_codes (expires)",
            """create table verity_idp_refresh_tokens (
                token_hash text primary key,
                family text not null,
                data text not null,
                expires real not null,
                used integer not null default 0,
                reused integer not null default 0
            )""",
            "create index verity_idp_refresh_tokens_family on verity_idp_refresh_tokens (family)",
            "create index verity_idp_refresh_tokens_expires on verity_idp_refresh_tokens (expires)",
            """create table verity_idp_revoked_families (
                family text primary key,
                expires real not null
            )""",
            "create index verity_idp_revoked_families_expires "
            "on verity_idp_revoked_families (expires)",
        ),
    ),
)
check_sequence(MIGRATIONS)


def migrate(db: SqliteDatabase) -> list[int]:
    """Apply the provider's pending migrations (idempotent); returns the versions applied."""
    return _migrate(db, MIGRATIONS, table=TABLE)


def status(db: SqliteDatabase) -> MigrationStatus:
    """Applied and pending migrations of the provider's track (read-only)."""
    exists = db.query_one("select 1 from sqlite_master where type = 'table' and name = ?", (TABLE,))
    rows = (
        []
        if exists is None
        else db.query(
            f"select version, name, checksum, applied_at from {TABLE} order by version"  # noqa: S608
        )
    )
    applied = [AppliedMigration(int(v), str(n), str(c), float(a)) for v, n, c, a in rows]
    return compare("sqlite", MIGRATIONS, applied)
