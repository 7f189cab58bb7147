"""RFC 5280 chain rules that hold for every key type: algorithms, critical extensions,
name constraints and the leaf's extended key usage.

``verify_x509_svid`` applies them to every path it builds, whatever the keys (EC, RSA,
Ed25519, Ed448), so no key type gets a laxer walk than another:

- **algorithms**: keys are EC P-256/P-384/P-521, RSA of at least 2048 bits without the
  ROCA fingerprint, Ed25519 or Ed448; signatures ECDSA or RSA (PKCS#1 v1.5 or PSS)
  with SHA-256/384/512, or EdDSA;

- **critical extensions** (RFC 5280 4.2): a certificate with a critical extension this
  verifier does not process is refused, on every certificate of the path;
- **name constraints** (RFC 5280 4.2.1.10, 6.1.3 b-c): a CA's permitted and excluded
  subtrees apply to the subject and every subject alternative name of each certificate
  below it (self-issued intermediates excepted); URI constraints match the URI's host
  (a leading ``.`` means subdomains), DNS constraints the name and its subdomains. A
  constraint of a form this verifier cannot evaluate refuses the chain;
- **extended key usage**: a leaf that lists key purposes must list ``clientAuth`` (or
  ``anyExtendedKeyUsage``), as ``cryptography``'s client verifier requires.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, SignatureAlgorithmOID

from ..roca import has_roca_fingerprint
from .errors import SvidRejectedError
from .errors import SvidRejection as R

KNOWN_EXTENSIONS = frozenset(
    {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.NAME_CONSTRAINTS,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
    }
)
MIN_RSA_BITS = 2048
_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})
_SIGNATURES = frozenset(
    {
        SignatureAlgorithmOID.ECDSA_WITH_SHA256, SignatureAlgorithmOID.ECDSA_WITH_SHA384,
        SignatureAlgorithmOID.ECDSA_WITH_SHA512, SignatureAlgorithmOID.RSA_WITH_SHA256,
        SignatureAlgorithmOID.RSA_WITH_SHA384, SignatureAlgorithmOID.RSA_WITH_SHA512,
        SignatureAlgorithmOID.RSASSA_PSS, SignatureAlgorithmOID.ED25519,
        SignatureAlgorithmOID.ED448,
    }
)  # fmt: skip
_DIGESTS = (hashes.SHA256, hashes.SHA384, hashes.SHA512)
CLIENT_PURPOSES = frozenset(
    {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
)
# what ``cert.extensions`` raises for a malformed extension block (a duplicate is not a
# ValueError): every one is a MALFORMED rejection, never an unexpected exception
UNPARSABLE = (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType)
# a URI or DNS name constraint: a host or domain, "." first for subdomains only
_HOST_CONSTRAINT = re.compile(r"\.?[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?")
_EVALUATED = (
    x509.UniformResourceIdentifier, x509.DNSName, x509.RFC822Name, x509.IPAddress,
    x509.DirectoryName,
)  # fmt: skip


def _extensions(cert: x509.Certificate) -> x509.Extensions:
    try:
        return cert.extensions
    except UNPARSABLE as exc:
        raise SvidRejectedError(R.MALFORMED, f"unparsable extension: {exc}") from None


def check_algorithms(path: Sequence[x509.Certificate]) -> None:
    """Refuse weak or unknown key and signature algorithms anywhere on the path."""
    for cert in path:
        if cert.signature_algorithm_oid not in _SIGNATURES:
            raise SvidRejectedError(
                R.INVALID_CHAIN,
                f"signature algorithm {cert.signature_algorithm_oid.dotted_string} is refused",
            )
        digest = cert.signature_hash_algorithm  # RSASSA-PSS names its hash in parameters
        if digest is not None and not isinstance(digest, _DIGESTS):
            raise SvidRejectedError(R.INVALID_CHAIN, f"a signature with {digest.name} is refused")
        key = cert.public_key()
        if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
            raise SvidRejectedError(R.INVALID_CHAIN, f"an RSA key of {key.key_size} bits")
        if isinstance(key, rsa.RSAPublicKey) and has_roca_fingerprint(key.public_numbers().n):
            raise SvidRejectedError(
                R.INVALID_CHAIN, "an RSA key with the ROCA fingerprint (CVE-2017-15361: its "
                "private key can be computed)",
            )  # fmt: skip
        if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name not in _CURVES:
            raise SvidRejectedError(R.INVALID_CHAIN, f"the EC curve {key.curve.name} is refused")
        if not isinstance(
            key,
            rsa.RSAPublicKey | ec.EllipticCurvePublicKey
            | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey,
        ):  # fmt: skip
            raise SvidRejectedError(R.INVALID_CHAIN, f"a {type(key).__name__} is refused")


def check_critical_extensions(path: Sequence[x509.Certificate]) -> None:
    """Refuse a path with a critical extension this verifier does not process."""
    for cert in path:
        for extension in _extensions(cert):
            if extension.critical and extension.oid not in KNOWN_EXTENSIONS:
                raise SvidRejectedError(
                    R.INVALID_CHAIN,
                    f"unknown critical extension {extension.oid.dotted_string} "
                    "(RFC 5280 4.2: a certificate with one must be refused)",
                )


def check_leaf_purpose(leaf: x509.Certificate) -> None:
    """A leaf with extended key usage must allow client authentication."""
    for extension in _extensions(leaf):
        value = extension.value
        if isinstance(value, x509.ExtendedKeyUsage) and not CLIENT_PURPOSES.intersection(value):
            raise SvidRejectedError(
                R.BAD_KEY_USAGE, "the leaf's extended key usage excludes clientAuth"
            )


def _names(cert: x509.Certificate) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    if len(cert.subject):
        names.append(x509.DirectoryName(cert.subject))
    for extension in _extensions(cert):
        if isinstance(extension.value, x509.SubjectAlternativeName):
            names.extend(extension.value)
    return names


def _dns_within(name: str, base: str) -> bool:
    name, base = name.lower().rstrip("."), base.lower().rstrip(".")
    if not base:
        return True
    if base.startswith("."):
        return name.endswith(base)
    return name == base or name.endswith("." + base)


def _host_within(host: str, base: str) -> bool:
    host, base = host.lower().rstrip("."), base.lower().rstrip(".")
    return host.endswith(base) if base.startswith(".") else host == base


def _within(name: x509.GeneralName, subtree: x509.GeneralName) -> bool:
    """Whether ``name`` lies in ``subtree`` (both of the same type)."""
    if isinstance(name, x509.UniformResourceIdentifier):
        host = urlsplit(name.value).hostname
        return host is not None and _host_within(host, str(subtree.value))
    if isinstance(name, x509.DNSName):
        return _dns_within(name.value, str(subtree.value))
    if isinstance(name, x509.RFC822Name):
        base = str(subtree.value).lower()
        if "@" in base:
            return name.value.lower() == base
        domain = name.value.rpartition("@")[2]
        return _host_within(domain, base)
    if isinstance(name, x509.IPAddress) and isinstance(subtree, x509.IPAddress):
        network = subtree.value
        return (
            isinstance(network, ipaddress.IPv4Network | ipaddress.IPv6Network)
            and not isinstance(name.value, ipaddress.IPv4Network | ipaddress.IPv6Network)
            and name.value.version == network.version
            and name.value in network
        )
    if isinstance(name, x509.DirectoryName) and isinstance(subtree, x509.DirectoryName):
        prefix = subtree.value.rdns
        return name.value.rdns[: len(prefix)] == prefix
    return False


def _check_one(
    names: Iterable[x509.GeneralName], constraints: x509.NameConstraints, what: str
) -> None:
    permitted = list(constraints.permitted_subtrees or ())
    excluded = list(constraints.excluded_subtrees or ())
    for subtree in (*permitted, *excluded):
        if not isinstance(subtree, _EVALUATED):
            raise SvidRejectedError(
                R.INVALID_CHAIN, f"a name constraint of type {type(subtree).__name__} "
                "cannot be evaluated",
            )  # fmt: skip
        if (
            isinstance(subtree, x509.UniformResourceIdentifier)
            or (isinstance(subtree, x509.DNSName) and subtree.value)  # "": every DNS name
        ) and not _HOST_CONSTRAINT.fullmatch(subtree.value):
            # e.g. "spiffe://bad.example": an exclusion that would silently match nothing
            raise SvidRejectedError(
                R.INVALID_CHAIN, f"the name constraint {subtree.value!r} is not a host name "
                "(RFC 5280 4.2.1.10) and cannot be evaluated",
            )  # fmt: skip
    for name in names:
        same = [s for s in permitted if type(s) is type(name)]
        if same and not any(_within(name, s) for s in same):
            raise SvidRejectedError(
                R.INVALID_CHAIN, f"the {what}'s name {name.value} is outside the permitted "
                "name constraints of an issuer",
            )  # fmt: skip
        if any(type(s) is type(name) and _within(name, s) for s in excluded):
            raise SvidRejectedError(
                R.INVALID_CHAIN, f"the {what}'s name {name.value} is excluded by the name "
                "constraints of an issuer",
            )  # fmt: skip


def check_name_constraints(path: Sequence[x509.Certificate]) -> None:
    """Apply every CA's name constraints to the certificates below it (leaf first)."""
    for index, ca in enumerate(path[1:], start=1):
        constraints = None
        for extension in _extensions(ca):
            if isinstance(extension.value, x509.NameConstraints):
                constraints = extension.value
        if constraints is None:
            continue
        for below, cert in enumerate(path[:index]):
            if below > 0 and cert.subject == cert.issuer:
                continue  # self-issued intermediates are exempt (RFC 5280 6.1.3 b)
            _check_one(_names(cert), constraints, "leaf" if below == 0 else "intermediate")


def check_chain_rules(path: Sequence[x509.Certificate]) -> None:
    """Every rule of this module, for a path leaf first and root last."""
    check_algorithms(path)
    check_critical_extensions(path)
    check_leaf_purpose(path[0])
    check_name_constraints(path)


__all__ = [
    "CLIENT_PURPOSES",
    "KNOWN_EXTENSIONS",
    "MIN_RSA_BITS",
    "UNPARSABLE",
    "check_algorithms",
    "check_chain_rules",
    "check_critical_extensions",
    "check_leaf_purpose",
    "check_name_constraints",
]
