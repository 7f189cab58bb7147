"""The identity assertion: minted by the gateway, verified by integrations.assertion."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from verity.gateway import AssertionSigner
from verity.gateway.assertion import TOKEN_TYPE, AssertionFacts
from verity.identity.dev import generate_private_key
from verity.integrations import assertion
from verity.model import Principal

from .conftest import GATEWAY_URL, Issuer, RecordingUpstream, bearer

ALICE = Principal("alice", email="alice@example.com", groups={"engineers", "sre"})


def signed(signer: AssertionSigner, audience: str = "wiki") -> str:
    facts = AssertionFacts(audience=audience, decision_id="d1", device_id="dev-1", trust_score=80)
    return signer.sign(ALICE, facts)


def check(token: str, signer: AssertionSigner, **kwargs: Any) -> assertion.AssertionClaims:
    options: dict[str, Any] = {"issuer": GATEWAY_URL, "audience": "wiki", "jwks": signer.jwks()}
    options.update(kwargs)
    return assertion.verify(token, **options)


def test_round_trip(signer: AssertionSigner) -> None:
    claims = check(signed(signer), signer)
    assert claims.subject == "alice"
    assert claims.email == "alice@example.com"
    assert claims.groups == {"engineers", "sre"}
    assert (claims.device_id, claims.trust_score, claims.decision_id) == ("dev-1", 80, "d1")
    assert claims.key_id == signer.kid
    assert claims.expires_at - claims.issued_at == 60


def test_wrong_audience_is_rejected(signer: AssertionSigner) -> None:
    with pytest.raises(assertion.AssertionAudienceError):
        check(signed(signer, audience="other-app"), signer)


def test_wrong_issuer_is_rejected(signer: AssertionSigner) -> None:
    with pytest.raises(assertion.AssertionIssuerError):
        check(signed(signer), signer, issuer="https://evil.test")


def test_expired_assertion_is_rejected(signer: AssertionSigner) -> None:
    old = AssertionSigner(signer._key, issuer=GATEWAY_URL, clock=lambda: time.time() - 3600)
    with pytest.raises(assertion.AssertionExpiredError):
        check(signed(old), old)


def test_another_key_is_rejected(signer: AssertionSigner) -> None:
    other = AssertionSigner(generate_private_key("ES256"), issuer=GATEWAY_URL)  # type: ignore[arg-type]
    with pytest.raises(assertion.AssertionKeyError):
        check(signed(other), signer)


def _forge(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature)]
    )


def test_alg_none_is_rejected(signer: AssertionSigner) -> None:
    claims = signer.claims(ALICE, AssertionFacts(audience="wiki", decision_id="d"))
    token = _forge({"alg": "none", "typ": TOKEN_TYPE, "kid": signer.kid}, claims)
    with pytest.raises(assertion.AssertionAlgorithmError):
        check(token, signer)


def test_hs256_with_the_public_key_as_secret_is_rejected(signer: AssertionSigner) -> None:
    claims = signer.claims(ALICE, AssertionFacts(audience="wiki", decision_id="d"))
    secret = signer._key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "kid": signer.kid, "typ": TOKEN_TYPE}
    unsigned = _forge(header, claims).rsplit(".", 1)[0]
    mac = hmac.new(secret, unsigned.encode(), hashlib.sha256).digest()
    token = unsigned + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    with pytest.raises(assertion.AssertionAlgorithmError):
        check(token, signer)


def test_tampered_claims_are_rejected(signer: AssertionSigner) -> None:
    header, _, signature = signed(signer).split(".")
    claims = signer.claims(Principal("root"), AssertionFacts(audience="wiki", decision_id="d"))
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(assertion.AssertionSignatureError):
        check(f"{header}.{payload}.{signature}", signer)


def test_an_access_token_is_not_an_assertion(signer: AssertionSigner) -> None:
    claims = signer.claims(ALICE, AssertionFacts(audience="wiki", decision_id="d"))
    token = jwt.encode(
        claims, signer._key, algorithm="ES256", headers={"kid": signer.kid, "typ": "JWT"}
    )
    with pytest.raises(assertion.AssertionMalformedError):
        check(token, signer)


def test_missing_required_claim_is_rejected(signer: AssertionSigner) -> None:
    claims = signer.claims(ALICE, AssertionFacts(audience="wiki", decision_id="d"))
    del claims["jti"]
    token = jwt.encode(
        claims, signer._key, algorithm="ES256", headers={"kid": signer.kid, "typ": TOKEN_TYPE}
    )
    with pytest.raises(assertion.AssertionClaimError) as caught:
        check(token, signer)
    assert caught.value.claim == "jti"


@pytest.mark.parametrize("token", ["", "a.b", "not a token", "x" * 20000])
def test_garbage_is_malformed(signer: AssertionSigner, token: str) -> None:
    with pytest.raises(assertion.AssertionVerificationError):
        check(token, signer)


def test_one_key_source_is_required(signer: AssertionSigner) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        assertion.verify(signed(signer), issuer=GATEWAY_URL, audience="wiki")


@pytest.mark.anyio
async def test_gateway_assertion_verifies_for_its_route(
    client: httpx.AsyncClient, issuer: Issuer, upstream: RecordingUpstream, signer: AssertionSigner
) -> None:
    await client.get("/", headers=bearer(issuer.token()))
    seen = upstream.seen[-1]
    jwks = (await client.get("/.well-known/verity/jwks.json")).json()
    token = seen.header("x-verity-assertion")[0]
    claims = assertion.verify(token, issuer=GATEWAY_URL, audience="app", jwks=jwks)
    assert claims.subject == "alice"
    assert claims.decision_id == seen.header("x-verity-decision-id")[0]
    with pytest.raises(assertion.AssertionAudienceError):
        assertion.verify(token, issuer=GATEWAY_URL, audience="fa", jwks=jwks)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
