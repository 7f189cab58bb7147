"""``build_signin``: the embedded IdP on the configured store (SQLite or PostgreSQL), its
users and login state in that database, and an issuer without a path still refused."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from verity.cli.signin import build_signin
from verity.config import VerityConfig, parse_config
from verity.errors import ConfigError
from verity.identity.idp import hash_password, open_user_store
from verity.store.factory import open_stores
from verity.store.sqlite.db import SqliteDatabase

from .conftest import PASSWORD, REDIRECT, pkce_pair

ISSUER = "http://127.0.0.1:8080/idp"


def _config(url: str, issuer: str = ISSUER) -> VerityConfig:
    return parse_config(
        {
            "store": {"url": url},
            "identity": {
                "idp": {
                    "issuer": issuer,
                    "clients": [
                        {"client_id": "cli", "redirect_uris": [REDIRECT]},
                    ],
                }
            },
        }
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str | None]]:
    """A store URL and the schema to pass to ``open_stores``/``build_signin``."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'verity.db'}", None
    else:
        yield request.getfixturevalue("postgres_dsn"), request.getfixturevalue("pg_schema")


def _user_url(url: str, schema: str | None) -> str:
    return url if schema is None else f"{url}?options={quote(f'-csearch_path={schema}')}"


def test_idp_runs_on_the_configured_store_and_keeps_its_state_there(
    store_url: tuple[str, str | None], request: pytest.FixtureRequest
) -> None:
    url, schema = store_url
    with open_user_store(_user_url(url, schema)) as users:
        users.add("ada@example.com", password_hash=hash_password(PASSWORD))
    config = _config(url)
    with open_stores(config.store, schema=schema) as stores:
        signin = build_signin(config, stores, schema=schema)
        try:
            assert [prefix for prefix, _ in signin.mounts] == ["/idp"]
            client = TestClient(signin.mounts[0][1], base_url="http://127.0.0.1:8080")
            _, challenge = pkce_pair()
            page = client.get(
                "/idp/authorize",
                params={"response_type": "code", "client_id": "cli", "redirect_uri": REDIRECT,
                        "scope": "openid", "code_challenge": challenge,
                        "code_challenge_method": "S256"},
            )  # fmt: skip
            assert page.status_code == 200, page.text
            assert _rows(url, schema, request, "verity_idp_transactions") == 1
            fields = dict(re.findall(r'name="(tx|csrf)" value="([^"]*)"', page.text))
            form = {**fields, "email": "ada@example.com", "password": PASSWORD}
            done = client.post("/idp/login", data=form, follow_redirects=False)
            assert done.status_code == 303, done.text
            assert _rows(url, schema, request, "verity_idp_codes") == 1
        finally:
            signin.close()


def _rows(url: str, schema: str | None, request: pytest.FixtureRequest, table: str) -> Any:
    sql = f"select count(*) from {table}"  # noqa: S608 - constant table names
    if schema is None:
        db = SqliteDatabase(url.removeprefix("sqlite:///"))
        try:
            row = db.query_one(sql)
        finally:
            db.close()
    else:
        import psycopg

        with psycopg.connect(request.getfixturevalue("postgres_dsn")) as conn:
            conn.execute(f'set search_path to "{schema}"')
            row = conn.execute(sql.encode()).fetchone()
    assert row is not None
    return row[0]


def test_issuer_without_a_path_is_refused(tmp_path: Path) -> None:
    config = _config(f"sqlite:///{tmp_path / 'v.db'}", issuer="http://127.0.0.1:8080")
    with open_stores(config.store) as stores, pytest.raises(ConfigError, match="path"):
        build_signin(config, stores)


@pytest.mark.parametrize(
    ("scopes", "warned"),
    [(["openid", "email", "profile"], True), (["openid", "groups", "roles"], False)],
)
def test_login_through_the_embedded_idp_without_groups_and_roles_scopes_is_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, scopes: list[str], warned: bool
) -> None:
    raw = _config(f"sqlite:///{tmp_path / 'v.db'}").model_dump(mode="json")
    raw["login"] = {"providers": [{"name": "local", "issuer": ISSUER, "client_id": "cli",
                                   "scopes": scopes}]}  # fmt: skip
    raw["identity"]["idp"]["clients"] = [{"client_id": "cli", "redirect_uris": [REDIRECT]}]
    config = parse_config(raw)
    with open_stores(config.store) as stores, caplog.at_level("WARNING"):
        build_signin(config, stores).close()
    assert ("does not request the embedded IdP's scopes" in caplog.text) is warned
