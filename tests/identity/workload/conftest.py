"""CAs of both key types (with and without intermediate) and a forger of odd leaves."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from verity.identity.workload import CertificateAuthority, TrustBundle

TD = "example.org"
NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
_CAS: dict[tuple[str, bool], CertificateAuthority] = {}


def make_ca(
    key_type: str = "ec-p256", *, intermediate: bool = False, td: str = TD, live: bool = False
) -> CertificateAuthority:
    """A CA valid around ``NOW`` (2030), or around the real time with ``live``."""
    start = dt.datetime.now(dt.UTC) if live else NOW - dt.timedelta(days=1)
    return CertificateAuthority.create(
        trust_domain=td,
        key_type=key_type,
        intermediate=intermediate,  # type: ignore[arg-type]
        now=start,
    )


@pytest.fixture(
    params=[("ec-p256", False), ("ec-p256", True), ("ed25519", False), ("ed25519", True)],
    ids=["ec", "ec-intermediate", "ed25519", "ed25519-intermediate"],
)
def any_ca(request: pytest.FixtureRequest) -> CertificateAuthority:
    """Every CA shape (created once per session: key generation is the slow part)."""
    key = request.param
    if key not in _CAS:
        _CAS[key] = make_ca(key[0], intermediate=key[1])
    return _CAS[key]


@pytest.fixture(scope="session")
def ca() -> CertificateAuthority:
    return make_ca()


@pytest.fixture(scope="session")
def bundle(ca: CertificateAuthority) -> TrustBundle:
    return TrustBundle.of_authority(ca)


_DS_ONLY = dict(
    digital_signature=True, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
    encipher_only=False, decipher_only=False,
)  # fmt: skip


def forge(
    ca: CertificateAuthority,
    *,
    uris: Sequence[str] = ("spiffe://example.org/forged",),
    is_ca: bool = False,
    key_usage: dict[str, bool] | None = _DS_ONLY,
    not_before: dt.datetime = NOW - dt.timedelta(minutes=5),
    not_after: dt.datetime = NOW + dt.timedelta(hours=1),
    key: ec.EllipticCurvePrivateKey | None = None,
) -> x509.Certificate:
    """A leaf signed by ``ca``'s signing key with exactly the given properties."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    issuer = ca.signing_certificate
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "forged")]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.signing_key.public_key()),
            critical=False,
        )
    )
    if key_usage is not None:
        builder = builder.add_extension(x509.KeyUsage(**key_usage), critical=True)
    if uris:
        names = [x509.UniformResourceIdentifier(u) for u in uris]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    signer = ca.signing_key
    return builder.sign(
        signer, None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    )
