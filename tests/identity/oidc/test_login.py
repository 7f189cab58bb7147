"""The authorization-code flow against the fake IdP: success and every rejection class."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from verity.identity.dev import generate_private_key

from .conftest import RP, make_rp, provider_config


def test_login_creates_a_session_with_mapped_claims(rp: RP) -> None:
    done = rp.login("/app?x=1")
    assert done.status_code == 302
    assert done.headers["location"] == "/app?x=1"
    principal = rp.principal()
    assert principal is not None
    assert principal.id == "alice"
    assert principal.email == "alice@example.com"
    assert principal.groups == {"engineers"}
    assert principal.roles == {"admin"}  # realm_access.roles, configured per provider
    assert principal.auth_methods == {"pwd", "otp"}
    assert principal.mfa is False  # only "mfa" counts as MFA by default
    assert principal.auth_time is not None
    assert principal.claims["sid"] == "idp-session-1"
    assert "nonce" not in principal.claims
    page = rp.client.get("/app")
    assert page.json() == {"id": "alice", "groups": ["engineers"], "roles": ["admin"], "mfa": False}


def test_unauthenticated_browser_is_sent_to_login_with_rd(rp: RP) -> None:
    answer = rp.client.get("/private/page?q=1")
    assert answer.status_code == 302
    location = urlsplit(answer.headers["location"])
    assert location.path == "/verity/login"
    assert parse_qs(location.query)["rd"] == [f"{rp.url}/private/page?q=1"]


def test_authorization_request_uses_pkce_s256_state_and_nonce(rp: RP) -> None:
    start = rp.start()
    query = parse_qs(urlsplit(start.headers["location"]).query)
    assert query["response_type"] == ["code"]
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) == 43
    assert len(query["state"][0]) >= 43
    assert len(query["nonce"][0]) >= 43
    assert query["scope"] == ["openid email profile"]
    assert query["redirect_uri"] == [f"{rp.url}/verity/callback"]


def test_pkce_verifier_sent_matches_the_challenge(rp: RP) -> None:
    rp.login()
    exchange = rp.idp.token_requests[-1]
    assert exchange["grant_type"] == "authorization_code"
    assert 43 <= len(exchange["code_verifier"]) <= 128
    assert rp.idp.token_errors == []  # the IdP checked S256(verifier) == challenge


def test_pkce_code_from_another_login_is_rejected(rp: RP) -> None:
    """A code issued for one login (one challenge) cannot finish another (other verifier)."""
    victim = httpx.Client(base_url=rp.url)
    callback = rp.authorize(victim.get("/verity/login", params={"rd": "/"}))
    code = parse_qs(urlsplit(callback).query)["code"][0]
    own = rp.authorize(rp.start())
    state = parse_qs(urlsplit(own).query)["state"][0]
    answer = rp.client.get("/verity/callback", params={"code": code, "state": state})
    assert answer.status_code == 502
    assert rp.idp.token_errors == ["invalid_grant"]
    assert rp.principal() is None


def test_state_mismatch_is_rejected(rp: RP) -> None:
    callback = rp.authorize(rp.start())
    parts = urlsplit(callback)
    code = parse_qs(parts.query)["code"][0]
    answer = rp.client.get("/verity/callback", params={"code": code, "state": "forged"})
    assert answer.status_code == 400
    assert "verity_session=" not in answer.headers.get("set-cookie", "")
    assert rp.idp.token_requests == []  # the code was never redeemed
    assert rp.principal() is None


def test_callback_without_login_transaction_is_rejected(rp: RP) -> None:
    callback = rp.authorize(rp.start())
    stranger = httpx.Client(base_url=rp.url)  # login CSRF: the victim's browser has no tx
    answer = stranger.get(callback)
    assert answer.status_code == 400
    assert rp.idp.token_requests == []


def test_code_replay_is_rejected(rp: RP) -> None:
    callback = rp.authorize(rp.start())
    first = rp.client.get(callback)
    assert first.status_code == 302
    cookies = dict(rp.client.cookies)
    replay = httpx.Client(base_url=rp.url, cookies=cookies).get(callback)
    assert replay.status_code == 400  # the login transaction is single use
    assert len(rp.idp.token_requests) == 1


def test_nonce_mismatch_is_rejected(rp: RP) -> None:
    rp.idp.id_overrides = {"nonce": "another-login"}
    answer = rp.login()
    assert answer.status_code == 400
    assert rp.principal() is None


def test_nonce_missing_is_rejected(rp: RP) -> None:
    rp.idp.id_overrides = {"nonce": None}
    assert rp.login().status_code == 400
    assert rp.principal() is None


def test_id_token_from_another_issuer_is_rejected(rp: RP) -> None:
    rp.idp.id_overrides = {"iss": "https://evil.example"}
    assert rp.login().status_code == 400
    assert rp.principal() is None


def test_id_token_for_another_audience_is_rejected(rp: RP) -> None:
    rp.idp.id_overrides = {"aud": "some-other-client"}
    assert rp.login().status_code == 400
    assert rp.principal() is None


def test_id_token_with_foreign_azp_is_rejected(rp: RP) -> None:
    rp.idp.id_overrides = {"aud": ["verity-rp", "other"], "azp": "other"}
    assert rp.login().status_code == 400


def test_expired_id_token_is_rejected(rp: RP) -> None:
    rp.idp.id_ttl = -120  # expired beyond the 30 s leeway
    assert rp.login().status_code == 400
    assert rp.principal() is None


def test_at_hash_mismatch_is_rejected(rp: RP) -> None:
    rp.idp.id_overrides = {"at_hash": "AAAAAAAAAAAAAAAAAAAAAA"}
    assert rp.login().status_code == 400


def test_id_token_signed_by_another_key_is_rejected(
    rp: RP, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = rp.idp.sign
    rogue = generate_private_key("ES256")
    monkeypatch.setattr(
        rp.idp, "sign", lambda claims, typ="JWT", key=None: original(claims, typ, rogue)
    )
    assert rp.login().status_code == 400


def test_provider_error_answer_ends_the_login(rp: RP) -> None:
    callback = rp.authorize(rp.start())
    state = parse_qs(urlsplit(callback).query)["state"][0]
    answer = rp.client.get("/verity/callback", params={"error": "access_denied", "state": state})
    assert answer.status_code == 502
    assert rp.client.get(callback).status_code == 400  # transaction used up


def test_unknown_provider_is_404(rp: RP) -> None:
    assert rp.start(provider="nope").status_code == 404


def test_several_providers_get_a_chooser_page(idp: Any, stores: Any) -> None:
    second = provider_config(idp, name="backup", display_name="<Backup IdP>")
    with make_rp(idp, stores, providers=(provider_config(idp), second)) as rp:
        page = rp.start(rd="/x")
        assert page.status_code == 200
        assert "provider=fake" in page.text
        assert "provider=backup" in page.text
        assert "&lt;Backup IdP&gt;" in page.text  # escaped
        done = rp.client.get(rp.authorize(rp.start(rd="/x", provider="backup")))
        assert done.headers["location"] == "/x"
        principal = rp.principal()
        assert principal is not None
        assert principal.claims["iss"] == idp.issuer
