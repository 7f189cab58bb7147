"""RFC 5280 chain rules hold for every key type: Ed25519 chains get the same walk as EC
and RSA ones (unknown critical extensions, name constraints, the leaf's key purpose)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from verity.identity.workload import SvidRejectedError, TrustBundle, verify_x509_svid
from verity.identity.workload.errors import SvidRejection

from .conftest import NOW, TD

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
UNKNOWN = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1.1"), b"\x05\x00")
Extra = Sequence[tuple[x509.ExtensionType, bool]]
_KEYS: dict[tuple[str, str], PrivateKey] = {}


def _key(kind: str, role: str) -> PrivateKey:
    """One key per key type and role (generated once: RSA keys are slow to make)."""
    if (kind, role) not in _KEYS:
        key: PrivateKey
        if kind == "rsa":
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif kind == "ed25519":
            key = ed25519.Ed25519PrivateKey.generate()
        else:
            key = ec.generate_private_key(ec.SECP256R1())
        _KEYS[kind, role] = key
    return _KEYS[kind, role]


def _usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip


def _cert(
    subject: str, issuer: str, public: object, signer: PrivateKey, *, ca: bool, extra: Extra,
    key_usage: bool = True, constraints_critical: bool = True,
) -> x509.Certificate:  # fmt: skip
    def name(value: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, value)])

    builder = (
        x509.CertificateBuilder()
        .subject_name(name(subject)).issuer_name(name(issuer))
        .public_key(public)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=1 if ca else None),
                       critical=constraints_critical)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)  # type: ignore[arg-type]
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )  # fmt: skip
    if key_usage:
        builder = builder.add_extension(_usage(ca=ca), critical=True)
    for extension, critical in extra:
        builder = builder.add_extension(extension, critical=critical)
    algorithm = None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(signer, algorithm)


@dataclass(frozen=True)
class Chain:
    leaf: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    bundle: TrustBundle

    def verify(self) -> str:
        return str(
            verify_x509_svid([self.leaf, *self.intermediates], self.bundle, now=NOW).spiffe_id
        )


def chain(
    kind: str, *, root: Extra = (), middle: Extra | None = None, leaf: Extra = (),
    uri: str = f"spiffe://{TD}/api",
) -> Chain:  # fmt: skip
    """root -> (intermediate) -> leaf, every certificate with a ``kind`` key."""
    root_key = _key(kind, "root")
    root_cert = _cert("root", "root", root_key.public_key(), root_key, ca=True, extra=root)
    signer, issuer, intermediates = root_key, "root", ()
    if middle is not None:
        middle_key = _key(kind, "middle")
        middle_cert = _cert(
            "middle", "root", middle_key.public_key(), root_key, ca=True, extra=middle
        )
        signer, issuer, intermediates = middle_key, "middle", (middle_cert,)
    san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)])
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    extra = [(san, False), (eku, False), *leaf]
    leaf_key = _key(kind, "leaf")
    leaf_cert = _cert("leaf", issuer, leaf_key.public_key(), signer, ca=False, extra=extra)
    return Chain(leaf_cert, intermediates, TrustBundle(TD, (root_cert,)))


def refusal(built: Chain) -> SvidRejectedError:
    with pytest.raises(SvidRejectedError) as caught:
        built.verify()
    return caught.value


KINDS = pytest.mark.parametrize("kind", ["ed25519", "ec", "rsa"])


@KINDS
def test_a_well_formed_chain_verifies_for_every_key_type(kind: str) -> None:
    assert chain(kind).verify() == f"spiffe://{TD}/api"
    permitted = x509.NameConstraints([x509.UniformResourceIdentifier(TD)], None)
    assert chain(kind, root=[(permitted, True)], middle=()).verify() == f"spiffe://{TD}/api"


@KINDS
@pytest.mark.parametrize("where", ["leaf", "intermediate"])
def test_an_svid_chain_with_an_unknown_critical_extension_is_refused_for_every_key_type(
    kind: str, where: str
) -> None:
    marked = [(UNKNOWN, True)]
    built = chain(kind, leaf=marked) if where == "leaf" else chain(kind, middle=marked)
    error = refusal(built)
    assert error.reason is SvidRejection.INVALID_CHAIN
    assert "unknown critical extension 1.3.6.1.4.1.55555.1.1" in str(error)  # our walk's rule


@KINDS
def test_an_unknown_non_critical_extension_is_ignored(kind: str) -> None:
    assert chain(kind, leaf=[(UNKNOWN, False)]).verify() == f"spiffe://{TD}/api"


@KINDS
@pytest.mark.parametrize(
    "constraints",
    [
        x509.NameConstraints([x509.UniformResourceIdentifier(".prod.example.org")], None),
        x509.NameConstraints(None, [x509.UniformResourceIdentifier(TD)]),
        x509.NameConstraints(
            [x509.DirectoryName(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))], None
        ),
    ],
    ids=["uri-not-permitted", "uri-excluded", "subject-not-permitted"],
)
@pytest.mark.parametrize("holder", ["root", "intermediate"])
def test_an_svid_outside_an_issuers_name_constraints_is_refused_for_every_key_type(
    kind: str, constraints: x509.NameConstraints, holder: str
) -> None:
    marked = [(constraints, True)]
    built = chain(kind, root=marked, middle=()) if holder == "root" else chain(kind, middle=marked)
    error = refusal(built)
    assert error.reason is SvidRejection.INVALID_CHAIN
    assert "name constraints" in str(error)  # our walk's rule, whatever the key type


@KINDS
def test_a_leaf_whose_key_purposes_exclude_client_auth_is_refused(kind: str) -> None:
    server_only = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    built = chain(kind)
    leaf = _cert(
        "leaf", "root", _key(kind, "leaf").public_key(), _key(kind, "root"), ca=False,
        extra=[(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"spiffe://{TD}/api")]),
                False), (server_only, False)],
    )  # fmt: skip
    error = refusal(Chain(leaf, (), built.bundle))
    assert error.reason is SvidRejection.BAD_KEY_USAGE


def test_a_weak_rsa_key_is_refused_whatever_the_issuers_key_type() -> None:
    built = chain("ed25519")
    root_key = _key("ed25519", "root")
    san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"spiffe://{TD}/api")])
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - under test
    leaf = _cert("leaf", "root", weak.public_key(), root_key, ca=False, extra=[(san, False)])
    assert "RSA key of 1024 bits" in str(refusal(Chain(leaf, (), built.bundle)))


def _under(kind: str, middle: x509.Certificate) -> Chain:
    """root -> ``middle`` (signed with the "middle" key) -> an otherwise valid leaf."""
    built = chain(kind, middle=())
    san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"spiffe://{TD}/api")])
    leaf = _cert("leaf", "middle", _key(kind, "leaf").public_key(), _key(kind, "middle"),
                 ca=False, extra=[(san, False)])  # fmt: skip
    return Chain(leaf, (middle,), built.bundle)


def _middle(kind: str, **options: object) -> x509.Certificate:
    extra = options.pop("extra", ())
    return _cert("middle", "root", _key(kind, "middle").public_key(), _key(kind, "root"),
                 ca=True, extra=extra, **options)  # type: ignore[arg-type]  # fmt: skip


# The rules below are those cryptography.x509.verification enforced for EC and RSA chains
# before the walk replaced it: each was a regression for every key type.


@KINDS
def test_an_intermediate_without_key_usage_cannot_issue_svids(kind: str) -> None:
    error = refusal(_under(kind, _middle(kind, key_usage=False)))
    assert error.reason is SvidRejection.INVALID_CHAIN
    assert "keyCertSign" in str(error)


@KINDS
def test_an_intermediate_with_non_critical_basic_constraints_cannot_issue_svids(
    kind: str,
) -> None:
    error = refusal(_under(kind, _middle(kind, constraints_critical=False)))
    assert error.reason is SvidRejection.INVALID_CHAIN
    assert "basicConstraints is not critical" in str(error)


@KINDS
def test_an_intermediate_limited_to_server_auth_cannot_issue_client_svids(kind: str) -> None:
    server_only = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    error = refusal(_under(kind, _middle(kind, extra=[(server_only, False)])))
    assert error.reason is SvidRejection.INVALID_CHAIN
    assert "extended key usage excludes clientAuth" in str(error)
    client = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
    assert _under(kind, _middle(kind, extra=[(client, False)])).verify() == f"spiffe://{TD}/api"


_OID_DER = "060a2b0601040183b20301"  # 1.3.6.1.4.1.55555.1 (tag, length, arcs); + last arc


def test_a_leaf_with_a_duplicate_extension_is_refused_as_malformed_not_a_crash() -> None:
    other = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1.2"), b"\x05\x00")
    built = chain("ec", leaf=[(UNKNOWN, False), (other, False)])
    der = built.leaf.public_bytes(serialization.Encoding.DER)
    twice = der.replace(bytes.fromhex(_OID_DER + "02"), bytes.fromhex(_OID_DER + "01"))
    assert twice != der
    forged = Chain(x509.load_der_x509_certificate(twice), (), built.bundle)
    assert refusal(forged).reason is SvidRejection.MALFORMED  # was: DuplicateExtension raised


def test_an_rsa_pss_signature_with_a_weak_hash_is_refused() -> None:
    """The OID alone (RSASSA-PSS) says nothing about the hash: its parameters do."""
    built = chain("rsa")
    root_key = _key("rsa", "root")
    assert isinstance(root_key, rsa.RSAPrivateKey)
    san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"spiffe://{TD}/api")])
    template = _cert("leaf", "root", _key("rsa", "leaf").public_key(), root_key, ca=False,
                     extra=[(san, False)])  # fmt: skip
    builder = (
        x509.CertificateBuilder()
        .subject_name(template.subject).issuer_name(template.issuer)
        .public_key(template.public_key()).serial_number(template.serial_number)
        .not_valid_before(template.not_valid_before_utc)
        .not_valid_after(template.not_valid_after_utc)
    )  # fmt: skip
    for extension in template.extensions:
        builder = builder.add_extension(extension.value, critical=extension.critical)
    pss = padding.PSS(padding.MGF1(hashes.SHA224()), padding.PSS.DIGEST_LENGTH)
    leaf = builder.sign(root_key, hashes.SHA224(), rsa_padding=pss)
    error = refusal(Chain(leaf, (), built.bundle))
    assert error.reason is SvidRejection.INVALID_CHAIN
    assert "sha224" in str(error)


def _library_accepts(built: Chain) -> bool:
    root = built.bundle.x509_authorities[0]
    verifier = PolicyBuilder().store(Store([root])).time(NOW).build_client_verifier()
    try:
        verifier.verify(built.leaf, list(built.intermediates))
    except VerificationError:
        return False
    return True


_SERVER_ONLY = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
_DEFECTS = {
    "none": lambda: _under("ec", _middle("ec")),
    "middle-no-key-usage": lambda: _under("ec", _middle("ec", key_usage=False)),
    "middle-bc-not-critical": lambda: _under("ec", _middle("ec", constraints_critical=False)),
    "middle-server-auth-only": lambda: _under("ec", _middle("ec", extra=[(_SERVER_ONLY, False)])),
    "middle-unknown-critical": lambda: chain("ec", middle=[(UNKNOWN, True)]),
    "leaf-unknown-critical": lambda: chain("ec", leaf=[(UNKNOWN, True)]),
    "root-no-key-usage": lambda: _under_root_without_key_usage("ec"),
}


def _under_root_without_key_usage(kind: str) -> Chain:
    root_key = _key(kind, "root")
    root = _cert("root", "root", root_key.public_key(), root_key, ca=True, extra=(),
                 key_usage=False)  # fmt: skip
    built = _under(kind, _middle(kind))
    return Chain(built.leaf, built.intermediates, TrustBundle(TD, (root,)))


@pytest.mark.parametrize("defect", sorted(_DEFECTS))
def test_the_walk_refuses_every_ec_chain_cryptographys_verifier_refuses(defect: str) -> None:
    """Differential check against ``cryptography.x509.verification`` (which the walk
    replaced) on chains it can judge (EC keys, no URI name constraints)."""
    built = _DEFECTS[defect]()
    try:
        built.verify()
        walk = True
    except SvidRejectedError:
        walk = False
    assert walk == _library_accepts(built), defect


def test_an_rsa_key_with_the_roca_fingerprint_is_refused_anywhere_on_the_path() -> None:
    """CVE-2017-15361: the private key of such a modulus can be computed, so a ROCA leaf
    can be impersonated and a ROCA CA can mint any SVID (roca-detect's test modulus)."""
    from ..test_roca import ROCA_DETECT_MOD03

    built = chain("ec")
    roca = rsa.RSAPublicNumbers(65537, ROCA_DETECT_MOD03).public_key()
    san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"spiffe://{TD}/api")])
    leaf = _cert("leaf", "root", roca, _key("ec", "root"), ca=False, extra=[(san, False)])
    error = refusal(Chain(leaf, (), built.bundle))
    assert error.reason is SvidRejection.INVALID_CHAIN
    assert "ROCA" in str(error)


class _OpenSslVerifiedPeer:
    """A handshake as Python < 3.13 exposes it: the peer's leaf only (OpenSSL verified
    the path; ``get_verified_chain`` does not exist)."""

    def __init__(self, leaf: x509.Certificate) -> None:
        self.der = leaf.public_bytes(serialization.Encoding.DER)

    def getpeercert(self, binary_form: bool = False) -> bytes:
        assert binary_form
        return self.der


def test_peer_svid_without_the_verified_chain_still_refuses_a_roca_leaf() -> None:
    """OpenSSL validates the path but knows nothing of ROCA: the leaf rules still run."""
    from verity.identity.workload import peer_svid

    from ..test_roca import ROCA_DETECT_MOD03

    built = chain("ec")
    san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"spiffe://{TD}/api")])
    good = _cert("leaf", "root", _key("ec", "leaf").public_key(), _key("ec", "root"), ca=False,
                 extra=[(san, False)])  # fmt: skip
    stub: Any = _OpenSslVerifiedPeer(good)
    assert str(peer_svid(stub, built.bundle, now=NOW).spiffe_id) == f"spiffe://{TD}/api"
    roca = rsa.RSAPublicNumbers(65537, ROCA_DETECT_MOD03).public_key()
    bad = _cert("leaf", "root", roca, _key("ec", "root"), ca=False, extra=[(san, False)])
    stub = _OpenSslVerifiedPeer(bad)
    with pytest.raises(SvidRejectedError, match="ROCA"):
        peer_svid(stub, built.bundle, now=NOW)


@KINDS
@pytest.mark.parametrize("value", [f"spiffe://{TD}", f"{TD}/api", ""])
def test_a_uri_name_constraint_that_is_not_a_host_refuses_the_chain(kind: str, value: str) -> None:
    """Written as a URI, an exclusion would match no name and silently exclude nothing."""
    excluded = x509.NameConstraints(None, [x509.UniformResourceIdentifier(value)])
    error = refusal(chain(kind, middle=[(excluded, True)]))
    assert error.reason is SvidRejection.INVALID_CHAIN
    assert "not a host name" in str(error)


def test_an_empty_dns_exclusion_still_means_every_dns_name() -> None:
    no_dns = x509.NameConstraints(None, [x509.DNSName("")])
    assert chain("ec", middle=[(no_dns, True)]).verify() == f"spiffe://{TD}/api"
    built = chain("ec", middle=[(no_dns, True)])
    names = [x509.UniformResourceIdentifier(f"spiffe://{TD}/api"), x509.DNSName("api.test")]
    leaf = _cert("leaf", "middle", _key("ec", "leaf").public_key(), _key("ec", "middle"),
                 ca=False, extra=[(x509.SubjectAlternativeName(names), False)])  # fmt: skip
    error = refusal(Chain(leaf, built.intermediates, built.bundle))
    assert "excluded" in str(error)
