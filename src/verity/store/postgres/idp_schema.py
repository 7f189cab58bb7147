"""The embedded identity provider's PostgreSQL tables: their own migration track.

Tracked in ``verity_idp_schema_migrations`` (beside ``verity_schema_migrations``, in the
same schema), applied under the store's migration lock when the provider's user store or
flow state opens the database, or by ``migrate()``. The version numbers and names match
the SQLite track (``verity.store.sqlite.idp_schema``).
"""

from __future__ import annotations

from ..migrations import Migration, MigrationStatus, check_sequence
from .db import PostgresDatabase
from .schema import migrate as _migrate
from .schema import status as _status

TABLE = "verity_idp_schema_migrations"

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "idp users",
        (
            """create table verity_idp_users (
                id text primary key,
                email text not null,
                display_name text not null default '',
                groups text[] not null default '{}',
                roles text[] not null default '{}',
                password_hash text not null,
                totp_secret text,
                totp_last_step bigint not null default 0,
                disabled boolean not null default false,
                created double precision not null,
                updated double precision not null
            )""",
            "create unique index verity_idp_users_email on verity_idp_users (lower(email))",
        ),
    ),
    Migration(
        2,
        "idp flow state",
        (
            """create table verity_idp_transactions (
                id_hash text primary key,
                data text not null,
                expires double precision not null
            )""",
            "create index verity_idp_transactions_expires on verity_idp_transactions (expires)",
            """create table verity_idp_codes (
                code_hash text primary key,
                data text not null,
                expires double precision not null,
                used boolean not null default false,
                reused boolean not null default false,
                family text,
                jtis text not null default '[]'
            )""",
            "create index verity_idp_codes_expires on verity_idp_codes (expires)",
            """create table verity_idp_refresh_tokens (
                token_hash text primary key,
                family text not null,
                data text not null,
                expires double precision not null,
                used boolean not null default false,
                reused boolean not null default false
            )""",
            "create index verity_idp_refresh_tokens_family on verity_idp_refresh_tokens (family)",
            "create index verity_idp_refresh_tokens_expires on verity_idp_refresh_tokens (expires)",
            """create table verity_idp_revoked_families (
                family text primary key,
                expires double precision not null
            )""",
            "create index verity_idp_revoked_families_expires "
            "on verity_idp_revoked_families (expires)",
        ),
    ),
)
check_sequence(MIGRATIONS)


def migrate(db: PostgresDatabase) -> list[int]:
    """Apply the provider's pending migrations (idempotent, safe while other nodes start)."""
    return _migrate(db, MIGRATIONS, table=TABLE)


def status(db: PostgresDatabase) -> MigrationStatus:
    """Applied and pending migrations of the provider's track (read-only)."""
    return _status(db, MIGRATIONS, table=TABLE)
