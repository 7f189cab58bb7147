"""Refresh-token rotation with reuse detection; signing-key rotation with overlap."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from verity.identity import IssuerConfig, TokenVerifier
from verity.identity.idp import SigningKeyPolicy, TokenLifetimes

from .conftest import CONFIDENTIAL, PUBLIC, Idp, Login


def _refresh(idp: Idp, token: str, client_id: str = PUBLIC) -> httpx.Response:
    return idp.client.post(
        "/idp/token",
        data={"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id},
    )


def test_refresh_rotation_old_token_rejected_and_family_revoked(idp: Idp) -> None:
    idp.add_user("f@example.com")
    login = Login(idp)
    first = login.exchange(login.code("f@example.com")).json()
    rotated = _refresh(idp, first["refresh_token"])
    assert rotated.status_code == 200
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert _refresh(idp, first["refresh_token"]).json()["error"] == "invalid_grant"
    # reuse detected: the legitimate newest token of the family is revoked too
    assert _refresh(idp, second["refresh_token"]).json()["error"] == "invalid_grant"


def test_refresh_token_bound_to_its_client(idp: Idp) -> None:
    idp.add_user("g@example.com")
    login = Login(idp)
    body = login.exchange(login.code("g@example.com")).json()
    stolen = idp.client.post(
        "/idp/token",
        data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
        auth=(CONFIDENTIAL, "s" * 40),
    )
    assert stolen.json()["error"] == "invalid_grant"


@pytest.fixture
def idp_overrides() -> dict[str, Any]:
    return {
        "lifetimes": TokenLifetimes(access_token=3600, id_token=3600),
        "keys": SigningKeyPolicy(publish_before_use_seconds=600),
    }


def _kid(token: str) -> str:
    import jwt

    return str(jwt.get_unverified_header(token)["kid"])


def _jwks_kids(idp: Idp) -> list[str]:
    return [key["kid"] for key in idp.client.get("/idp/jwks").json()["keys"]]


def test_key_rotation_with_overlap(idp: Idp) -> None:
    idp.add_user("k@example.com")
    config = IssuerConfig(issuer=idp.issuer, audiences=(PUBLIC,), algorithms=("ES256",))
    early = TokenVerifier(config, clock=idp.clock)  # caches the JWKS before the rotation
    login = Login(idp)
    old_token = login.exchange(login.code("k@example.com")).json()["access_token"]
    early.verify(old_token)
    old_kid = _kid(old_token)

    new_kid = idp.provider.keys.rotate()
    assert _jwks_kids(idp) == [new_kid, old_kid]  # published before it signs
    login = Login(idp)
    still_old = login.exchange(login.code("k@example.com")).json()["access_token"]
    assert _kid(still_old) == old_kid

    idp.clock.advance(601)
    login = Login(idp)
    new_token = login.exchange(login.code("k@example.com")).json()["access_token"]
    assert _kid(new_token) == new_kid
    fresh = TokenVerifier(config, clock=idp.clock)
    fresh.verify(old_token)  # overlap: the old key still verifies its tokens
    fresh.verify(new_token)
    early.verify(new_token)  # a verifier that cached the JWKS earlier learns the new key
    assert _jwks_kids(idp) == [new_kid, old_kid]

    idp.clock.advance(3600 + 60)  # every token of the old key has expired
    assert _jwks_kids(idp) == [new_kid]


def test_key_rotates_automatically_after_its_age(idp: Idp) -> None:
    first = _jwks_kids(idp)
    idp.clock.advance(30 * 86400 + 1)
    assert len(_jwks_kids(idp)) == 2
    assert _jwks_kids(idp)[1] == first[0]
