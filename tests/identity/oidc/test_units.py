"""Config validation, cookie signing and headers, the facade."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from verity.identity import oidc
from verity.identity.oidc import CookieSigner, LoginConfig, ProviderConfig
from verity.identity.oidc.cookies import cookie_values, set_cookie
from verity.identity.oidc.idtoken import token_hash_claim
from verity.identity.oidc.provider import pkce_challenge

KEY = b"k" * 32


def provider(**overrides: Any) -> dict[str, Any]:
    return {"name": "corp", "issuer": "https://idp.example", "client_id": "c", **overrides}


def test_facade_all_matches_namespace() -> None:
    public = {name for name in dir(oidc) if not name.startswith("_")}
    modules = {"app", "backchannel", "config", "cookies", "discovery", "errors", "idtoken",
               "provider", "redirects", "refresh", "service", "sessions"}  # fmt: skip
    assert set(oidc.__all__) == public - modules


def test_signer_round_trip_and_purpose_binding() -> None:
    signer = CookieSigner({1: KEY}, current=1)
    signed = signer.sign("session", "abc")
    assert signer.unsign("session", signed) == "abc"
    assert signer.unsign("login", signed) is None


def test_signer_rejects_tampering_and_unknown_versions() -> None:
    signer = CookieSigner({1: KEY}, current=1)
    signed = signer.sign("session", "abc")
    assert signer.unsign("session", signed.replace("abc", "abd")) is None
    assert signer.unsign("session", "2" + signed[1:]) is None
    assert signer.unsign("session", signed + "x") is None
    assert signer.unsign("session", "1.abc") is None
    assert signer.unsign("session", None) is None


def test_signer_key_rotation_keeps_old_cookies() -> None:
    old = CookieSigner({1: KEY}, current=1).sign("session", "abc")
    rotated = CookieSigner({1: KEY, 2: b"n" * 32}, current=2)
    assert rotated.unsign("session", old) == "abc"
    assert rotated.sign("session", "abc").startswith("2.")


def test_signer_refuses_short_keys() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        CookieSigner({1: b"short"}, current=1)


def test_set_cookie_flags() -> None:
    header = set_cookie("verity_session", "v", max_age=60, secure=True)
    assert "HttpOnly" in header
    assert "Secure" in header
    assert "SameSite=Lax" in header
    assert "Max-Age=60" in header
    assert "Path=/" in header
    assert "Secure" not in set_cookie("verity_session", "v", max_age=60, secure=False)


def test_cookie_values_finds_every_copy() -> None:
    values = cookie_values(["a=1; verity_session=x", "verity_session=y"], "verity_session")
    assert values == ["x", "y"]


def test_pkce_challenge_matches_rfc7636_appendix_b() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_at_hash_matches_oidc_example() -> None:
    # OpenID Connect Core A.3 (RS256): access token -> at_hash
    assert token_hash_claim("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y", "RS256") == (
        "77QmUPtjPfzWtF2AnpK9RQ"
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (provider(issuer="http://idp.example"), "https"),
        (provider(scopes=["email"]), "openid"),
        (provider(name="Bad Name"), "lower-case"),
        (provider(extra_authorize_params={"state": "x"}), "cannot be overridden"),
    ],
)
def test_provider_config_validation(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ProviderConfig(**settings)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"providers": [provider(), provider()]}, "used twice"),
        ({"cookie_key": "short"}, "32 bytes"),
        ({"allowed_redirect_hosts": ["https://x.example"]}, "not host names"),
        ({"default_redirect": "//evil"}, "relative path"),
        ({"cookie_name": "__Host-x"}, "cookie_name"),
        ({"public_url": "ftp://x"}, "public_url"),
    ],
)
def test_login_config_validation(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        LoginConfig(**settings)


def test_secrets_are_masked_in_reprs() -> None:
    config = LoginConfig(providers=[provider(client_secret="hunter2-secret")], cookie_key="x" * 40)
    assert "hunter2" not in repr(config)
    assert "x" * 40 not in repr(config)
    assert "hunter2" not in config.model_dump_json()
