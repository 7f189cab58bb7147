"""``verity users``: passwords never as arguments, secrets printed once, JSON listing; on a
SQLite file and on PostgreSQL (a schema chosen through the URL, as an operator would)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest
from typer.testing import CliRunner

from verity.cli.users import app
from verity.identity.idp import User, open_user_store, verify_password

PASSWORD = "a sufficiently long password"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'verity.db'}"
    return _pg_url(request.getfixturevalue("postgres_dsn"), request.getfixturevalue("pg_schema"))


def _pg_url(dsn: str, schema: str) -> str:
    return f"{dsn}?options={quote(f'-csearch_path={schema}')}"


def run(*args: str, input: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), input=input)
    return result.exit_code, result.output


def _user(url: str, email: str) -> User:
    with open_user_store(url) as store:
        user = store.by_email(email)
    assert user is not None
    return user


def test_add_with_stdin_password_and_list_json(url: str) -> None:
    code, out = run(
        "add", "ada@example.com", "--name", "Ada", "--group", "eng", "--role", "admin",
        "--password-stdin", "--url", url, input=PASSWORD + "\n",
    )  # fmt: skip
    assert code == 0, out
    assert PASSWORD not in out
    user = _user(url, "ada@example.com")
    assert verify_password(user.password_hash, PASSWORD)
    code, out = run("list", "--json", "--url", url)
    assert code == 0
    users = json.loads(out)["users"]
    assert users[0]["email"] == "ada@example.com"
    assert users[0]["roles"] == ["admin"]
    assert "password_hash" not in users[0]
    assert "argon2" not in out


def test_add_with_hidden_prompt(url: str) -> None:
    code, out = run("add", "p@example.com", "--url", url, input=f"{PASSWORD}\n{PASSWORD}\n")
    assert code == 0, out
    assert PASSWORD not in out


def test_password_is_never_an_argument(url: str) -> None:
    code, _ = run("add", "x@example.com", "--password", PASSWORD, "--url", url)
    assert code == 2


def test_add_mfa_prints_otpauth_uri_once(url: str) -> None:
    code, out = run("add", "m@example.com", "--mfa", "--password-stdin", "--url", url,
                    input=PASSWORD)  # fmt: skip
    assert code == 0
    assert out.count("otpauth://totp/") == 1
    _, listing = run("list", "--url", url)
    assert "otpauth" not in listing
    assert "mfa" in listing


def test_disable_enable_reset_mfa_set_password(url: str) -> None:
    run("add", "u@example.com", "--mfa", "--password-stdin", "--url", url, input=PASSWORD)
    assert run("disable", "u@example.com", "--url", url)[0] == 0
    assert _user(url, "u@example.com").disabled
    assert run("enable", "u@example.com", "--url", url)[0] == 0
    assert not _user(url, "u@example.com").disabled
    assert run("reset-mfa", "u@example.com", "--url", url)[0] == 0
    assert not _user(url, "u@example.com").mfa
    new = "another long password!"
    assert run("set-password", "u@example.com", "--password-stdin", "--url", url,
               input=new)[0] == 0  # fmt: skip
    assert verify_password(_user(url, "u@example.com").password_hash, new)


def test_errors_exit_1_without_secrets(url: str) -> None:
    code, out = run("add", "w@example.com", "--password-stdin", "--url", url, input="short")
    assert code == 1
    assert "at least" in out
    run("add", "dup@example.com", "--password-stdin", "--url", url, input=PASSWORD)
    code, out = run("add", "dup@example.com", "--password-stdin", "--url", url, input=PASSWORD)
    assert code == 1
    assert "exists" in out
    assert run("disable", "ghost@example.com", "--url", url)[0] == 1


def test_postgres_users_are_in_the_schema_of_the_url(postgres_dsn: str, pg_schema: str) -> None:
    url = _pg_url(postgres_dsn, pg_schema)
    assert run("add", "pg@example.com", "--password-stdin", "--url", url, input=PASSWORD)[0] == 0
    import psycopg

    with psycopg.connect(postgres_dsn) as conn:
        row = conn.execute(
            f'select email from "{pg_schema}".verity_idp_users'  # noqa: S608 - test schema
        ).fetchone()
    assert row == ("pg@example.com",)
    code, out = run("list", "--url", url)
    assert code == 0
    assert "pg@example.com" in out


def test_unreachable_postgres_exits_1_without_the_password(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, out = run("list", "--url", f"postgresql://verity:s3cret-pw@127.0.0.1:{port}/x")
    assert code == 1
    assert "s3cret-pw" not in out
