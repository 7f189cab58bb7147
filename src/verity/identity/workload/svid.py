"""An issued X.509-SVID (certificate, intermediates, private key) and its PEM files."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from .spiffe import SpiffeId

SVID_CERT_FILE = "svid.crt"
SVID_KEY_FILE = "svid.key"
BUNDLE_FILE = "bundle.pem"
AnyPrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def cert_pem(certificates: tuple[x509.Certificate, ...] | list[x509.Certificate]) -> bytes:
    """Certificates as concatenated PEM blocks, in order."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def private_key_pem(key: AnyPrivateKey) -> bytes:
    """A private key as unencrypted PKCS#8 PEM (written only to 0600 files)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_private(path: Path, data: bytes, *, overwrite: bool = False) -> None:
    """Write ``data`` to a file readable only by its owner (mode 0600 from creation)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(data)


@dataclass(frozen=True, slots=True)
class X509Svid:
    """A workload's X.509-SVID: leaf certificate, its intermediates and its private key."""

    spiffe_id: SpiffeId
    certificate: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    private_key: AnyPrivateKey = field(repr=False)
    issued_at: dt.datetime

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """The leaf followed by its intermediates (what a TLS peer sends)."""
        return (self.certificate, *self.intermediates)

    @property
    def not_after(self) -> dt.datetime:
        """When the leaf expires (UTC)."""
        return self.certificate.not_valid_after_utc

    @property
    def rotate_at(self) -> dt.datetime:
        """Half-way between issuance and expiry: when a holder should get a new SVID."""
        return self.issued_at + (self.not_after - self.issued_at) / 2

    def chain_pem(self) -> bytes:
        """The chain as PEM (leaf first)."""
        return cert_pem(self.chain)

    def key_pem(self) -> bytes:
        """The private key as PKCS#8 PEM; never log it."""
        return private_key_pem(self.private_key)

    def write(self, directory: Path, *, bundle_pem: bytes | None = None) -> tuple[Path, Path]:
        """Write ``svid.crt`` (chain) and ``svid.key`` (0600), replacing older ones."""
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        cert_path, key_path = directory / SVID_CERT_FILE, directory / SVID_KEY_FILE
        write_private(key_path, self.key_pem(), overwrite=True)
        cert_path.write_bytes(self.chain_pem())
        if bundle_pem is not None:
            (directory / BUNDLE_FILE).write_bytes(bundle_pem)
        return cert_path, key_path
