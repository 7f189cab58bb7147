"""Records: secrets stay out of reprs, payloads parse strictly."""

from __future__ import annotations

import pytest

from verity.store import KeyVersion, Revocation, RevocationKind, SessionRecord, token_hash


def test_key_material_never_appears_in_repr() -> None:
    key = KeyVersion("signing", 1, "HS256", 0.0, b"super-secret-material")
    assert "super-secret" not in repr(key)
    assert "super-secret" not in str(key)


def test_revocation_payload_round_trips_and_rejects_garbage() -> None:
    revocation = Revocation(RevocationKind.JTI, "j1", 1.5, 2.5, "stolen")
    assert Revocation.from_json(revocation.to_json()) == revocation
    with pytest.raises((ValueError, KeyError)):
        Revocation.from_json('{"kind": "nope"}')
    with pytest.raises(ValueError, match="not an object"):
        Revocation.from_json("[1, 2]")


def test_token_hash_is_sha256_hex() -> None:
    assert token_hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_facade_all_matches_the_namespace() -> None:
    import inspect

    import verity.store as facade

    public = {
        name
        for name, value in vars(facade).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }
    assert set(facade.__all__) == public


def test_session_data_never_appears_in_repr() -> None:
    record = SessionRecord(
        "s1", "alice", 0.0, 0.0, 60.0,
        data={"refresh_token": "upstream-refresh-secret", "code_verifier": "pkce-secret"},
    )  # fmt: skip
    text = repr(record)
    assert "upstream-refresh-secret" not in text
    assert "pkce-secret" not in text
    assert "alice" in text  # the rest is still there to debug with
