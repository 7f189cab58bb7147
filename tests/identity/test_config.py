"""IssuerConfig validation: HMAC rules, key sources, crit names, secrets masked."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from verity.identity import IdentityConfig, IssuerConfig, JwksPolicy, KeyBindingError, TokenVerifier

from .conftest import AUDIENCE, ISSUER, NOW, Clock, claims, make_config

SECRET = "s" * 32


def test_hmac_needs_an_explicit_long_secret() -> None:
    with pytest.raises(ValidationError, match="explicit shared_secret"):
        make_config(algorithms=("HS256",))
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        make_config(algorithms=("HS256",), shared_secret="s" * 31)
    with pytest.raises(ValidationError, match="at least 48 bytes"):
        make_config(algorithms=("HS384",), shared_secret=SECRET)
    with pytest.raises(ValidationError, match="cannot be mixed"):
        make_config(algorithms=("HS256", "HS512"), shared_secret="s" * 64)
    with pytest.raises(ValidationError, match="needs an HS256"):
        make_config(shared_secret=SECRET)
    make_config(algorithms=("HS256",), shared_secret=SECRET)


def test_hmac_tokens_verify_with_the_configured_secret() -> None:
    import jwt

    config = make_config(algorithms=("HS256",), shared_secret=SECRET)
    verifier = TokenVerifier(config, clock=Clock())
    assert verifier.verify(jwt.encode(claims(), SECRET, algorithm="HS256")).algorithm == "HS256"


def test_pem_shaped_secret_is_refused() -> None:
    pem = "-----BEGIN PUBLIC KEY-----\n" + "A" * 64 + "\n-----END PUBLIC KEY-----\n"
    config = make_config(algorithms=("HS256",), shared_secret=pem)
    with pytest.raises(KeyBindingError):
        TokenVerifier(config)


def test_secret_is_masked() -> None:
    config = make_config(algorithms=("HS256",), shared_secret=SECRET)
    assert SECRET not in repr(config)
    assert SECRET not in str(config.model_dump(mode="json"))


def test_one_key_source_at_most(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="at most one"):
        make_config(jwks_uri="https://idp.example/jwks", jwks_file=tmp_path / "k.json")


def test_registered_headers_cannot_be_critical_extensions() -> None:
    for name in ("alg", "kid", "b64", "jku"):
        with pytest.raises(ValidationError, match="critical extensions"):
            make_config(critical_headers={name})


def test_defaults_and_frozen() -> None:
    config = IssuerConfig(issuer=ISSUER, audiences=AUDIENCE)  # type: ignore[arg-type]
    assert config.audiences == (AUDIENCE,)
    assert config.algorithms == ("RS256",)
    assert config.leeway_seconds == 30
    assert config.max_token_bytes == 8192
    assert config.uses_discovery
    assert config.discovery_url == "https://idp.example/.well-known/openid-configuration"
    with pytest.raises(ValidationError):
        config.issuer = "x"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        IssuerConfig(issuer=ISSUER, audiences=[])
    with pytest.raises(ValidationError):
        IssuerConfig(issuer=ISSUER, audiences=[AUDIENCE], algorithms=("none",))  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="Extra inputs"):
        IssuerConfig(issuer=ISSUER, audiences=[AUDIENCE], algorithm="RS256")  # type: ignore[call-arg]


def test_jwks_policy_bounds() -> None:
    with pytest.raises(ValidationError):
        JwksPolicy(min_ttl_seconds=600, default_ttl_seconds=300)
    with pytest.raises(ValidationError):
        JwksPolicy(max_ttl_seconds=10**7)


def test_identity_section_rejects_duplicate_issuers() -> None:
    issuer = {"issuer": ISSUER, "audiences": [AUDIENCE]}
    assert len(IdentityConfig.model_validate({"issuers": [issuer]}).issuers) == 1
    with pytest.raises(ValidationError, match="configured twice"):
        IdentityConfig.model_validate({"issuers": [issuer, issuer]})


def test_jwks_file_source(tmp_path: Path, rsa_key: object) -> None:
    import json

    from .conftest import SigningKey, sign

    assert isinstance(rsa_key, SigningKey)
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [rsa_key.jwk]}))
    verifier = TokenVerifier(make_config(jwks_file=path), clock=Clock(NOW))
    assert verifier.verify(sign(rsa_key)).key_id == "rsa-1"
    assert verifier.jwks_status() is None
    path.write_text("not json")
    with pytest.raises(KeyBindingError):
        TokenVerifier(make_config(jwks_file=path))
