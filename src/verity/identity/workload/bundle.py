"""Trust bundles: one trust domain's root certificates and JWT-SVID keys.

Read and written as PEM (roots only) or as a SPIFFE bundle (a JWK Set whose X.509 keys
carry ``use: x509-svid`` and one certificate in ``x5c``, and whose JWT keys carry
``use: jwt-svid`` and a ``kid``; SPIFFE Trust Domain and Bundle spec, section 4).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import get_default_algorithms

from ..dev import public_jwk
from ..errors import KeyBindingError, WeakKeyError
from ..keys import BoundKey, KeySet, bind_jwk
from .errors import TrustBundleError
from .spiffe import SpiffeId, trust_domain_problem

if TYPE_CHECKING:
    from .ca import CertificateAuthority

X509_USE, JWT_USE = "x509-svid", "jwt-svid"
_ALGORITHMS = get_default_algorithms()
log = logging.getLogger("verity.identity")


def _key_jwk(public: Any) -> dict[str, Any]:
    if isinstance(public, ec.EllipticCurvePublicKey):
        name = "ES256"
    elif isinstance(public, ed25519.Ed25519PublicKey):
        name = "EdDSA"
    elif isinstance(public, rsa.RSAPublicKey):
        name = "RS256"
    else:
        raise TrustBundleError(f"unsupported root key type {type(public).__name__}")
    jwk: dict[str, Any] = _ALGORITHMS[name].to_jwk(public, as_dict=True)
    return jwk


def _spiffe_domains(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    domains = set()
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        try:
            domains.add(SpiffeId.parse(uri).trust_domain)
        except ValueError:
            continue
    return domains


def _resolve_domain(roots: Sequence[x509.Certificate], given: str | None) -> str:
    if given is not None:
        problem = trust_domain_problem(given)
        if problem is not None:
            raise TrustBundleError(f"trust domain {given!r}: {problem}")
        return given
    found = set().union(*(_spiffe_domains(cert) for cert in roots)) if roots else set()
    if len(found) != 1:
        raise TrustBundleError(
            "cannot tell the bundle's trust domain from its roots; give it explicitly"
        )
    return found.pop()


@dataclass(frozen=True, slots=True)
class TrustBundle:
    """The X.509 roots and JWT-SVID public keys trusted for ``trust_domain``."""

    trust_domain: str
    x509_authorities: tuple[x509.Certificate, ...]
    jwt_authorities: tuple[Mapping[str, Any], ...] = field(default=(), repr=False)
    sequence: int = 0

    @classmethod
    def of_authority(cls, ca: CertificateAuthority) -> TrustBundle:
        """The bundle that trusts what ``ca`` issues."""
        jwk = public_jwk(ca.jwt_key, "ES256")
        jwk["use"] = JWT_USE
        return cls(ca.trust_domain, (ca.root,), (jwk,))

    def to_pem(self) -> bytes:
        """The X.509 roots as PEM."""
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.x509_authorities)

    def to_jwks(self) -> dict[str, Any]:
        """The SPIFFE bundle document (a JWK Set with ``spiffe_sequence``)."""
        keys: list[dict[str, Any]] = []
        for cert in self.x509_authorities:
            der = cert.public_bytes(serialization.Encoding.DER)
            jwk = _key_jwk(cert.public_key())
            jwk.update(use=X509_USE, x5c=[base64.b64encode(der).decode()])
            keys.append(jwk)
        keys.extend(dict(jwk) for jwk in self.jwt_authorities)
        return {"keys": keys, "spiffe_sequence": self.sequence}

    def to_jwks_bytes(self) -> bytes:
        """``to_jwks`` as indented JSON."""
        return json.dumps(self.to_jwks(), indent=2).encode() + b"\n"

    @classmethod
    def from_pem(cls, data: bytes, *, trust_domain: str | None = None) -> TrustBundle:
        """Roots from PEM; the trust domain comes from their URI SAN unless given."""
        try:
            roots = tuple(x509.load_pem_x509_certificates(data))
        except ValueError as exc:
            raise TrustBundleError(f"not PEM certificates: {exc}") from None
        return cls(_resolve_domain(roots, trust_domain), roots)

    @classmethod
    def from_jwks(
        cls, document: Mapping[str, Any], *, trust_domain: str | None = None
    ) -> TrustBundle:
        """A SPIFFE bundle; keys with another ``use`` are ignored, as the spec says."""
        entries = document.get("keys")
        if not isinstance(entries, list):
            raise TrustBundleError("not a SPIFFE bundle (no 'keys' list)")
        roots: list[x509.Certificate] = []
        jwt_keys: list[Mapping[str, Any]] = []
        for entry in entries:
            if not isinstance(entry, Mapping):
                raise TrustBundleError("a bundle entry is not an object")
            if entry.get("use") == X509_USE:
                roots.append(_x5c_certificate(entry))
            elif entry.get("use") == JWT_USE:
                if not isinstance(entry.get("kid"), str) or not entry["kid"]:
                    raise TrustBundleError("a jwt-svid key has no 'kid'")
                jwt_keys.append(dict(entry))
        sequence = document.get("spiffe_sequence", 0)
        seq = sequence if isinstance(sequence, int) and not isinstance(sequence, bool) else 0
        return cls(_resolve_domain(roots, trust_domain), tuple(roots), tuple(jwt_keys), seq)

    @classmethod
    def load(cls, path: Path, *, trust_domain: str | None = None) -> TrustBundle:
        """Read a PEM or SPIFFE-JWKS bundle file (told apart by its first character)."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise TrustBundleError(f"{path}: {exc.strerror or exc}") from None
        if data.lstrip().startswith(b"{"):
            try:
                document = json.loads(data)
            except ValueError as exc:
                raise TrustBundleError(f"{path}: not JSON ({exc})") from None
            if not isinstance(document, dict):
                raise TrustBundleError(f"{path}: not a JSON object")
            return cls.from_jwks(document, trust_domain=trust_domain)
        return cls.from_pem(data, trust_domain=trust_domain)

    def jwt_keyset(self, allowed: Sequence[str]) -> KeySet:
        """The JWT-SVID keys, each bound to one of ``allowed`` (unusable keys are skipped)."""
        bound: list[BoundKey] = []
        for jwk in self.jwt_authorities:
            as_sig = {k: v for k, v in jwk.items() if k != "use"}
            try:
                bound.append(bind_jwk(as_sig, allowed))
            except WeakKeyError as exc:
                log.error("trust bundle JWT key refused: %s", exc)  # noqa: TRY400 - no traceback
            except KeyBindingError:
                continue
        return KeySet(bound)


def _x5c_certificate(entry: Mapping[str, Any]) -> x509.Certificate:
    chain = entry.get("x5c")
    if not isinstance(chain, list) or len(chain) != 1 or not isinstance(chain[0], str):
        raise TrustBundleError("an x509-svid key must carry exactly one certificate in 'x5c'")
    try:
        return x509.load_der_x509_certificate(base64.b64decode(chain[0], validate=True))
    except (binascii.Error, ValueError) as exc:
        raise TrustBundleError(f"an 'x5c' certificate is unreadable: {exc}") from None
