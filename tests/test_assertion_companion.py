"""The companion value of a reused assertion: HMAC'd, compact, checked before parsed."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

import orjson
import pytest

from verity import assertion_companion as companion

KEY = b"s" * 32


def test_round_trip_and_unique_n() -> None:
    values = [companion.make(KEY, jti="j", req="r", did=f"d{i}", iat=10) for i in range(3)]
    payloads = [companion.read(KEY, value) for value in values]
    assert [p["did"] for p in payloads] == ["d0", "d1", "d2"]
    assert len({p["n"] for p in payloads}) == 3
    assert all((p["jti"], p["req"], p["iat"]) == ("j", "r", 10) for p in payloads)


def test_another_key_does_not_verify() -> None:
    value = companion.make(KEY, jti="j", req="r", did="d", iat=1)
    with pytest.raises(companion.CompanionError, match="MAC"):
        companion.read(b"t" * 32, value)


def sealed(payload: object) -> str:
    body = base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=")
    mac = hmac.new(KEY, body, hashlib.sha256).digest()
    return f"{body.decode()}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"jti": "j", "req": "r", "did": "d", "n": "n"},
        {"jti": "j", "req": "r", "did": "d", "n": "n", "iat": "1"},
        {"jti": "j", "req": "r", "did": "d", "n": "n", "iat": True},
        {"jti": 1, "req": "r", "did": "d", "n": "n", "iat": 1},
    ],
    ids=["not-an-object", "no-iat", "iat-string", "iat-bool", "jti-int"],
)
def test_a_well_sealed_payload_of_the_wrong_shape_is_refused(payload: object) -> None:
    with pytest.raises(companion.CompanionError):
        companion.read(KEY, sealed(payload))


def test_load_key_strips_whitespace_and_refuses_short_or_missing_keys(tmp_path: Path) -> None:
    good = tmp_path / "good.key"
    good.write_text("  " + "a" * 64 + "\n")
    assert companion.load_key(good) == b"a" * 64
    short = tmp_path / "short.key"
    short.write_text("secret-but-short\n")
    with pytest.raises(companion.CompanionKeyError) as caught:
        companion.load_key(short)
    assert "secret-but-short" not in str(caught.value)
    with pytest.raises(companion.CompanionKeyError):
        companion.load_key(tmp_path / "missing.key")
