"""``verity revoke session|subject|token|jti|list``: exit codes 0/1/2, what is stored,
and what is never printed (the raw token, the store's password)."""

from __future__ import annotations

import json
import logging
import socket
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner, Result

from tests.identity.conftest import AUDIENCE, ISSUER, SigningKey, b64, b64json, make_config, sign
from tests.identity.test_revocation_forms import twin
from verity.cli.revoke import app, default_seconds, parse_duration
from verity.config import StoreConfig, parse_config
from verity.identity import TokenRevokedError, TokenVerifier, keyset_from_jwks
from verity.identity.core import signing_input_hash
from verity.identity.oidc import LoginConfig
from verity.identity.oidc.cookies import CookieSigner
from verity.identity.oidc.sessions import SessionManager
from verity.identity.revocation_sync import RevocationSync
from verity.model import Principal
from verity.store import RevocationKind, Stores, open_stores, token_hash

RAW_TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2VjcmV0LXNpZ25hdHVyZS1ieXRlcw"
PASSWORD = "s3cret-pw"


def invoke(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=stdin, env={"COLUMNS": "250", **(env or {})})


def dead_port() -> int:
    """A port on 127.0.0.1 where nothing listens (a real refused connection)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def store(tmp_path: Path) -> tuple[str, Stores]:
    url = f"sqlite:///{tmp_path}/verity.db"
    stores = open_stores(StoreConfig(url=url))  # a node's store: migrated
    return url, stores


def test_revoke_subject_stores_it_and_ends_stored_sessions(store: tuple[str, Stores]) -> None:
    url, stores = store
    manager = SessionManager(
        store=stores.sessions, signer=CookieSigner({1: b"k" * 32}, current=1),
        config=LoginConfig(),
    )  # fmt: skip
    alice, _ = manager.create(Principal(id="alice"), {})
    bob, _ = manager.create(Principal(id="bob"), {})
    result = invoke("subject", "alice", "--reason", "laptop [bold]stolen", "--for", "2h",
                    "--url", url)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "revoked subject alice until" in result.stdout
    assert "(2h)" in result.stdout
    assert "laptop [bold]stolen" in result.stdout  # shown as text, not as markup
    assert "1 stored session(s) ended" in result.stdout
    found = stores.revocations.lookup(RevocationKind.SUBJECT, "alice")
    assert found is not None
    assert found.reason == "laptop [bold]stolen"
    assert found.expires - found.revoked_at == pytest.approx(7200, abs=5)
    assert manager.lookup(alice) is None
    assert manager.lookup(bob) is not None
    stores.close()


def test_revoke_token_from_stdin_stores_only_its_hash_and_never_echoes_it(
    store: tuple[str, Stores], caplog: pytest.LogCaptureFixture
) -> None:
    url, stores = store
    caplog.set_level(logging.DEBUG)
    result = invoke("token", "-", "--url", url, "--json", stdin=f"Bearer {RAW_TOKEN}\n")
    assert result.exit_code == 0, result.output
    assert RAW_TOKEN not in result.output
    assert RAW_TOKEN not in caplog.text
    body = json.loads(result.stdout)
    stored = signing_input_hash(RAW_TOKEN)  # SHA-256 of header.payload, not of the token
    assert stored == token_hash(RAW_TOKEN.rsplit(".", 1)[0])
    assert body["revoked"]["kind"] == "token"
    assert body["revoked"]["value"] == stored
    assert body["jti_revoked"] is None  # RAW_TOKEN has no jti
    assert stores.revocations.is_revoked(RevocationKind.TOKEN, stored)
    assert not stores.revocations.is_revoked(RevocationKind.TOKEN, token_hash(RAW_TOKEN))
    assert [r.kind for r in stores.revocations.active()] == [RevocationKind.TOKEN]
    listed = invoke("list", "--url", url)
    assert RAW_TOKEN not in listed.output
    assert stored in listed.stdout
    stores.close()


def _es256_token(**claims: object) -> tuple[str, SigningKey]:
    key = SigningKey(ec.generate_private_key(ec.SECP256R1()), "ES256", "ec-1")
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now - 5, "exp": now + 600}
    return sign(key, {**payload, **claims}), key


def test_a_token_revoked_from_stdin_refuses_its_high_s_twin_on_a_node(
    store: tuple[str, Stores],
) -> None:
    """End to end: ``verity revoke token -`` in one process, a node's verifier synced from
    the same store refuses the token and its (r, n - s) twin, cached or not."""
    url, stores = store
    raw, key = _es256_token()  # no jti: only the TOKEN revocation can refuse it
    verifier = TokenVerifier(
        make_config(algorithms=["ES256"]), keys=keyset_from_jwks({"keys": [key.jwk]}, ("ES256",))
    )
    copy = twin(raw)
    assert verifier.verify(copy).subject == "alice"  # cached before the revocation
    result = invoke("token", "-", "--url", url, stdin=raw + "\n")
    assert result.exit_code == 0, result.output
    assert "also revoked" not in result.stdout
    node = open_stores(StoreConfig(url=url))
    sync = RevocationSync(node.revocations, verifiers=[verifier], poll_seconds=0)
    try:
        assert sync.start() == 1
        for form in (raw, copy):
            with pytest.raises(TokenRevokedError):
                verifier.verify(form)
    finally:
        sync.close()
        node.close()
        stores.close()


def test_a_token_with_a_jti_is_revoked_by_its_jti_as_well(store: tuple[str, Stores]) -> None:
    url, stores = store
    raw, _ = _es256_token(jti="jti-42")
    result = invoke("token", "-", "--url", url, "--json", stdin=raw)
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["revoked"]["value"] == signing_input_hash(raw)
    assert body["jti_revoked"]["kind"] == "jti"
    assert body["jti_revoked"]["value"] == "jti-42"
    assert body["jti_revoked"]["expires"] == body["revoked"]["expires"]
    assert stores.revocations.is_revoked(RevocationKind.TOKEN, signing_input_hash(raw))
    assert stores.revocations.is_revoked(RevocationKind.JTI, "jti-42")
    human = invoke("token", "-", "--url", url, stdin=raw)
    assert human.exit_code == 0, human.output
    assert "also revoked jti jti-42" in human.stdout
    assert "not verified" in human.stdout
    stores.close()


def test_a_jti_that_is_not_a_string_is_not_revoked_and_a_warning_says_so(
    store: tuple[str, Stores],
) -> None:
    url, stores = store
    raw, _ = _es256_token(jti=12345)
    result = invoke("token", "-", "--url", url, stdin=raw)
    assert result.exit_code == 0, result.output
    assert "revoked by its signing input only" in result.stderr
    assert [r.kind for r in stores.revocations.active()] == [RevocationKind.TOKEN]
    stores.close()


def test_the_signing_input_hash_can_be_given_as_hex(store: tuple[str, Stores]) -> None:
    url, stores = store
    raw, _ = _es256_token(jti="j-1")
    value = signing_input_hash(raw)
    result = invoke("token", value, "--url", url)
    assert result.exit_code == 0, result.output
    assert f"revoked token {value}" in result.stdout
    assert [(r.kind, r.value) for r in stores.revocations.active()] == [
        (RevocationKind.TOKEN, value)
    ]  # a hash carries no jti
    stores.close()


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        ("not-a-jwt", "no JWT (header.payload.signature)"),
        ("a.b.c.d.e", "no JWT (header.payload.signature)"),
        (f"{b64json({'alg': 'ES256'})}.{b64(b'not json')}.c2ln", "not base64url-encoded JSON"),
        (f"{b64json({'alg': 'ES256'})}.{b64json([1, 2])}.c2ln", "not a JSON object"),
    ],
)
def test_stdin_that_is_no_jwt_is_a_usage_error(
    store: tuple[str, Stores], stdin: str, message: str
) -> None:
    url, stores = store
    result = invoke("token", "-", "--url", url, stdin=stdin)
    assert result.exit_code == 2
    assert message in result.output
    assert stdin not in result.output
    assert stores.revocations.active() == []
    stores.close()


def test_a_raw_token_as_an_argument_is_refused_and_not_echoed(store: tuple[str, Stores]) -> None:
    url, stores = store
    result = invoke("token", RAW_TOKEN, "--url", url)
    assert result.exit_code == 2
    assert RAW_TOKEN not in result.output
    assert "standard input" in result.output
    assert stores.revocations.active() == []
    empty = invoke("token", "-", "--url", url, stdin="\n")
    assert empty.exit_code == 2
    assert "no single ASCII token" in empty.output
    stores.close()


def test_list_shows_every_kind_as_json(store: tuple[str, Stores]) -> None:
    url, stores = store
    session_id = "ab" * 32
    for args in (("jti", "j-1"), ("session", session_id), ("subject", "carol")):
        assert invoke(*args, "--url", url).exit_code == 0
    result = invoke("list", "--url", url, "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)["revocations"]
    assert {(r["kind"], r["value"]) for r in listed} == {
        ("jti", "j-1"), ("session", session_id), ("subject", "carol"),
    }  # fmt: skip
    assert all(r["expires"] > r["revoked_at"] for r in listed)
    human = invoke("list", "--url", url)
    assert "3 revocation(s) in force" in human.stdout
    stores.close()


def test_empty_list(store: tuple[str, Stores]) -> None:
    url, stores = store
    result = invoke("list", "--url", url)
    assert result.exit_code == 0
    assert "no revocations in force" in result.stdout
    stores.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("bogus", "x"), "No such command"),
        (("subject", "alice", "--for", "1x"), "a duration is like"),
        (("subject", "alice", "--for", "0s"), "more than 0s"),
        (("subject", "alice", "--for", "400d"), "at most 366d"),
        (("session", "not-a-session-id"), "64 lower-case hex digits"),
        (("subject", "alice", "--reason", "x" * 300), "at most 256 characters"),
        (("subject", "alice", "--url", "sqlite:///a.db", "--config", "v.yaml"), "either --url"),
        (("subject", "alice", "--url", "mysql://db/x"), "sqlite:///PATH or postgresql"),
        (("subject",), "Missing argument"),
    ],
)
def test_usage_errors_exit_2(args: tuple[str, ...], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("as_json", [False, True])
def test_an_unreachable_store_exits_1_without_its_password(as_json: bool) -> None:
    url = f"postgresql://verity:{PASSWORD}@127.0.0.1:{dead_port()}/verity"
    result = invoke("subject", "alice", "--url", url, *(["--json"] if as_json else []))
    assert result.exit_code == 1
    assert PASSWORD not in result.output
    assert "unavailable" in result.output
    assert "verity:***@127.0.0.1" in result.output
    listed = invoke("list", "--url", url)
    assert listed.exit_code == 1
    assert PASSWORD not in listed.output


def test_a_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    result = invoke("jti", "j-1", "--url", f"sqlite:///{tmp_path}/typo.db")
    assert result.exit_code == 1
    assert "does not exist" in result.output
    assert not (tmp_path / "typo.db").exists()


def test_the_store_comes_from_the_configuration(store: tuple[str, Stores], tmp_path: Path) -> None:
    _, stores = store
    config = tmp_path / "verity.yaml"  # relative to the file's folder, as for `verity serve`
    config.write_text(
        "store: {url: 'sqlite:///verity.db'}\nlogin: {session_lifetime_seconds: 172800}\n"
    )
    result = invoke("jti", "j-9", "--config", str(config), "--json")
    assert result.exit_code == 0, result.output
    found = stores.revocations.lookup(RevocationKind.JTI, "j-9")
    assert found is not None
    assert found.expires - found.revoked_at == pytest.approx(172800, abs=5)  # the session lifetime
    bad = tmp_path / "bad.yaml"
    bad.write_text("store: {url: 'mysql://x'}\n")
    broken = invoke("jti", "j-9", "--config", str(bad))
    assert broken.exit_code == 1
    assert "store.url" in broken.output
    stores.close()


def test_with_redis_down_the_revocation_is_stored_and_a_warning_printed(
    postgres_dsn: str, pg_schema: str
) -> None:
    url = f"{postgres_dsn}?options={quote(f'-csearch_path={pg_schema}')}"
    redis = f"redis://:{PASSWORD}@127.0.0.1:{dead_port()}/0"
    result = invoke("subject", "dave", "--url", url, "--redis-url", redis)
    assert result.exit_code == 0, result.output
    assert "Redis is unreachable" in result.stderr
    assert PASSWORD not in result.output
    with open_stores(StoreConfig(url=postgres_dsn), schema=pg_schema) as stores:
        assert stores.revocations.is_revoked(RevocationKind.SUBJECT, "dave")


def test_durations_and_the_default_lifetime() -> None:
    assert parse_duration("90s") == 90
    assert parse_duration("1h30m") == 5400
    assert parse_duration("2d") == 172800
    assert parse_duration(" 1W ") == 604800
    for bad in ("", "1", "h", "1.5h", "-1h", "1h 30m"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)
    assert default_seconds(None) == 86400
    assert default_seconds(parse_config({}, source="t")) == 86400
    longer = parse_config({"login": {"session_lifetime_seconds": 3 * 86400}}, source="t")
    assert default_seconds(longer) == 3 * 86400
