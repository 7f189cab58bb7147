"""The user stores (one contract, on SQLite and PostgreSQL), password hashing and TOTP."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from verity.identity.idp import (
    PostgresUserStore,
    SqliteUserStore,
    UnknownUserError,
    UserExistsError,
    UserStore,
)
from verity.identity.idp.passwords import hash_password, needs_rehash, verify_password
from verity.identity.idp.postgres_users import migrate_users as migrate_pg_users
from verity.identity.idp.sqlite_users import migrate_users
from verity.identity.idp.totp import code_at, matching_step, new_secret, provisioning_uri
from verity.store import postgres
from verity.store.postgres import idp_schema as pg_idp_schema
from verity.store.sqlite import idp_schema as sqlite_idp_schema
from verity.store.sqlite.db import SqliteDatabase

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], UserStore]]:
    """Opens the same user store again (another process or node) on each call."""
    kind = request.node.callspec.params["store"]
    closers: list[Callable[[], None]] = []

    def opener() -> UserStore:
        if kind == "sqlite":
            sdb = SqliteDatabase(tmp_path / "users.db")
            closers.append(sdb.close)
            return SqliteUserStore(sdb)
        pdb = postgres.PostgresDatabase(
            request.getfixturevalue("postgres_dsn"),
            schema=request.getfixturevalue("pg_schema"),
            max_size=4,
        )
        closers.append(pdb.close)
        return PostgresUserStore(pdb)

    yield opener
    for close in closers:
        close()


@pytest.fixture(params=BACKENDS)
def store(open_store: Callable[[], UserStore]) -> UserStore:
    return open_store()


def test_add_get_and_email_is_case_insensitive_and_unique(store: UserStore) -> None:
    user = store.add(
        " Ada@Example.COM ", password_hash="h", groups=("eng", "eng"), roles=("admin",), now=10.0
    )
    assert user.email == "ada@example.com"
    assert user.groups == ("eng",)
    assert store.get(user.id) == user
    assert store.by_email("ADA@example.com") == user
    with pytest.raises(UserExistsError):
        store.add("ada@EXAMPLE.com", password_hash="h")
    assert [u.email for u in store.list()] == ["ada@example.com"]


def test_invalid_email_and_names_refused(store: UserStore) -> None:
    with pytest.raises(ValueError, match="e-mail"):
        store.add("not-an-address", password_hash="h")
    with pytest.raises(ValueError, match="role"):
        store.add("x@example.com", password_hash="h", roles=("bad role; drop",))


def test_secrets_not_in_repr(store: UserStore) -> None:
    user = store.add("r@example.com", password_hash="$argon2id$secret", totp_secret="TOTPSECRET")
    assert "argon2id" not in repr(user)
    assert "TOTPSECRET" not in repr(user)


def test_disable_enable_password_and_unknown_user(store: UserStore) -> None:
    user = store.add("d@example.com", password_hash="h")
    assert store.set_disabled(user.id, True).disabled
    assert not store.set_disabled(user.id, False).disabled
    assert store.set_password(user.id, "h2").password_hash == "h2"
    with pytest.raises(UnknownUserError):
        store.set_disabled("nope", True)


def test_totp_step_is_used_at_most_once_and_reset_with_secret(store: UserStore) -> None:
    user = store.add("t@example.com", password_hash="h", totp_secret=new_secret())
    assert store.use_totp_step(user.id, 100)
    assert not store.use_totp_step(user.id, 100)
    assert not store.use_totp_step(user.id, 99)
    assert store.use_totp_step(user.id, 101)
    reset = store.set_totp(user.id, None)
    assert reset.totp_secret is None
    assert reset.totp_last_step == 0


def test_sqlite_migration_is_idempotent(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "m.db")
    try:
        assert migrate_users(db) == [1, 2]
        assert migrate_users(db) == []
        assert sqlite_idp_schema.status(db).ok
        assert sqlite_idp_schema.status(db).pending == ()
    finally:
        db.close()


def test_postgres_migration_is_idempotent_and_separate_from_the_store_track(
    postgres_dsn: str, pg_schema: str
) -> None:
    db = postgres.PostgresDatabase(postgres_dsn, schema=pg_schema, max_size=2)
    try:
        before = pg_idp_schema.status(db)
        assert [m.version for m in before.pending] == [1, 2]
        assert migrate_pg_users(db) == [1, 2]
        assert migrate_pg_users(db) == []
        after = pg_idp_schema.status(db)
        assert (after.ok, after.pending) == (True, ())
        assert [(m.version, m.name) for m in after.applied] == [
            (1, "idp users"),
            (2, "idp flow state"),
        ]
        assert postgres.status(db).applied == ()  # a track of its own, beside the store's
    finally:
        db.close()


def test_both_idp_tracks_ship_the_same_numbered_migrations() -> None:
    assert [(m.version, m.name) for m in pg_idp_schema.MIGRATIONS] == [
        (m.version, m.name) for m in sqlite_idp_schema.MIGRATIONS
    ]


def test_postgres_email_uniqueness_is_a_database_constraint(
    postgres_dsn: str, pg_schema: str
) -> None:
    db = postgres.PostgresDatabase(postgres_dsn, schema=pg_schema, max_size=2)
    try:
        PostgresUserStore(db).add("ada@example.com", password_hash="h")
        with db.connection() as conn, pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(  # a writer that bypasses normalisation is still refused
                "insert into verity_idp_users (id, email, password_hash, created, updated) "
                "values ('x', 'ADA@example.com', 'h', 0, 0)"
            )
    finally:
        db.close()


def test_concurrent_adds_of_one_address_create_one_user(
    store: UserStore, open_store: Callable[[], UserStore]
) -> None:
    nodes = [store, open_store()]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def add(node: UserStore, email: str) -> None:
        barrier.wait(5)
        try:
            node.add(email, password_hash="h")
            outcomes.append("added")
        except UserExistsError:
            outcomes.append("exists")

    threads = [
        threading.Thread(target=add, args=(node, email))
        for node, email in zip(nodes, ["race@example.com", "RACE@example.com"], strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(outcomes) == ["added", "exists"]
    assert [u.email for u in store.list()] == ["race@example.com"]


def test_totp_step_race_between_two_nodes_accepts_it_once(
    store: UserStore, open_store: Callable[[], UserStore]
) -> None:
    nodes = [store, open_store()]
    user = store.add("twice@example.com", password_hash="h", totp_secret=new_secret())
    rounds, results = 20, [[False, False] for _ in range(20)]
    barrier = threading.Barrier(2)

    def use(index: int) -> None:
        for step in range(1, rounds + 1):
            barrier.wait(5)  # both nodes present the same step at the same moment
            results[step - 1][index] = nodes[index].use_totp_step(user.id, 1000 + step)

    threads = [threading.Thread(target=use, args=(index,)) for index in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert all(sum(pair) == 1 for pair in results), results
    final = store.get(user.id)
    assert final is not None
    assert final.totp_last_step == 1000 + rounds


def test_argon2id_with_owasp_parameters() -> None:
    hashed = hash_password("a long enough password")
    assert hashed.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert verify_password(hashed, "a long enough password")
    assert not verify_password(hashed, "a long enough passwore")
    assert not verify_password("garbage", "a long enough password")
    assert not needs_rehash(hashed)
    with pytest.raises(ValueError, match="at least"):
        hash_password("short")


def test_totp_window_and_format() -> None:
    secret = new_secret()
    now = 1_800_000_000.0
    assert matching_step(secret, code_at(secret, at=now), now=now) == int(now // 30)
    assert matching_step(secret, code_at(secret, at=now - 30), now=now) == int(now // 30) - 1
    assert matching_step(secret, "12345", now=now) is None
    assert matching_step(secret, "abcdef", now=now) is None
    assert provisioning_uri(secret, email="a@example.com").startswith("otpauth://totp/")
