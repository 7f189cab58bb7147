"""The built-in certificate authority: a root (optionally an intermediate) issuing SVIDs.

Key files are written with mode 0600, in a folder created 0700; existing files are never
overwritten. Leaf keys are always EC P-256 (what every TLS stack accepts); the CA key is
EC P-256 or Ed25519. A separate ES256 key signs JWT-SVIDs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from ._certs import CaPrivateKey, ca_certificate, ca_name, leaf_certificate
from .config import CaKeyType, WorkloadConfig
from .errors import CertificateAuthorityError
from .spiffe import SpiffeId
from .svid import X509Svid, cert_pem, private_key_pem, write_private

ROOT_CERT, ROOT_KEY = "root.crt", "root.key"
INTERMEDIATE_CERT, INTERMEDIATE_KEY = "intermediate.crt", "intermediate.key"
JWT_KEY = "jwt.key"
_DEFAULTS = WorkloadConfig()


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


def _new_key(key_type: CaKeyType) -> CaPrivateKey:
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1())


def _load_key(path: Path) -> CaPrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise CertificateAuthorityError(f"{path}: not a usable private key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise CertificateAuthorityError(f"{path}: unsupported key type {type(key).__name__}")
    return key


def _load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise CertificateAuthorityError(f"{path}: not a PEM certificate ({exc})") from None


def _trust_domain_of(cert: x509.Certificate) -> str:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
        return SpiffeId.parse(uris[0]).trust_domain
    except (x509.ExtensionNotFound, IndexError, ValueError):
        raise CertificateAuthorityError("the root certificate has no SPIFFE ID URI SAN") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateAuthority:
    """Issues X.509-SVIDs (and holds the JWT-SVID key) for one trust domain."""

    trust_domain: str
    root: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    signing_key: CaPrivateKey = field(repr=False)
    jwt_key: ec.EllipticCurvePrivateKey = field(repr=False)
    default_ttl: dt.timedelta = dt.timedelta(seconds=_DEFAULTS.default_ttl_seconds)
    max_ttl: dt.timedelta = dt.timedelta(seconds=_DEFAULTS.max_ttl_seconds)
    backdate: dt.timedelta = dt.timedelta(seconds=_DEFAULTS.backdate_seconds)
    root_key: CaPrivateKey | None = field(default=None, repr=False)

    @classmethod
    def create(
        cls,
        *,
        trust_domain: str,
        key_type: CaKeyType = "ec-p256",
        intermediate: bool = False,
        ca_ttl: dt.timedelta = dt.timedelta(days=365),
        now: dt.datetime | None = None,
    ) -> CertificateAuthority:
        """A new root (and, with ``intermediate``, an intermediate that signs the SVIDs)."""
        SpiffeId.for_trust_domain(trust_domain)
        start = (now or utcnow()) - dt.timedelta(minutes=5)
        root_key = _new_key(key_type)
        root_name = ca_name("root")
        root = ca_certificate(
            public_key=root_key.public_key(), subject=root_name, issuer=None,
            issuer_key=root_key, trust_domain=trust_domain, not_before=start,
            not_after=start + ca_ttl, path_length=1 if intermediate else 0,
        )  # fmt: skip
        signing_key: CaPrivateKey = root_key
        chain: tuple[x509.Certificate, ...] = ()
        if intermediate:
            signing_key = _new_key(key_type)
            inter = ca_certificate(
                public_key=signing_key.public_key(), subject=ca_name("intermediate"),
                issuer=root, issuer_key=root_key, trust_domain=trust_domain,
                not_before=start, not_after=start + ca_ttl, path_length=0,
            )  # fmt: skip
            chain = (inter,)
        jwt_key = ec.generate_private_key(ec.SECP256R1())
        return cls(
            trust_domain=trust_domain, root=root, intermediates=chain,
            signing_key=signing_key, jwt_key=jwt_key, root_key=root_key if intermediate else None,
        )  # fmt: skip

    @classmethod
    def load(cls, directory: Path, *, config: WorkloadConfig = _DEFAULTS) -> CertificateAuthority:
        """Load a CA written by ``save``; lifetimes come from ``config``."""
        if not (directory / ROOT_CERT).is_file():
            raise CertificateAuthorityError(
                f"{directory}: no CA here (run `verity identity ca init`)"
            )
        root = _load_cert(directory / ROOT_CERT)
        chain: tuple[x509.Certificate, ...] = ()
        key_file = directory / ROOT_KEY
        if (directory / INTERMEDIATE_CERT).is_file():
            chain = (_load_cert(directory / INTERMEDIATE_CERT),)
            key_file = directory / INTERMEDIATE_KEY
        jwt_key = _load_key(directory / JWT_KEY)
        if not isinstance(jwt_key, ec.EllipticCurvePrivateKey):
            raise CertificateAuthorityError(f"{directory / JWT_KEY}: must be an EC key")
        return cls(
            trust_domain=_trust_domain_of(root), root=root, intermediates=chain,
            signing_key=_load_key(key_file), jwt_key=jwt_key,
            default_ttl=dt.timedelta(seconds=config.default_ttl_seconds),
            max_ttl=dt.timedelta(seconds=config.max_ttl_seconds),
            backdate=dt.timedelta(seconds=config.backdate_seconds),
        )  # fmt: skip

    def save(self, directory: Path) -> list[Path]:
        """Write certificates, 0600 keys and the trust bundle; refuses to overwrite.

        With an intermediate, the root key (when known) is written too, so that the
        intermediate can be renewed later; keep it offline in production.
        """
        from .bundle import TrustBundle  # noqa: PLC0415 - bundle imports this module's types

        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if (directory / ROOT_CERT).exists():
            raise CertificateAuthorityError(f"{directory}: a CA already exists; not overwritten")
        files: list[tuple[str, bytes, bool]] = [(ROOT_CERT, cert_pem([self.root]), False)]
        if self.intermediates:
            files.append((INTERMEDIATE_CERT, cert_pem(list(self.intermediates)), False))
            files.append((INTERMEDIATE_KEY, private_key_pem(self.signing_key), True))
            if self.root_key is not None:
                files.append((ROOT_KEY, private_key_pem(self.root_key), True))
        else:
            files.append((ROOT_KEY, private_key_pem(self.signing_key), True))
        files.append((JWT_KEY, private_key_pem(self.jwt_key), True))
        bundle = TrustBundle.of_authority(self)
        files.append(("bundle.pem", bundle.to_pem(), False))
        files.append(("bundle.jwks.json", bundle.to_jwks_bytes(), False))
        written = []
        for name, data, secret in files:
            path = directory / name
            if secret:
                write_private(path, data)
            else:
                path.write_bytes(data)
            written.append(path)
        return written

    @property
    def signing_certificate(self) -> x509.Certificate:
        """The certificate whose key signs SVIDs (the intermediate, else the root)."""
        return self.intermediates[0] if self.intermediates else self.root

    def _lifetime(self, ttl: dt.timedelta | None) -> dt.timedelta:
        chosen = self.default_ttl if ttl is None else ttl
        if chosen <= dt.timedelta(0):
            raise CertificateAuthorityError("the SVID lifetime must be positive")
        if chosen > self.max_ttl:
            raise CertificateAuthorityError(
                f"a lifetime of {chosen} exceeds the maximum of {self.max_ttl}"
            )
        return chosen

    def issue_x509_svid(
        self, spiffe_id: SpiffeId | str, *, ttl: dt.timedelta | None = None,
        now: dt.datetime | None = None,
    ) -> X509Svid:  # fmt: skip
        """A new X.509-SVID (fresh P-256 key) for a workload of this trust domain.

        Its lifetime is ``ttl`` (default: ``default_ttl``, at most ``max_ttl``), cut at the
        signing certificate's expiry; not-before is ``backdate`` in the past.
        """
        sid = SpiffeId.parse(spiffe_id) if isinstance(spiffe_id, str) else spiffe_id
        if sid.is_trust_domain or not sid.member_of(self.trust_domain):
            raise CertificateAuthorityError(
                f"{sid} is not a workload of trust domain {self.trust_domain!r}"
            )
        issued = now or utcnow()
        not_after = min(issued + self._lifetime(ttl), self.signing_certificate.not_valid_after_utc)
        if not_after <= issued:
            raise CertificateAuthorityError("the signing certificate has expired")
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = leaf_certificate(
            public_key=key.public_key(), spiffe_id=sid, issuer=self.signing_certificate,
            issuer_key=self.signing_key, not_before=issued - self.backdate, not_after=not_after,
        )  # fmt: skip
        return X509Svid(sid, leaf, self.intermediates, key, issued)
