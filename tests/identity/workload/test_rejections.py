"""Verification of X.509-SVID chains: one regression test per rejection class, named for it,
each run for EC and Ed25519 CAs, with and without an intermediate."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from verity.identity.workload import (
    CertificateAuthority,
    SvidRejectedError,
    SvidRejection,
    TrustBundle,
    principal_from_svid,
    verify_x509_svid,
)
from verity.model import PrincipalKind

from .conftest import NOW, forge, make_ca

SID = "spiffe://example.org/ns/prod/sa/web"


def rejected(
    chain: list[x509.Certificate], bundle: TrustBundle, now: dt.datetime = NOW
) -> SvidRejection:
    with pytest.raises(SvidRejectedError) as caught:
        verify_x509_svid(chain, bundle, now=now)
    return caught.value.reason


def test_valid_svid_yields_a_service_principal(any_ca: CertificateAuthority) -> None:
    svid = any_ca.issue_x509_svid(SID, now=NOW)
    verified = verify_x509_svid(list(svid.chain), TrustBundle.of_authority(any_ca), now=NOW)
    assert str(verified.spiffe_id) == SID
    assert verified.path[-1] == any_ca.root
    principal = principal_from_svid(verified)
    assert principal.kind is PrincipalKind.SERVICE
    assert principal.spiffe_id == SID == principal.id


def test_forged_but_well_formed_leaf_is_accepted(any_ca: CertificateAuthority) -> None:
    """The forger itself is sound: the rejections below come from the one property changed."""
    leaf = forge(any_ca)
    verify_x509_svid([leaf, *any_ca.intermediates], TrustBundle.of_authority(any_ca), now=NOW)


def test_wrong_trust_domain(any_ca: CertificateAuthority) -> None:
    other = TrustBundle.of_authority(make_ca(td="other.org"))
    svid = any_ca.issue_x509_svid(SID, now=NOW)
    assert rejected(list(svid.chain), other) is SvidRejection.WRONG_TRUST_DOMAIN


def test_wrong_trust_domain_in_san_from_our_own_ca(any_ca: CertificateAuthority) -> None:
    """A CA of trust domain A signing an ID of domain B is not trusted for B."""
    leaf = forge(any_ca, uris=["spiffe://other.org/web"])
    bundles = [TrustBundle.of_authority(any_ca)]
    assert rejected([leaf, *any_ca.intermediates], bundles[0]) is SvidRejection.WRONG_TRUST_DOMAIN


def test_expired(any_ca: CertificateAuthority) -> None:
    svid = any_ca.issue_x509_svid(SID, now=NOW)
    later = NOW + dt.timedelta(hours=1, seconds=1)
    assert (
        rejected(list(svid.chain), TrustBundle.of_authority(any_ca), later) is SvidRejection.EXPIRED
    )


def test_not_yet_valid(any_ca: CertificateAuthority) -> None:
    svid = any_ca.issue_x509_svid(SID, now=NOW)
    earlier = NOW - dt.timedelta(seconds=31)
    bundle = TrustBundle.of_authority(any_ca)
    assert rejected(list(svid.chain), bundle, earlier) is SvidRejection.NOT_YET_VALID


def test_skew_within_backdate_is_accepted(any_ca: CertificateAuthority) -> None:
    svid = any_ca.issue_x509_svid(SID, now=NOW)
    verify_x509_svid(
        list(svid.chain), TrustBundle.of_authority(any_ca), now=NOW - dt.timedelta(seconds=29)
    )


def test_ca_certificate_used_as_leaf(any_ca: CertificateAuthority) -> None:
    bundle = TrustBundle.of_authority(any_ca)
    assert rejected([any_ca.signing_certificate, any_ca.root], bundle) is SvidRejection.CA_AS_LEAF
    leaf = forge(any_ca, is_ca=True)
    assert rejected([leaf, *any_ca.intermediates], bundle) is SvidRejection.CA_AS_LEAF


def test_leaf_with_key_cert_sign_usage(any_ca: CertificateAuthority) -> None:
    usage = {"digital_signature": True, "content_commitment": False, "key_encipherment": False,
             "data_encipherment": False, "key_agreement": False, "key_cert_sign": True,
             "crl_sign": False, "encipher_only": False, "decipher_only": False}  # fmt: skip
    leaf = forge(any_ca, key_usage=usage)
    assert (
        rejected([leaf, *any_ca.intermediates], TrustBundle.of_authority(any_ca))
        is SvidRejection.CA_AS_LEAF
    )


def test_leaf_without_digital_signature_usage(any_ca: CertificateAuthority) -> None:
    leaf = forge(any_ca, key_usage=None)
    bundle = TrustBundle.of_authority(any_ca)
    assert rejected([leaf, *any_ca.intermediates], bundle) is SvidRejection.BAD_KEY_USAGE


def test_leaf_without_uri_san(any_ca: CertificateAuthority) -> None:
    leaf = forge(any_ca, uris=())
    bundle = TrustBundle.of_authority(any_ca)
    assert rejected([leaf, *any_ca.intermediates], bundle) is SvidRejection.NO_URI_SAN


def test_leaf_with_several_uri_sans(any_ca: CertificateAuthority) -> None:
    leaf = forge(any_ca, uris=[SID, "spiffe://example.org/admin"])
    bundle = TrustBundle.of_authority(any_ca)
    assert rejected([leaf, *any_ca.intermediates], bundle) is SvidRejection.MULTIPLE_URI_SANS


@pytest.mark.parametrize(
    "uri", ["https://example.org/web", "spiffe://example.org/a/../admin", "spiffe://example.org"]
)
def test_non_spiffe_uri(any_ca: CertificateAuthority, uri: str) -> None:
    leaf = forge(any_ca, uris=[uri])
    bundle = TrustBundle.of_authority(any_ca)
    assert rejected([leaf, *any_ca.intermediates], bundle) is SvidRejection.NOT_SPIFFE


def test_chain_to_an_unknown_root(any_ca: CertificateAuthority) -> None:
    stranger = make_ca(intermediate=bool(any_ca.intermediates))  # same trust domain, other keys
    svid = stranger.issue_x509_svid(SID, now=NOW)
    assert (
        rejected(list(svid.chain), TrustBundle.of_authority(any_ca)) is SvidRejection.UNKNOWN_ROOT
    )


def test_missing_intermediate_is_an_unknown_root() -> None:
    ca = make_ca(intermediate=True)
    svid = ca.issue_x509_svid(SID, now=NOW)
    assert rejected([svid.certificate], TrustBundle.of_authority(ca)) is SvidRejection.UNKNOWN_ROOT


def _tamper(cert: x509.Certificate, where: int) -> x509.Certificate:
    der = bytearray(cert.public_bytes(serialization.Encoding.DER))
    der[where] ^= 0x01
    return x509.load_der_x509_certificate(bytes(der))


def test_tampered_signature(any_ca: CertificateAuthority) -> None:
    svid = any_ca.issue_x509_svid(SID, now=NOW)
    bad = _tamper(svid.certificate, -3)  # inside the signature value
    bundle = TrustBundle.of_authority(any_ca)
    assert rejected([bad, *svid.intermediates], bundle) is SvidRejection.BAD_SIGNATURE


def test_tampered_content_breaks_the_signature(any_ca: CertificateAuthority) -> None:
    svid = any_ca.issue_x509_svid(SID, now=NOW)
    der = svid.certificate.public_bytes(serialization.Encoding.DER)
    serial = svid.certificate.serial_number.to_bytes(20, "big").lstrip(b"\x00")
    bad = _tamper(svid.certificate, der.index(serial) + 2)  # one bit of the serial number
    bundle = TrustBundle.of_authority(any_ca)
    assert rejected([bad, *svid.intermediates], bundle) is SvidRejection.BAD_SIGNATURE


def test_issuer_that_is_not_a_ca_is_refused() -> None:
    """A leaf "issued" by another leaf (CA=false) is not accepted, signature or not."""
    ca = make_ca()
    middle_key = ec.generate_private_key(ec.SECP256R1())
    middle = forge(ca, key=middle_key)
    middle_ca = CertificateAuthority(
        trust_domain=ca.trust_domain, root=ca.root, intermediates=(middle,),
        signing_key=middle_key, jwt_key=ca.jwt_key,
    )  # fmt: skip
    leaf = forge(middle_ca)
    assert rejected([leaf, middle], TrustBundle.of_authority(ca)) is SvidRejection.INVALID_CHAIN


def test_empty_chain_is_malformed(bundle: TrustBundle) -> None:
    assert rejected([], bundle) is SvidRejection.MALFORMED


def test_several_bundles_pick_the_leaf_trust_domain(ca: CertificateAuthority) -> None:
    other = make_ca(td="other.org")
    svid = other.issue_x509_svid("spiffe://other.org/db", now=NOW)
    bundles = [TrustBundle.of_authority(ca), TrustBundle.of_authority(other)]
    assert (
        str(verify_x509_svid(list(svid.chain), bundles, now=NOW).spiffe_id)
        == "spiffe://other.org/db"
    )
