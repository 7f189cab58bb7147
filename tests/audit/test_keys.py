"""Checkpoint keys: created 0600, never overwritten silently, unsafe files refused; the
package facade exports exactly its ``__all__``."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key

from verity import audit
from verity.audit import (
    AuditKeyError,
    CheckpointSigner,
    generate_key,
    load_private_key,
    load_public_key,
    public_key_path,
)
from verity.audit.keys import key_id


def test_generated_key_is_private_and_has_a_public_half(tmp_path: Path) -> None:
    path = tmp_path / "audit.key"
    public = generate_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key_id(load_public_key(public_key_path(path))) == key_id(public)
    assert CheckpointSigner.from_file(path).key_id == key_id(public)
    assert "PRIVATE" not in public_key_path(path).read_text()


def test_existing_key_is_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "audit.key"
    first = generate_key(path)
    with pytest.raises(AuditKeyError, match="exists"):
        generate_key(path)
    assert key_id(load_public_key(public_key_path(path))) == key_id(first)
    assert key_id(generate_key(path, overwrite=True)) != key_id(first)


def test_group_readable_private_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.key"
    generate_key(path)
    os.chmod(path, 0o640)
    with pytest.raises(AuditKeyError, match="too open"):
        load_private_key(path)


def test_non_ed25519_keys_are_refused(tmp_path: Path) -> None:
    ec = generate_private_key(SECP256R1())
    private = tmp_path / "ec.key"
    private.write_bytes(
        ec.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    private.chmod(0o600)
    public = tmp_path / "ec.pub"
    public.write_bytes(
        ec.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(AuditKeyError, match="Ed25519"):
        load_private_key(private)
    with pytest.raises(AuditKeyError, match="Ed25519"):
        load_public_key(public)
    public.write_text("not a key")
    with pytest.raises(AuditKeyError, match="not a PEM"):
        load_public_key(public)


def test_signer_repr_shows_no_key_material(tmp_path: Path) -> None:
    path = tmp_path / "k"
    generate_key(path)
    signer = CheckpointSigner.from_file(path)
    assert repr(signer) == f"CheckpointSigner(key_id={signer.key_id!r})"


def test_facade_all_matches_namespace() -> None:
    public = {name for name in vars(audit) if not name.startswith("_")} - {"annotations"}
    modules = {name for name in public if type(getattr(audit, name)).__name__ == "module"}
    assert set(audit.__all__) == public - modules
