"""Regression tests for JWT claim attacks (RFC 7519 4.1, RFC 8725 3.8/3.9), one per class:
expired, not yet valid, issued in the future, wrong issuer/audience, missing or
ill-typed claims, never-expiring ``exp``, duplicate claims (parser differentials)."""

from __future__ import annotations

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
