"""X.509 certificate templates of the X.509-SVID specification (sections 4 and 5).

Signing certificates: basicConstraints CA=true (critical, with a path length), key usage
keyCertSign + cRLSign (critical), the trust domain's SPIFFE ID as the one URI SAN. Leaf
SVIDs: basicConstraints CA=false, key usage digitalSignature only (critical), extended key
usage serverAuth + clientAuth, exactly one URI SAN: the workload's SPIFFE ID.
"""

from __future__ import annotations

import datetime as dt
import secrets

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .spiffe import SpiffeId

CaPrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

_CA_USAGE = x509.KeyUsage(
    digital_signature=False, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
    encipher_only=False, decipher_only=False,
)  # fmt: skip
_LEAF_USAGE = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
    encipher_only=False, decipher_only=False,
)  # fmt: skip
_LEAF_EKU = x509.ExtendedKeyUsage(
    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
)


def ca_name(role: str) -> x509.Name:
    """A distinguished name unique to one CA certificate (``role`` + random suffix)."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Verity"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"Verity {role} CA {secrets.token_hex(8)}"),
        ]
    )


def _sign(builder: x509.CertificateBuilder, key: CaPrivateKey) -> x509.Certificate:
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm)


def _base(
    subject: x509.Name, issuer: x509.Name, public: PublicKey, not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.CertificateBuilder:  # fmt: skip
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )


def ca_certificate(
    *,
    public_key: PublicKey,
    subject: x509.Name,
    issuer: x509.Certificate | None,
    issuer_key: CaPrivateKey,
    trust_domain: str,
    not_before: dt.datetime,
    not_after: dt.datetime,
    path_length: int | None,
) -> x509.Certificate:
    """A root (``issuer`` None: self-signed) or intermediate signing certificate."""
    issuer_name = subject if issuer is None else issuer.subject
    authority = issuer_key.public_key()
    uri = x509.UniformResourceIdentifier(str(SpiffeId.for_trust_domain(trust_domain)))
    builder = (
        _base(subject, issuer_name, public_key, not_before, not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .add_extension(x509.SubjectAlternativeName([uri]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority), critical=False
        )
    )
    return _sign(builder, issuer_key)


def leaf_certificate(
    *,
    public_key: PublicKey,
    spiffe_id: SpiffeId,
    issuer: x509.Certificate,
    issuer_key: CaPrivateKey,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.Certificate:
    """An X.509-SVID leaf for ``spiffe_id``, signed by ``issuer``."""
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Verity workload")])
    uri = x509.UniformResourceIdentifier(str(spiffe_id))
    builder = (
        _base(subject, issuer.subject, public_key, not_before, not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_LEAF_USAGE, critical=True)
        .add_extension(_LEAF_EKU, critical=False)
        .add_extension(x509.SubjectAlternativeName([uri]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    return _sign(builder, issuer_key)
