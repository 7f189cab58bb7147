"""Ed25519 checkpoint keys and signed checkpoints.

A checkpoint signs ``(seq, hash, time)`` of the chain head, as the bytes
``b"verity-audit-checkpoint/v1\\n" || seq (8 bytes BE) || hash (32) || time_ms (8 bytes BE)``.
The private key is a PKCS#8 PEM file readable by its owner only (0600; a file readable by
group or others is refused); the public key (``<key>.pub``, SubjectPublicKeyInfo PEM) is
what verifiers need.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import AuditKeyError

_DOMAIN = b"verity-audit-checkpoint/v1\n"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement that record ``seq`` of the log had hash ``hash`` at ``time_ms``."""

    seq: int
    hash: bytes
    time_ms: int
    key_id: str
    signature: bytes


def checkpoint_message(seq: int, digest: bytes, time_ms: int) -> bytes:
    """The exact bytes a checkpoint signature covers."""
    return _DOMAIN + seq.to_bytes(8, "big") + digest + time_ms.to_bytes(8, "big")


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short id of a public key: the first 16 hex digits of SHA-256 of its raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class CheckpointSigner:
    """Signs checkpoints with one Ed25519 private key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(self.public_key)

    @classmethod
    def from_file(cls, path: str | Path) -> CheckpointSigner:
        """A signer for the private key in ``path`` (see ``load_private_key``)."""
        return cls(load_private_key(path))

    def sign(self, seq: int, digest: bytes, time_ms: int | None = None) -> Checkpoint:
        """A checkpoint for record ``seq`` whose hash is ``digest``."""
        when = int(time.time() * 1000) if time_ms is None else time_ms
        signature = self._key.sign(checkpoint_message(seq, digest, when))
        return Checkpoint(seq, digest, when, self.key_id, signature)

    def __repr__(self) -> str:
        return f"CheckpointSigner(key_id={self.key_id!r})"


def verify_checkpoint(checkpoint: Checkpoint, public_key: Ed25519PublicKey) -> bool:
    """True when the checkpoint's signature is valid under ``public_key``."""
    message = checkpoint_message(checkpoint.seq, checkpoint.hash, checkpoint.time_ms)
    try:
        public_key.verify(checkpoint.signature, message)
    except InvalidSignature:
        return False
    return True


def public_key_path(private_path: str | Path) -> Path:
    """Where the public key of ``private_path`` lives: the same name plus ``.pub``."""
    path = Path(private_path)
    return path.with_name(path.name + ".pub")


def generate_key(path: str | Path, *, overwrite: bool = False) -> Ed25519PublicKey:
    """Create a new private key file (mode 0600) and ``<path>.pub``; returns the public key.

    Refuses to replace an existing key unless ``overwrite``: losing the key that signed
    the existing checkpoints would make them unverifiable.
    """
    target = Path(path)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(target, flags, 0o600)
    except FileExistsError:
        raise AuditKeyError("a key exists already (overwrite=True)", path=str(target)) from None
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())
    public = key.public_key()
    public_key_path(target).write_bytes(public_pem(public))
    return public


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    """The SubjectPublicKeyInfo PEM of a public key."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """Load an Ed25519 private key; refuses a file that group or others can read or write."""
    target = Path(path)
    try:
        mode = target.stat().st_mode
        data = target.read_bytes()
    except OSError as exc:
        raise AuditKeyError(f"cannot read the key: {exc.strerror}", path=str(target)) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AuditKeyError(f"mode {mode & 0o777:04o} is too open (use 0600)", path=str(target))
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise AuditKeyError(f"not a PEM private key: {exc}", path=str(target)) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditKeyError("not an Ed25519 key", path=str(target))
    return key


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    """Load an Ed25519 public key (SubjectPublicKeyInfo PEM)."""
    target = Path(path)
    try:
        key = serialization.load_pem_public_key(target.read_bytes())
    except OSError as exc:
        raise AuditKeyError(f"cannot read the key: {exc.strerror}", path=str(target)) from None
    except ValueError as exc:
        raise AuditKeyError(f"not a PEM public key: {exc}", path=str(target)) from None
    if not isinstance(key, Ed25519PublicKey):
        raise AuditKeyError("not an Ed25519 public key", path=str(target))
    return key
