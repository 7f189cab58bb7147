"""Row-level security with a verified principal, against real PostgreSQL.

The application connects as ``verity_app`` (not the table owner, no BYPASSRLS), as it
would in production, and tries every way we know to read or write rows of another user.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import ConnectionPool

from verity.integrations.postgres_rls import (
    RlsIdentityError,
    async_reset_connection,
    async_rls_transaction,
    install_key,
    key_pads,
    reset_connection,
    rls_transaction,
    sign,
)
from verity.model import Principal

SCHEMA_SQL = Path(__file__).parents[2] / "examples" / "rls" / "schema.sql"
KEY = bytes(range(32))
ALICE = Principal(id="alice", roles={"user"})
BOB = Principal(id="bob", roles={"user"})
ADMIN = Principal(id="root", roles={"admin", "user"})

Conn = psycopg.Connection[tuple[Any, ...]]


def _app_url(dsn: str, schema: str, role: str = "verity_app") -> str:
    parts = urlsplit(dsn)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{role}@{host}" + (f":{parts.port}" if parts.port else "")
    query = "options=" + quote(f"-csearch_path={schema}")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


@pytest.fixture(scope="module")
def postgres_dsn(postgres_dsn: str) -> Iterator[str]:
    """This module's own throwaway database (created from ``template0``, dropped after).

    The example schema changes database-wide settings (it revokes TEMPORARY from PUBLIC),
    so it never runs in the shared test database: a crash leaves at most an unused
    database behind, never a changed one. ``pg_schema`` creates its schemas in here."""
    name = f"verity_rls_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_dsn, autocommit=True) as owner:
        owner.execute(sql.SQL("create database {} template template0").format(
            sql.Identifier(name)))  # fmt: skip
    try:
        yield urlunsplit(urlsplit(postgres_dsn)._replace(path="/" + name))
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as owner:
            owner.execute(sql.SQL("drop database if exists {} with (force)").format(
                sql.Identifier(name)))  # fmt: skip


@pytest.fixture
def app_url(postgres_dsn: str, pg_schema: str) -> str:
    """The example schema installed in ``pg_schema`` (in this module's own database),
    seeded; the app role's URL."""
    with psycopg.connect(postgres_dsn, autocommit=True) as owner:
        owner.execute(sql.SQL("set search_path to {}").format(sql.Identifier(pg_schema)))
        owner.execute(SCHEMA_SQL.read_bytes())
        install_key(owner, KEY)
        owner.execute("alter role verity_app login")
        owner.execute(
            "insert into notes (owner, body) values "
            "('alice', 'a1'), ('alice', 'a2'), ('bob', 'b1'), ('root', 'r1')"
        )
    return _app_url(postgres_dsn, pg_schema)


@pytest.fixture
def app(app_url: str) -> Iterator[Conn]:
    with psycopg.connect(app_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def temp_app_url(app_url: str, postgres_dsn: str, pg_schema: str) -> Iterator[str]:
    """A login role with verity_app's rights plus TEMPORARY: a database where the example
    schema's ``revoke temporary`` was not applied (the helper must still hold)."""
    role = f"{pg_schema}_tmp"
    with psycopg.connect(postgres_dsn, autocommit=True) as owner:
        database = owner.info.dbname
        owner.execute(sql.SQL("create role {} login in role verity_app").format(
            sql.Identifier(role)))  # fmt: skip
        owner.execute(sql.SQL("grant temporary on database {} to {}").format(
            sql.Identifier(database), sql.Identifier(role)))  # fmt: skip
    try:
        yield _app_url(postgres_dsn, pg_schema, role)
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as owner:
            owner.execute(sql.SQL("drop owned by {}").format(sql.Identifier(role)))
            owner.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


def _bodies(conn: Conn, query: str = "select body from notes order by body") -> list[str]:
    return [row[0] for row in conn.execute(query).fetchall()]


def test_users_see_only_their_own_rows(app: Conn) -> None:
    with rls_transaction(app, ALICE, key=KEY) as conn:
        assert _bodies(conn) == ["a1", "a2"]
    with rls_transaction(app, BOB, key=KEY) as conn:
        assert _bodies(conn) == ["b1"]


def test_admins_see_and_change_all_rows(app: Conn) -> None:
    with rls_transaction(app, ADMIN, key=KEY) as conn:
        assert _bodies(conn) == ["a1", "a2", "b1", "r1"]
        assert conn.execute("update notes set body = body || '!' where owner = 'bob'").rowcount == 1


@pytest.mark.parametrize(
    "query",
    [
        "select body from notes where owner <> 'alice' order by body",
        "select body from notes where owner = 'bob' or true order by body",
        "select body from notes n where exists (select 1 from notes m where m.owner = 'bob')",
        "select body from (select * from notes union all select * from notes) u "
        "where owner = 'bob'",
    ],
)
def test_crafted_reads_return_no_foreign_rows(app: Conn, query: str) -> None:
    with rls_transaction(app, ALICE, key=KEY) as conn:
        assert not {"b1", "r1"} & set(_bodies(conn, query))


def test_a_user_cannot_change_or_delete_foreign_rows(app: Conn, postgres_dsn: str) -> None:
    with rls_transaction(app, ALICE, key=KEY) as conn:
        assert conn.execute("update notes set body = 'x' where owner = 'bob'").rowcount == 0
        assert conn.execute("delete from notes where owner <> 'alice'").rowcount == 0
    with rls_transaction(app, ADMIN, key=KEY) as conn:
        assert _bodies(conn, "select body from notes where owner = 'bob'") == ["b1"]


def test_a_user_cannot_give_rows_away_or_write_as_another(app: Conn) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege), rls_transaction(app, ALICE, key=KEY):
        app.execute("update notes set owner = 'bob' where owner = 'alice'")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), rls_transaction(app, ALICE, key=KEY):
        app.execute("insert into notes (owner, body) values ('bob', 'planted')")
    with rls_transaction(app, ALICE, key=KEY) as conn:
        conn.execute("insert into notes (body) values ('a3')")  # owner defaults to the caller
        assert _bodies(conn) == ["a1", "a2", "a3"]


def test_a_missing_identity_sees_nothing_and_writes_nothing(app: Conn) -> None:
    assert _bodies(app) == []
    assert app.execute("update notes set body = 'x'").rowcount == 0
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app.execute("insert into notes (body) values ('orphan')")


def test_set_config_inside_the_transaction_cannot_switch_user(app: Conn) -> None:
    with rls_transaction(app, ALICE, key=KEY) as conn:
        conn.execute("select set_config('verity.user_id', 'bob', true)")
        assert _bodies(conn) == []
    with rls_transaction(app, ALICE, key=KEY) as conn:
        conn.execute("set local verity.roles = '{admin,user}'")
        assert _bodies(conn) == []


def test_set_config_outside_the_helper_is_not_an_identity(app: Conn) -> None:
    app.execute("select set_config('verity.user_id', 'alice', false)")
    app.execute("select set_config('verity.roles', '{admin}', false)")
    app.execute("select set_config('verity.signature', %s, false)", ("00" * 32,))
    assert _bodies(app) == []


def test_a_signature_cannot_be_replayed_in_another_transaction(app: Conn) -> None:
    with rls_transaction(app, ADMIN, key=KEY) as conn:
        captured = conn.execute(
            "select current_setting('verity.user_id'), current_setting('verity.roles'), "
            "current_setting('verity.signature')"
        ).fetchone()
    assert captured is not None
    with app.transaction():
        app.execute(
            "select set_config('verity.user_id', %s, true), set_config('verity.roles', %s, true),"
            " set_config('verity.signature', %s, true)",
            captured,
        )
        assert _bodies(app) == []


def test_a_temporary_table_cannot_stand_in_for_the_key(temp_app_url: str) -> None:
    with psycopg.connect(temp_app_url, autocommit=True) as app:
        _forge_with_a_temporary_key_table(app)


def _forge_with_a_temporary_key_table(app: Conn) -> None:
    attacker_key = b"k" * 32
    inner, outer = key_pads(attacker_key)
    app.execute("create temporary table verity_rls_key (id int, inner_pad bytea, outer_pad bytea)")
    app.execute("insert into verity_rls_key values (1, %s, %s)", (inner, outer))
    with app.transaction():
        roles, txn = app.execute(
            "select '{admin}'::text, pg_backend_pid()::text || '.' || "
            "(extract(epoch from transaction_timestamp()) * 1000000)::bigint::text"
        ).fetchone() or ("", "")
        signature = sign(attacker_key, "mallory", roles, txn)
        app.execute(
            "select set_config('verity.user_id', 'mallory', true), "
            "set_config('verity.roles', %s, true), set_config('verity.signature', %s, true)",
            (roles, signature),
        )
        assert _bodies(app) == []


def test_the_application_cannot_read_the_key(app: Conn) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app.execute("select * from verity_rls_key")


def test_identity_does_not_leak_across_transactions_of_a_pooled_connection(app_url: str) -> None:
    with ConnectionPool(app_url, min_size=1, max_size=1, kwargs={"autocommit": True}) as pool:
        with pool.connection() as conn, rls_transaction(conn, ALICE, key=KEY):
            assert _bodies(conn) == ["a1", "a2"]
        with pool.connection() as conn:
            assert _bodies(conn) == []
            assert conn.execute("select current_setting('verity.user_id', true)").fetchone() in (
                ("",),
                (None,),
            )
        with (
            pytest.raises(ZeroDivisionError),
            pool.connection() as conn,
            rls_transaction(conn, ALICE, key=KEY),
        ):
            _ = 1 / 0
        with pool.connection() as conn:
            assert _bodies(conn) == []


def test_the_helper_refuses_anonymous_and_nested_use(app: Conn, app_url: str) -> None:
    with pytest.raises(RlsIdentityError), rls_transaction(app, Principal.anonymous(), key=KEY):
        pass
    with psycopg.connect(app_url) as conn:  # not autocommit: a select opens a transaction
        conn.execute("select 1")
        with pytest.raises(RlsIdentityError), rls_transaction(conn, ALICE, key=KEY):
            pass
    with pytest.raises(ValueError, match="32 bytes"), rls_transaction(app, ALICE, key=b"short"):
        pass


def test_the_async_helper_sets_the_same_identity(app_url: str) -> None:
    async def read() -> list[str]:
        conn = await psycopg.AsyncConnection.connect(app_url, autocommit=True)
        async with conn, async_rls_transaction(conn, BOB, key=KEY):
            cursor = await conn.execute("select body from notes order by body")
            return [row[0] for row in await cursor.fetchall()]

    assert asyncio.run(read()) == ["b1"]


def test_the_pads_are_rfc2104_hmac() -> None:
    inner, outer = key_pads(KEY)
    message = b"alice\x00{user}\x00123.456"
    expected = hashlib.sha256(outer + hashlib.sha256(inner + message).digest()).hexdigest()
    assert sign(KEY, "alice", "{user}", "123.456") == expected
    assert expected == hmac.new(KEY, message, hashlib.sha256).hexdigest()


def _plant_capturing_view(conn: Conn, schema: str) -> None:
    """What Bob's injected SQL leaves behind: a temporary view named ``notes`` (found
    before the real table: pg_temp comes first) that copies every row it returns into his
    temporary table ``loot``."""
    conn.execute("create temporary table loot (body text)")
    conn.execute(
        "create function pg_temp.grab(b text) returns boolean language sql volatile "
        "as $$ insert into pg_temp.loot values (b) returning true $$"
    )
    conn.execute(
        sql.SQL(
            "create temporary view notes as select n.id, n.body from {}.notes n "
            "where pg_temp.grab(n.body)"
        ).format(sql.Identifier(schema))
    )


def _loot(conn: Conn) -> list[str]:
    row = conn.execute("select to_regclass('pg_temp.loot') is not null").fetchone()
    if row is None or not row[0]:
        return []
    return _bodies(conn, "select body from pg_temp.loot order by body")


def test_a_temporary_view_left_on_a_pooled_connection_cannot_capture_the_next_users_rows(
    temp_app_url: str, pg_schema: str
) -> None:
    with ConnectionPool(temp_app_url, min_size=1, max_size=1, kwargs={"autocommit": True}) as pool:
        with pool.connection() as conn, rls_transaction(conn, BOB, key=KEY):
            _plant_capturing_view(conn, pg_schema)  # Bob's request, with SQL injection
        with pool.connection() as conn, rls_transaction(conn, ALICE, key=KEY):
            # Alice's request: the documented unqualified query, same pooled connection.
            assert _bodies(conn, "select body from notes order by body") == ["a1", "a2"]
            kind = conn.execute("select relpersistence from pg_class where oid = 'notes'::regclass")
            assert kind.fetchone() == ("p",)  # the real table, not Bob's view
        with pool.connection() as conn:  # Bob's next request
            assert _loot(conn) == []


def test_a_pool_reset_wipes_what_injected_sql_left_on_the_connection(
    temp_app_url: str, pg_schema: str
) -> None:
    pool = ConnectionPool(
        temp_app_url, min_size=1, max_size=1, kwargs={"autocommit": True}, reset=reset_connection
    )
    with pool:
        with pool.connection() as conn, rls_transaction(conn, BOB, key=KEY):
            _plant_capturing_view(conn, pg_schema)
            conn.execute("select set_config('search_path', 'pg_temp', false)")
        with pool.connection() as conn:  # nothing is left on the connection
            assert conn.execute("select to_regclass('pg_temp.notes')").fetchone() == (None,)
            assert conn.execute("show search_path").fetchone() == (pg_schema,)


def test_async_pool_reset_wipes_temporary_objects(temp_app_url: str, pg_schema: str) -> None:
    async def run() -> tuple[Any, ...] | None:
        conn = await psycopg.AsyncConnection.connect(temp_app_url)  # not autocommit
        async with conn:
            await conn.execute("create temporary table loot (body text)")
            await conn.commit()
            await async_reset_connection(conn)
            cursor = await conn.execute("select to_regclass('pg_temp.loot')")
            row = await cursor.fetchone()
            assert conn.autocommit is False  # restored
            return row

    assert asyncio.run(run()) == (None,)


def test_the_example_schema_denies_the_application_role_temporary_objects(app: Conn) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app.execute("create temporary view notes as select 1 as id, 'x' as body")


def test_async_helper_discards_a_temporary_view_left_by_the_previous_user(
    temp_app_url: str, pg_schema: str
) -> None:
    async def run() -> tuple[list[str], list[str]]:
        conn = await psycopg.AsyncConnection.connect(temp_app_url, autocommit=True)
        async with conn:
            async with async_rls_transaction(conn, BOB, key=KEY):  # Bob's injected SQL
                await conn.execute("create temporary table loot (body text)")
                await conn.execute(
                    "create function pg_temp.grab(b text) returns boolean language sql "
                    "volatile as $$ insert into pg_temp.loot values (b) returning true $$"
                )
                await conn.execute(
                    sql.SQL(
                        "create temporary view notes as select n.id, n.body from {}.notes n "
                        "where pg_temp.grab(n.body)"
                    ).format(sql.Identifier(pg_schema))
                )
            async with async_rls_transaction(conn, ALICE, key=KEY):  # Alice, same connection
                cursor = await conn.execute("select body from notes order by body")
                seen = [row[0] for row in await cursor.fetchall()]
            cursor = await conn.execute("select to_regclass('pg_temp.loot') is not null")
            row = await cursor.fetchone()
            loot: list[str] = []
            if row is not None and row[0]:
                cursor = await conn.execute("select body from pg_temp.loot")
                loot = [r[0] for r in await cursor.fetchall()]
            return seen, loot

    assert asyncio.run(run()) == (["a1", "a2"], [])
