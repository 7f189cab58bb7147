"""Binding keys to exactly one algorithm, and selecting a key for a token."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from verity.identity import (
    AlgorithmNotAllowedError,
    KeyBindingError,
    KeySet,
    UnknownKeyError,
    bind_jwk,
    key_from_pem,
    key_from_secret,
    keyset_from_jwks,
)

from .conftest import SigningKey


def _without_alg(jwk: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in jwk.items() if k != "alg"}


def test_jwk_alg_is_used(rsa_key: SigningKey) -> None:
    assert bind_jwk(rsa_key.jwk, ["RS256", "PS256"]).algorithm == "RS256"


def test_alg_is_inferred_only_when_unambiguous(rsa_key: SigningKey, ec_key: SigningKey) -> None:
    assert bind_jwk(_without_alg(rsa_key.jwk), ["RS256", "ES256"]).algorithm == "RS256"
    assert bind_jwk(_without_alg(ec_key.jwk), ["RS256", "ES256"]).algorithm == "ES256"
    with pytest.raises(KeyBindingError, match="ambiguous"):
        bind_jwk(_without_alg(rsa_key.jwk), ["RS256", "PS256"])
    with pytest.raises(KeyBindingError, match="not usable"):
        bind_jwk(_without_alg(ec_key.jwk), ["RS256"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"alg": "PS512"}, "not allowed"),
        ({"alg": "ES256"}, "cannot be used"),
        ({"use": "enc"}, "'use'"),
        ({"key_ops": ["encrypt"]}, "key_ops"),
        ({"d": "AAAA"}, "private"),
        ({"kid": 5}, "kid"),
        ({"kid": "k" * 300}, "kid"),
        ({"n": "AQAB"}, "Unable to construct"),
        ({"kty": "RSA", "n": "x", "e": "AQAB", "alg": "RS256"}, "Unable to construct"),
    ],
)
def test_unusable_jwks_are_refused(
    rsa_key: SigningKey, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(KeyBindingError, match=message):
        bind_jwk({**rsa_key.jwk, **change}, ["RS256", "ES256"])


def test_symmetric_keys_never_come_from_a_jwks() -> None:
    with pytest.raises(KeyBindingError, match="secret"):
        bind_jwk({"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"}, ["HS256"])


def test_curve_must_match_algorithm() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    jwk = SigningKey(p384, "ES384", "p384").jwk
    with pytest.raises(KeyBindingError, match="cannot be used"):
        bind_jwk({**jwk, "alg": "ES256"}, ["ES256", "ES384"])
    assert bind_jwk(jwk, ["ES384"]).algorithm == "ES384"


def test_weak_rsa_keys_are_refused() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - on purpose
    pem = weak.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(KeyBindingError, match="1024 bits"):
        key_from_pem(pem, ["RS256"])


def test_jwks_skips_bad_and_duplicate_keys(
    rsa_key: SigningKey, ec_key: SigningKey, ed_key: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    duplicate = {**ec_key.jwk, "kid": "rsa-1"}  # which one would "rsa-1" mean?
    junk: list[Any] = [
        {"kty": "oct", "k": "eA"},
        "junk",
        {"kty": "?"},
        {**rsa_key.jwk, "alg": "HS256"},
    ]
    with caplog.at_level(logging.WARNING, logger="verity.identity"):
        keys = keyset_from_jwks(
            {"keys": [rsa_key.jwk, duplicate, *junk, ed_key.jwk]}, ["RS256", "ES256", "EdDSA"]
        )
    assert keys.kids == {"ed-1"}
    assert "duplicated kid" in caplog.text


def test_empty_or_invalid_jwks_is_an_error(rsa_key: SigningKey) -> None:
    with pytest.raises(KeyBindingError, match="no usable key"):
        keyset_from_jwks({"keys": []}, ["RS256"])
    with pytest.raises(KeyBindingError, match="not a JWK Set"):
        keyset_from_jwks({"key": [rsa_key.jwk]}, ["RS256"])


def test_selection_without_kid(rsa_key: SigningKey, ec_key: SigningKey) -> None:
    keys = keyset_from_jwks({"keys": [rsa_key.jwk, ec_key.jwk]}, ["RS256", "ES256"])
    assert keys.select(None, "ES256", None).kid == "ec-1"
    two_rsa = keyset_from_jwks({"keys": [rsa_key.jwk, {**rsa_key.jwk, "kid": "rsa-2"}]}, ["RS256"])
    with pytest.raises(UnknownKeyError, match="2 candidates"):
        two_rsa.select(None, "RS256", None)


def test_kidless_configured_key_matches_any_kid(rsa_key: SigningKey) -> None:
    pem = rsa_key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    keys = KeySet([key_from_pem(pem, ["RS256"])])
    assert keys.select("whatever", "RS256", None).algorithm == "RS256"
    with pytest.raises(UnknownKeyError):
        keys.select("whatever", "PS256", None)


def test_known_kid_with_other_alg_is_refused(rsa_key: SigningKey) -> None:
    keys = keyset_from_jwks({"keys": [rsa_key.jwk]}, ["RS256"])
    with pytest.raises(AlgorithmNotAllowedError):
        keys.select("rsa-1", "PS256", None)


def test_duplicate_kids_in_a_keyset_are_an_error(rsa_key: SigningKey) -> None:
    key = bind_jwk(rsa_key.jwk, ["RS256"])
    with pytest.raises(KeyBindingError, match="share kid"):
        KeySet([key, key])


def test_hmac_secret_binding() -> None:
    assert key_from_secret(b"k" * 32, "HS256").algorithm == "HS256"
    with pytest.raises(KeyBindingError, match="too short"):
        key_from_secret(b"k" * 16, "HS256")
    with pytest.raises(KeyBindingError, match="not an HMAC"):
        key_from_secret(b"k" * 32, "RS256")


def test_key_repr_shows_no_key_material(rsa_key: SigningKey) -> None:
    secret = key_from_secret(b"topsecret" * 4, "HS256")
    assert "topsecret" not in repr(secret)
    assert "rsa-1" in repr(keyset_from_jwks({"keys": [rsa_key.jwk]}, ["RS256"]))
