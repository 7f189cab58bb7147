"""Verification of a peer's X.509-SVID chain against trust bundles -> SPIFFE ID.

Every failure is an ``SvidRejectedError`` with one ``SvidRejection`` reason. One walk
decides, for every key type (EC, RSA, Ed25519, Ed448): SVID profile, trust domain,
validity windows, signatures, CA constraints (basicConstraints, keyCertSign, path
length, depth), then the RFC 5280 rules of ``_chain_rules``: accepted key and signature
algorithms, unknown critical extensions, name constraints, the leaf's key purpose.
(``cryptography.x509.verification`` used to run as well for EC and RSA chains only: it
refuses EdDSA keys, so Ed25519 chains skipped the rules only it enforced, and it cannot
evaluate the URI name constraints SPIFFE CAs use. Its rules are now this walk's own.)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from ...model import Principal, PrincipalKind
from ._chain_rules import CLIENT_PURPOSES, UNPARSABLE, check_chain_rules
from .bundle import TrustBundle
from .errors import InvalidSpiffeIdError, SvidRejectedError
from .errors import SvidRejection as R
from .spiffe import SpiffeId

MAX_CHAIN_DEPTH = 8


@dataclass(frozen=True, slots=True)
class VerifiedX509Svid:
    """A verified X.509-SVID: the workload's SPIFFE ID and the path to a trusted root."""

    spiffe_id: SpiffeId
    certificate: x509.Certificate
    path: tuple[x509.Certificate, ...]

    @property
    def not_before(self) -> dt.datetime:
        return self.certificate.not_valid_before_utc

    @property
    def not_after(self) -> dt.datetime:
        return self.certificate.not_valid_after_utc


def load_chain_pem(untrusted: bytes) -> list[x509.Certificate]:
    """Parse PEM certificates (leaf first); raises ``SvidRejectedError`` (malformed)."""
    try:
        chain = x509.load_pem_x509_certificates(untrusted)
    except ValueError as exc:
        raise SvidRejectedError(R.MALFORMED, f"not PEM certificates: {exc}") from None
    return chain


def _extension(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> object | None:
    found = _found(cert, kind)
    return found.value if found is not None else None


def _found(
    cert: x509.Certificate, kind: type[x509.ExtensionType]
) -> x509.Extension[x509.ExtensionType] | None:
    try:
        return cert.extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return None
    except UNPARSABLE as exc:  # a duplicate extension is malformed, not a crash
        raise SvidRejectedError(R.MALFORMED, f"unparsable extension: {exc}") from None


def spiffe_id_of_leaf(cert: x509.Certificate) -> SpiffeId:
    """The one SPIFFE ID of a leaf SVID after the profile checks of X.509-SVID section 4."""
    constraints = _extension(cert, x509.BasicConstraints)
    if isinstance(constraints, x509.BasicConstraints) and constraints.ca:
        raise SvidRejectedError(R.CA_AS_LEAF, "a CA certificate (CA=true) is used as a leaf")
    usage = _extension(cert, x509.KeyUsage)
    if isinstance(usage, x509.KeyUsage) and (usage.key_cert_sign or usage.crl_sign):
        raise SvidRejectedError(R.CA_AS_LEAF, "the leaf has keyCertSign or cRLSign key usage")
    if not isinstance(usage, x509.KeyUsage) or not usage.digital_signature:
        raise SvidRejectedError(R.BAD_KEY_USAGE, "the leaf lacks the digitalSignature key usage")
    san = _extension(cert, x509.SubjectAlternativeName)
    uris = (
        san.get_values_for_type(x509.UniformResourceIdentifier)
        if isinstance(san, x509.SubjectAlternativeName)
        else []
    )
    if not uris:
        raise SvidRejectedError(R.NO_URI_SAN, "the leaf has no URI SAN")
    if len(uris) > 1:
        raise SvidRejectedError(R.MULTIPLE_URI_SANS, f"the leaf has {len(uris)} URI SANs, not 1")
    try:
        sid = SpiffeId.parse(uris[0])
    except InvalidSpiffeIdError as exc:
        raise SvidRejectedError(R.NOT_SPIFFE, exc.args[0]) from None
    if sid.is_trust_domain:
        raise SvidRejectedError(R.NOT_SPIFFE, f"{sid} names a trust domain, not a workload")
    return sid


def check_validity(cert: x509.Certificate, what: str, now: dt.datetime) -> None:
    """Raise ``EXPIRED`` / ``NOT_YET_VALID`` when ``now`` is outside ``cert``'s window."""
    if now < cert.not_valid_before_utc:
        raise SvidRejectedError(
            R.NOT_YET_VALID, f"the {what} is not valid before {cert.not_valid_before_utc:%c} UTC"
        )
    if now > cert.not_valid_after_utc:
        raise SvidRejectedError(
            R.EXPIRED, f"the {what} expired at {cert.not_valid_after_utc:%c} UTC"
        )


def _check_ca(cert: x509.Certificate, below: int) -> None:
    """``cert`` may sign certificates, with ``below`` intermediate CAs under it.

    As ``cryptography``'s verifier did (and SPIFFE X.509-SVID 4.1/4.3, RFC 5280
    4.2.1.9): basicConstraints present, critical and CA=true; keyUsage present with
    keyCertSign; an extended key usage, if any, allows clientAuth (or any purpose)."""
    found = _found(cert, x509.BasicConstraints)
    constraints = found.value if found is not None else None
    usage = _extension(cert, x509.KeyUsage)
    if not isinstance(constraints, x509.BasicConstraints) or not constraints.ca:
        raise SvidRejectedError(R.INVALID_CHAIN, "an issuer is not a CA (basicConstraints)")
    if found is None or not found.critical:
        raise SvidRejectedError(R.INVALID_CHAIN, "an issuer's basicConstraints is not critical")
    if not isinstance(usage, x509.KeyUsage) or not usage.key_cert_sign:
        raise SvidRejectedError(R.INVALID_CHAIN, "an issuer lacks the keyCertSign key usage")
    purposes = _extension(cert, x509.ExtendedKeyUsage)
    if isinstance(purposes, x509.ExtendedKeyUsage) and not CLIENT_PURPOSES.intersection(purposes):
        raise SvidRejectedError(
            R.INVALID_CHAIN, "an issuer's extended key usage excludes clientAuth"
        )
    if constraints.path_length is not None and constraints.path_length < below:
        raise SvidRejectedError(R.INVALID_CHAIN, "an issuer's path length constraint is exceeded")


def _key_id(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> bytes | None:
    value = _extension(cert, kind)
    if isinstance(value, x509.AuthorityKeyIdentifier):
        return value.key_identifier
    return value.digest if isinstance(value, x509.SubjectKeyIdentifier) else None


def _issuer_among(
    cert: x509.Certificate, candidates: Iterable[x509.Certificate]
) -> x509.Certificate | None:
    """The candidate that signed ``cert``; None when none is named as its issuer."""
    wanted = _key_id(cert, x509.AuthorityKeyIdentifier)
    named = [
        c
        for c in candidates
        if c.subject == cert.issuer
        and (wanted is None or _key_id(c, x509.SubjectKeyIdentifier) in (None, wanted))
    ]
    for candidate in named:
        try:
            cert.verify_directly_issued_by(candidate)
        except (InvalidSignature, ValueError, TypeError):
            continue
        return candidate
    if named:
        raise SvidRejectedError(R.BAD_SIGNATURE, "a signature in the chain does not verify")
    return None


def _walk(
    chain: Sequence[x509.Certificate], roots: Sequence[x509.Certificate], now: dt.datetime
) -> list[x509.Certificate]:
    path, pool = [chain[0]], list(chain[1:])
    while len(path) <= MAX_CHAIN_DEPTH:
        current, below = path[-1], len(path) - 1
        root = _issuer_among(current, roots)
        if root is not None:
            _check_ca(root, below)
            check_validity(root, "root certificate", now)
            return [*path, root]
        issuer = _issuer_among(current, pool)
        if issuer is None:
            raise SvidRejectedError(
                R.UNKNOWN_ROOT, "the chain does not lead to a root of the bundle"
            )
        _check_ca(issuer, below)
        check_validity(issuer, "intermediate certificate", now)
        pool.remove(issuer)
        path.append(issuer)
    raise SvidRejectedError(R.INVALID_CHAIN, f"the chain is longer than {MAX_CHAIN_DEPTH}")


def _bundle_for(sid: SpiffeId, bundles: TrustBundle | Iterable[TrustBundle]) -> TrustBundle:
    candidates = (bundles,) if isinstance(bundles, TrustBundle) else tuple(bundles)
    for bundle in candidates:
        if bundle.trust_domain == sid.trust_domain:
            return bundle
    trusted = sorted(b.trust_domain for b in candidates)
    raise SvidRejectedError(
        R.WRONG_TRUST_DOMAIN,
        f"trust domain {sid.trust_domain!r} is not trusted (trusted: {trusted})",
    )


def verify_x509_svid(
    chain: Sequence[x509.Certificate],
    bundles: TrustBundle | Iterable[TrustBundle],
    *,
    now: dt.datetime | None = None,
) -> VerifiedX509Svid:
    """Verify ``chain`` (leaf first, then intermediates in any order) against ``bundles``.

    Raises ``SvidRejectedError`` with the first failed check's reason.
    """
    if not chain:
        raise SvidRejectedError(R.MALFORMED, "no certificate was presented")
    at = now or dt.datetime.now(dt.UTC)
    leaf = chain[0]
    sid = spiffe_id_of_leaf(leaf)
    bundle = _bundle_for(sid, bundles)
    check_validity(leaf, "leaf certificate", at)
    path = _walk(chain, bundle.x509_authorities, at)
    check_chain_rules(path)  # the same rules for every key type
    return VerifiedX509Svid(sid, leaf, tuple(path))


def principal_from_svid(verified: VerifiedX509Svid) -> Principal:
    """The workload as a policy principal (``kind=SERVICE``, ``spiffe_id`` set)."""
    sid = str(verified.spiffe_id)
    return Principal(
        id=sid, kind=PrincipalKind.SERVICE, spiffe_id=sid,
        auth_methods=frozenset({"x509-svid"}),
        claims={"trust_domain": verified.spiffe_id.trust_domain},
    )  # fmt: skip
