"""The SQLite user store, password hashing and TOTP helpers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from verity.identity.idp import SqliteUserStore, UnknownUserError, UserExistsError
from verity.identity.idp.passwords import hash_password, needs_rehash, verify_password
from verity.identity.idp.sqlite_users import migrate_users
from verity.identity.idp.totp import code_at, matching_step, new_secret, provisioning_uri
from verity.store.sqlite.db import SqliteDatabase


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteUserStore]:
    db = SqliteDatabase(tmp_path / "users.db")
    yield SqliteUserStore(db)
    db.close()


def test_add_get_and_email_is_case_insensitive_and_unique(store: SqliteUserStore) -> None:
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


def test_invalid_email_and_names_refused(store: SqliteUserStore) -> None:
    with pytest.raises(ValueError, match="e-mail"):
        store.add("not-an-address", password_hash="h")
    with pytest.raises(ValueError, match="role"):
        store.add("x@example.com", password_hash="h", roles=("bad role; drop",))


def test_secrets_not_in_repr(store: SqliteUserStore) -> None:
    user = store.add("r@example.com", password_hash="$argon2id$secret", totp_secret="TOTPSECRET")
    assert "argon2id" not in repr(user)
    assert "TOTPSECRET" not in repr(user)


def test_disable_enable_password_and_unknown_user(store: SqliteUserStore) -> None:
    user = store.add("d@example.com", password_hash="h")
    assert store.set_disabled(user.id, True).disabled
    assert not store.set_disabled(user.id, False).disabled
    assert store.set_password(user.id, "h2").password_hash == "h2"
    with pytest.raises(UnknownUserError):
        store.set_disabled("nope", True)


def test_totp_step_is_used_at_most_once_and_reset_with_secret(store: SqliteUserStore) -> None:
    user = store.add("t@example.com", password_hash="h", totp_secret=new_secret())
    assert store.use_totp_step(user.id, 100)
    assert not store.use_totp_step(user.id, 100)
    assert not store.use_totp_step(user.id, 99)
    assert store.use_totp_step(user.id, 101)
    reset = store.set_totp(user.id, None)
    assert reset.totp_secret is None
    assert reset.totp_last_step == 0


def test_migration_is_idempotent(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "m.db")
    try:
        assert migrate_users(db) == [1]
        assert migrate_users(db) == []
    finally:
        db.close()


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
