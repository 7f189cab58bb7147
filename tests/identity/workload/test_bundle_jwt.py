"""Trust bundles (PEM and SPIFFE JWKS) and JWT-SVIDs (issuance and verification)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jwt
import pytest

from verity.identity import (
    AlgorithmNotAllowedError,
    BadSignatureError,
    InvalidAudienceError,
    MissingClaimError,
    TokenExpiredError,
    UnknownKeyError,
)
from verity.identity.dev import public_jwk
from verity.identity.workload import (
    CertificateAuthority,
    CertificateAuthorityError,
    JwtSvidError,
    TrustBundle,
    TrustBundleError,
    issue_jwt_svid,
    principal_from_jwt_svid,
    verify_jwt_svid,
)
from verity.model import PrincipalKind

from .conftest import make_ca

SID = "spiffe://example.org/ns/prod/sa/web"
T0 = 1_900_000_000.0


def test_bundle_round_trips_through_pem_and_jwks(ca: CertificateAuthority, tmp_path: Path) -> None:
    bundle = TrustBundle.of_authority(ca)
    document = bundle.to_jwks()
    uses = sorted(key["use"] for key in document["keys"])
    assert uses == ["jwt-svid", "x509-svid"]
    assert all("d" not in key for key in document["keys"])
    (tmp_path / "b.json").write_bytes(bundle.to_jwks_bytes())
    (tmp_path / "b.pem").write_bytes(bundle.to_pem())
    from_jwks = TrustBundle.load(tmp_path / "b.json")
    from_pem = TrustBundle.load(tmp_path / "b.pem")
    assert from_jwks.trust_domain == from_pem.trust_domain == "example.org"
    assert from_jwks.x509_authorities == from_pem.x509_authorities == (ca.root,)
    assert from_jwks.jwt_authorities == bundle.jwt_authorities


def test_bundle_x5c_must_hold_exactly_one_certificate(ca: CertificateAuthority) -> None:
    document = TrustBundle.of_authority(ca).to_jwks()
    document["keys"][0]["x5c"] *= 2
    with pytest.raises(TrustBundleError, match="exactly one"):
        TrustBundle.from_jwks(document)


def test_bundle_of_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "b.pem").write_text("not a certificate")
    with pytest.raises(TrustBundleError):
        TrustBundle.load(tmp_path / "b.pem")
    with pytest.raises(TrustBundleError):
        TrustBundle.load(tmp_path / "missing.pem")


def test_jwt_svid_verifies_to_a_service_principal(
    ca: CertificateAuthority, bundle: TrustBundle
) -> None:
    token = issue_jwt_svid(ca, SID, audience="billing", now=T0)
    verified = verify_jwt_svid(token, bundle, audience="billing", now=T0 + 10)
    assert str(verified.spiffe_id) == SID
    assert verified.audience == ("billing",)
    principal = principal_from_jwt_svid(verified)
    assert principal.kind is PrincipalKind.SERVICE
    assert principal.spiffe_id == SID


def test_jwt_svid_wrong_audience(ca: CertificateAuthority, bundle: TrustBundle) -> None:
    token = issue_jwt_svid(ca, SID, audience="billing", now=T0)
    with pytest.raises(InvalidAudienceError):
        verify_jwt_svid(token, bundle, audience="payroll", now=T0)


def test_jwt_svid_expired(ca: CertificateAuthority, bundle: TrustBundle) -> None:
    token = issue_jwt_svid(ca, SID, audience="billing", ttl=60, now=T0)
    with pytest.raises(TokenExpiredError):
        verify_jwt_svid(token, bundle, audience="billing", now=T0 + 91)


def test_jwt_svid_from_another_ca_is_unknown_key(bundle: TrustBundle) -> None:
    token = issue_jwt_svid(make_ca(), SID, audience="billing", now=T0)
    with pytest.raises(UnknownKeyError):
        verify_jwt_svid(token, bundle, audience="billing", now=T0)


def test_jwt_svid_tampered_signature(ca: CertificateAuthority, bundle: TrustBundle) -> None:
    head, _payload, signature = issue_jwt_svid(ca, SID, audience="billing", now=T0).split(".")
    forged = jwt.utils.base64url_encode(
        json.dumps(
            {
                "iss": "spiffe://example.org",
                "sub": "spiffe://example.org/admin",
                "aud": "billing",
                "exp": T0 + 60,
            }
        ).encode()
    ).decode()
    with pytest.raises(BadSignatureError):
        verify_jwt_svid(f"{head}.{forged}.{signature}", bundle, audience="billing", now=T0)


def test_jwt_svid_symmetric_algorithm_is_refused(
    ca: CertificateAuthority, bundle: TrustBundle
) -> None:
    """HS256 signed with the public key as the secret (key confusion) never verifies."""
    kid = public_jwk(ca.jwt_key, "ES256")["kid"]
    claims = {"iss": "spiffe://example.org", "sub": SID, "aud": "billing", "exp": T0 + 60}
    token = jwt.encode(claims, "k" * 64, algorithm="HS256", headers={"kid": kid})
    with pytest.raises(AlgorithmNotAllowedError):
        verify_jwt_svid(token, bundle, audience="billing", now=T0)


def _signed(ca: CertificateAuthority, claims: dict[str, object]) -> str:
    kid = public_jwk(ca.jwt_key, "ES256")["kid"]
    return jwt.encode(claims, ca.jwt_key, algorithm="ES256", headers={"kid": kid})


def test_jwt_svid_without_aud_or_exp(ca: CertificateAuthority, bundle: TrustBundle) -> None:
    base = {"iss": "spiffe://example.org", "sub": SID, "aud": "billing", "exp": T0 + 60}
    for missing in ("aud", "exp"):
        claims = {k: v for k, v in base.items() if k != missing}
        with pytest.raises(MissingClaimError) as caught:
            verify_jwt_svid(_signed(ca, claims), bundle, audience="billing", now=T0)
        assert caught.value.claim == missing


def test_jwt_svid_lifetime_over_the_maximum(ca: CertificateAuthority, bundle: TrustBundle) -> None:
    claims = {"iss": "spiffe://example.org", "sub": SID, "aud": "billing", "exp": T0 + 86400}
    with pytest.raises(JwtSvidError, match="longer than the maximum"):
        verify_jwt_svid(_signed(ca, claims), bundle, audience="billing", now=T0)


@pytest.mark.parametrize("sub", ["alice", "spiffe://example.org", "spiffe://other.org/web"])
def test_jwt_svid_sub_must_be_a_workload_of_a_trusted_domain(
    ca: CertificateAuthority, bundle: TrustBundle, sub: str
) -> None:
    claims = {"iss": "spiffe://example.org", "sub": sub, "aud": "billing", "exp": T0 + 60}
    with pytest.raises(JwtSvidError):
        verify_jwt_svid(_signed(ca, claims), bundle, audience="billing", now=T0)


def test_jwt_svid_issuance_refuses_long_or_audience_less_tokens(ca: CertificateAuthority) -> None:
    with pytest.raises(CertificateAuthorityError):
        issue_jwt_svid(ca, SID, audience=[], now=T0)
    with pytest.raises(CertificateAuthorityError):
        issue_jwt_svid(ca, SID, audience="x", ttl=7200, now=T0)


def test_jwt_svid_real_clock(ca: CertificateAuthority, bundle: TrustBundle) -> None:
    token = issue_jwt_svid(ca, SID, audience=["a", "b"])
    assert verify_jwt_svid(token, bundle, audience="b").expires_at <= time.time() + 300
