"""Regression tests for JWT claim attacks (RFC 7519 4.1, RFC 8725 3.8/3.9), one per class:
expired, not yet valid, issued in the future, wrong issuer/audience, missing or
ill-typed claims, never-expiring ``exp``, duplicate claims (parser differentials)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from verity.identity import (
    InvalidAudienceError,
    InvalidClaimError,
    InvalidIssuerError,
    KeySet,
    MissingClaimError,
    TokenExpiredError,
    TokenIssuedInFutureError,
    TokenMalformedError,
    TokenNotYetValidError,
    TokenVerifier,
)

from .conftest import (
    AUDIENCE,
    NOW,
    Clock,
    SigningKey,
    b64,
    b64json,
    claims,
    make_config,
    rejects,
    sign,
    signer_for,
)


def test_expired_token_is_rejected(verifier: TokenVerifier, rsa_key: SigningKey) -> None:
    exc = rejects(verifier, sign(rsa_key, claims(exp=int(NOW) - 31)), TokenExpiredError)
    assert exc.public_message == "The access token has expired."
    verifier.verify(sign(rsa_key, claims(exp=int(NOW) - 29)))  # within the 30 s leeway


def test_nbf_in_future_is_rejected(verifier: TokenVerifier, rsa_key: SigningKey) -> None:
    rejects(verifier, sign(rsa_key, claims(nbf=int(NOW) + 31)), TokenNotYetValidError)
    verifier.verify(sign(rsa_key, claims(nbf=int(NOW) + 29)))


def test_iat_in_future_beyond_leeway_is_rejected(
    verifier: TokenVerifier, rsa_key: SigningKey
) -> None:
    rejects(verifier, sign(rsa_key, claims(iat=int(NOW) + 31)), TokenIssuedInFutureError)
    verifier.verify(sign(rsa_key, claims(iat=int(NOW) + 29)))


def test_wrong_issuer_is_rejected(verifier: TokenVerifier, rsa_key: SigningKey) -> None:
    for issuer in ("https://evil.example", "https://idp.example/", "HTTPS://IDP.EXAMPLE", 7):
        rejects(verifier, sign(rsa_key, claims(iss=issuer)), InvalidIssuerError)


def test_wrong_audience_is_rejected(verifier: TokenVerifier, rsa_key: SigningKey) -> None:
    rejects(verifier, sign(rsa_key, claims(aud="api://other")), InvalidAudienceError)
    rejects(verifier, sign(rsa_key, claims(aud=["a", "b"])), InvalidAudienceError)
    rejects(verifier, sign(rsa_key, claims(aud=[])), InvalidClaimError)
    rejects(verifier, sign(rsa_key, claims(aud=[AUDIENCE, 3])), InvalidClaimError)
    assert verifier.verify(sign(rsa_key, claims(aud=["x", AUDIENCE]))).audience == ("x", AUDIENCE)


@pytest.mark.parametrize("claim", ["exp", "iss", "aud"])
def test_missing_required_claim_is_rejected(
    verifier: TokenVerifier, rsa_key: SigningKey, claim: str
) -> None:
    exc = rejects(verifier, sign(rsa_key, claims(**{claim: None})), MissingClaimError)
    assert isinstance(exc, MissingClaimError)
    assert exc.claim == claim


def test_missing_configured_claim_is_rejected(
    keyset: KeySet, rsa_key: SigningKey, clock: Clock
) -> None:
    verifier = TokenVerifier(make_config(required_claims=("sub", "jti")), keys=keyset, clock=clock)
    rejects(verifier, sign(rsa_key, claims(sub=None)), MissingClaimError)
    rejects(verifier, sign(rsa_key, claims(jti=None)), MissingClaimError)


def _signed_raw(key: SigningKey, body: bytes) -> str:
    data = f"{b64json({'alg': key.alg, 'kid': key.kid})}.{b64(body)}".encode()
    return f"{data.decode()}.{b64(signer_for(key)(data))}"


@pytest.mark.parametrize("exp", ["1800000300", True, [1800000300], {"t": 1}])
def test_non_numeric_exp_is_rejected(
    verifier: TokenVerifier, rsa_key: SigningKey, exp: Any
) -> None:
    rejects(verifier, sign(rsa_key, claims(exp=exp)), InvalidClaimError)


@pytest.mark.parametrize(
    ("literal", "error"),
    [
        (b"1e400", InvalidClaimError),
        (b"Infinity", TokenMalformedError),
        (b"NaN", TokenMalformedError),
    ],
)
def test_never_expiring_exp_is_rejected(
    verifier: TokenVerifier, rsa_key: SigningKey, literal: bytes, error: type[Any]
) -> None:
    """``exp: 1e400`` parses to infinity in Python; Infinity/NaN are not JSON at all."""
    body = b'{"iss":"https://idp.example","aud":"api://verity","exp":' + literal + b"}"
    rejects(verifier, _signed_raw(rsa_key, body), error)


def test_duplicate_claims_are_rejected(verifier: TokenVerifier, rsa_key: SigningKey) -> None:
    """Parsers that keep the first vs. the last duplicate disagree about ``iss``/``sub``."""
    body = (b'{"iss":"https://idp.example","aud":"api://verity","exp":1800000300,'
            b'"sub":"alice","sub":"admin"}')  # fmt: skip
    rejects(verifier, _signed_raw(rsa_key, body), TokenMalformedError)


# --- each time claim exactly at its limit (leeway 30 s, and none) ------------------------


@pytest.mark.parametrize("leeway", [30, 0])
def test_token_is_expired_from_exp_plus_leeway_exactly(
    keyset: KeySet, rsa_key: SigningKey, clock: Clock, leeway: int
) -> None:
    verifier = TokenVerifier(make_config(leeway_seconds=leeway), keys=keyset, clock=clock)
    token = sign(rsa_key, claims(exp=int(NOW) + 100))
    clock.now = NOW + 100 + leeway - 0.001
    assert verifier.verify(token).expires_at == NOW + 100
    verifier.cache.clear()
    clock.now = NOW + 100 + leeway
    rejects(verifier, token, TokenExpiredError)


@pytest.mark.parametrize("leeway", [30, 0])
def test_token_is_valid_from_nbf_minus_leeway_exactly(
    keyset: KeySet, rsa_key: SigningKey, clock: Clock, leeway: int
) -> None:
    verifier = TokenVerifier(make_config(leeway_seconds=leeway), keys=keyset, clock=clock)
    early = sign(rsa_key, claims(nbf=int(NOW) + leeway, jti="at-limit"))
    assert verifier.verify(early).not_before == NOW + leeway
    late = sign(rsa_key, claims(nbf=int(NOW) + leeway + 1, jti="past-limit"))
    rejects(verifier, late, TokenNotYetValidError)
    clock.now = NOW + 1
    assert verifier.verify(late).not_before == NOW + leeway + 1


@pytest.mark.parametrize("leeway", [30, 0])
def test_token_may_be_issued_up_to_leeway_in_the_future(
    keyset: KeySet, rsa_key: SigningKey, clock: Clock, leeway: int
) -> None:
    verifier = TokenVerifier(make_config(leeway_seconds=leeway), keys=keyset, clock=clock)
    at_limit = sign(rsa_key, claims(iat=int(NOW) + leeway, jti="at-limit"))
    assert verifier.verify(at_limit).issued_at == NOW + leeway
    beyond = sign(rsa_key, claims(iat=int(NOW) + leeway + 1, jti="past-limit"))
    rejects(verifier, beyond, TokenIssuedInFutureError)


def test_verified_claims_carry_their_values(verifier: TokenVerifier, rsa_key: SigningKey) -> None:
    token = sign(rsa_key, claims(nbf=int(NOW) - 5, sub="bob", jti="j-42", aud=AUDIENCE))
    verified = verifier.verify(token)
    assert (verified.subject, verified.jti, verified.audience) == ("bob", "j-42", (AUDIENCE,))
    assert (verified.issued_at, verified.not_before, verified.expires_at) == (
        NOW, NOW - 5, NOW + 300,
    )  # fmt: skip
    bare = verifier.verify(sign(rsa_key, claims(sub=None, jti=None, iat=None)))
    assert (bare.subject, bare.jti, bare.issued_at, bare.not_before) == (None, None, None, None)


def test_exp_null_is_a_missing_exp(verifier: TokenVerifier, rsa_key: SigningKey) -> None:
    body = b'{"iss":"https://idp.example","aud":"api://verity","exp":null}'
    exc = rejects(verifier, _signed_raw(rsa_key, body), MissingClaimError)
    assert isinstance(exc, MissingClaimError)
    assert exc.claim == "exp"


@pytest.mark.parametrize("claim", ["nbf", "iat"])
@pytest.mark.parametrize("value", ["1800000000", True, False, [1], {"t": 1}])
def test_non_numeric_nbf_or_iat_is_rejected(
    verifier: TokenVerifier, rsa_key: SigningKey, claim: str, value: Any
) -> None:
    rejects(verifier, sign(rsa_key, claims(**{claim: value})), InvalidClaimError)


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_infinite_nbf_or_iat_is_rejected(
    verifier: TokenVerifier, rsa_key: SigningKey, claim: str
) -> None:
    body = (
        b'{"iss":"https://idp.example","aud":"api://verity","exp":1800000300,"'
        + claim.encode()
        + b'":-1e400}'
    )
    rejects(verifier, _signed_raw(rsa_key, body), InvalidClaimError)


@pytest.mark.parametrize("claim", ["sub", "jti"])
@pytest.mark.parametrize("value", [7, ["alice"], {"id": "alice"}, True])
def test_non_string_sub_or_jti_is_rejected(
    verifier: TokenVerifier, rsa_key: SigningKey, claim: str, value: Any
) -> None:
    exc = rejects(verifier, sign(rsa_key, claims(**{claim: value})), InvalidClaimError)
    assert claim in exc.detail


@pytest.mark.parametrize("aud", [{"aud": AUDIENCE}, 7, None, True])
def test_audience_of_another_shape_is_rejected(
    verifier: TokenVerifier, rsa_key: SigningKey, aud: Any
) -> None:
    body = b'{"iss":"https://idp.example","exp":1800000300,"aud":' + json.dumps(aud).encode() + b"}"
    rejects(verifier, _signed_raw(rsa_key, body), InvalidClaimError)


def test_issuer_of_another_type_is_rejected(verifier: TokenVerifier, rsa_key: SigningKey) -> None:
    for issuer in (None, ["https://idp.example"], {"iss": "https://idp.example"}):
        body = b'{"aud":"api://verity","exp":1800000300,"iss":' + json.dumps(issuer).encode() + b"}"
        rejects(verifier, _signed_raw(rsa_key, body), InvalidIssuerError)


def test_compiled_claim_rules_cannot_be_changed(verifier: TokenVerifier) -> None:
    """The issuer, audiences and leeway a verifier checks are fixed once compiled."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        verifier.rules.claims.issuer = "https://evil.example"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        verifier.rules.claims.leeway = 10**9  # type: ignore[misc]


def test_invalid_claim_errors_name_the_claim_and_the_problem(
    verifier: TokenVerifier, rsa_key: SigningKey
) -> None:
    exc = rejects(verifier, sign(rsa_key, claims(aud=[AUDIENCE, 3])), InvalidClaimError)
    assert isinstance(exc, InvalidClaimError)
    assert (exc.claim, exc.detail) == ("aud", "claim 'aud' must contain only strings")
    exc = rejects(verifier, sign(rsa_key, claims(aud=[])), InvalidClaimError)
    assert exc.detail == "claim 'aud' must be a string or a non-empty list"
    exc = rejects(verifier, sign(rsa_key, claims(exp="soon")), InvalidClaimError)
    assert exc.detail == "claim 'exp' must be a finite NumericDate"
    exc = rejects(verifier, sign(rsa_key, claims(jti=5)), InvalidClaimError)
    assert exc.detail == "claim 'jti' must be a string"
