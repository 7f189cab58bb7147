"""X.509-SVID issuance: the extensions the X.509-SVID spec demands, lifetimes, serials, files."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID

from verity.identity.workload import (
    CertificateAuthority,
    CertificateAuthorityError,
    WorkloadIdentityError,
)

from .conftest import NOW, TD

SID = "spiffe://example.org/ns/prod/sa/web"


def ext(
    cert: x509.Certificate, kind: type[x509.ExtensionType]
) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_class(kind)


def test_leaf_has_exactly_one_uri_san_with_the_spiffe_id(any_ca: CertificateAuthority) -> None:
    leaf = any_ca.issue_x509_svid(SID, now=NOW).certificate
    san = ext(leaf, x509.SubjectAlternativeName).value
    assert isinstance(san, x509.SubjectAlternativeName)
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [SID]
    assert len(list(san)) == 1


def test_leaf_key_usage_is_digital_signature_only_and_critical(
    any_ca: CertificateAuthority,
) -> None:
    leaf = any_ca.issue_x509_svid(SID, now=NOW).certificate
    usage = ext(leaf, x509.KeyUsage)
    assert usage.critical
    assert isinstance(usage.value, x509.KeyUsage)
    assert usage.value.digital_signature
    assert not usage.value.key_cert_sign
    assert not usage.value.crl_sign


def test_leaf_is_not_a_ca_and_serves_both_tls_roles(any_ca: CertificateAuthority) -> None:
    leaf = any_ca.issue_x509_svid(SID, now=NOW).certificate
    constraints = ext(leaf, x509.BasicConstraints)
    assert constraints.critical
    assert isinstance(constraints.value, x509.BasicConstraints)
    assert constraints.value.ca is False
    eku = ext(leaf, x509.ExtendedKeyUsage).value
    assert isinstance(eku, x509.ExtendedKeyUsage)
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)


def test_ca_certificates_sign_and_carry_the_trust_domain_id(any_ca: CertificateAuthority) -> None:
    expected_length = 1 if any_ca.intermediates else 0
    for cert, path_length in (
        (any_ca.root, expected_length),
        *((i, 0) for i in any_ca.intermediates),
    ):
        constraints = ext(cert, x509.BasicConstraints)
        assert constraints.critical
        assert isinstance(constraints.value, x509.BasicConstraints)
        assert constraints.value.ca
        assert constraints.value.path_length == path_length
        usage = ext(cert, x509.KeyUsage).value
        assert isinstance(usage, x509.KeyUsage)
        assert usage.key_cert_sign
        san = ext(cert, x509.SubjectAlternativeName).value
        assert isinstance(san, x509.SubjectAlternativeName)
        assert san.get_values_for_type(x509.UniformResourceIdentifier) == [f"spiffe://{TD}"]


def test_root_key_type_follows_the_request() -> None:
    from .conftest import make_ca

    assert isinstance(make_ca("ed25519").root.public_key(), ed25519.Ed25519PublicKey)
    assert isinstance(make_ca("ec-p256").root.public_key(), ec.EllipticCurvePublicKey)


def test_default_lifetime_is_one_hour_and_not_before_is_backdated(ca: CertificateAuthority) -> None:
    svid = ca.issue_x509_svid(SID, now=NOW)
    assert svid.certificate.not_valid_after_utc - NOW == dt.timedelta(hours=1)
    assert NOW - svid.certificate.not_valid_before_utc == dt.timedelta(seconds=30)


def test_ttl_over_the_maximum_is_refused(ca: CertificateAuthority) -> None:
    with pytest.raises(CertificateAuthorityError, match="exceeds the maximum"):
        ca.issue_x509_svid(SID, ttl=dt.timedelta(days=2), now=NOW)
    with pytest.raises(CertificateAuthorityError, match="positive"):
        ca.issue_x509_svid(SID, ttl=dt.timedelta(0), now=NOW)


def test_lifetime_is_cut_at_the_signing_certificate_expiry(ca: CertificateAuthority) -> None:
    late = ca.signing_certificate.not_valid_after_utc - dt.timedelta(minutes=10)
    svid = ca.issue_x509_svid(SID, now=late)
    assert svid.not_after == ca.signing_certificate.not_valid_after_utc


def test_serial_numbers_are_unique(ca: CertificateAuthority) -> None:
    serials = {ca.issue_x509_svid(SID, now=NOW).certificate.serial_number for _ in range(40)}
    assert len(serials) == 40


@pytest.mark.parametrize(
    "spiffe_id", ["spiffe://other.org/web", "spiffe://example.org", "spiffe://example.org/a/../b"]
)
def test_refuses_ids_outside_the_trust_domain_or_invalid(
    ca: CertificateAuthority, spiffe_id: str
) -> None:
    with pytest.raises(WorkloadIdentityError):
        ca.issue_x509_svid(spiffe_id, now=NOW)


def test_save_writes_private_keys_0600_and_never_overwrites(tmp_path: Path) -> None:
    ca = CertificateAuthority.create(trust_domain=TD, intermediate=True)
    written = {p.name: p for p in ca.save(tmp_path / "ca")}
    for name in ("root.key", "intermediate.key", "jwt.key"):
        assert stat.S_IMODE(written[name].stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "ca").stat().st_mode) == 0o700
    with pytest.raises(CertificateAuthorityError, match="already exists"):
        ca.save(tmp_path / "ca")
    loaded = CertificateAuthority.load(tmp_path / "ca")
    assert loaded.trust_domain == TD
    assert loaded.signing_certificate == ca.signing_certificate


def test_svid_files_key_is_0600(ca: CertificateAuthority, tmp_path: Path) -> None:
    cert_path, key_path = ca.issue_x509_svid(SID).write(tmp_path / "svid")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert len(x509.load_pem_x509_certificates(cert_path.read_bytes())) == 1


def test_repr_never_shows_key_material(ca: CertificateAuthority) -> None:
    svid = ca.issue_x509_svid(SID)
    assert "PRIVATE" not in repr(svid)
    assert "private_key" not in repr(svid)
    assert "signing_key" not in repr(ca)
    assert "jwt_key" not in repr(ca)
