"""Regression tests: codes and refresh tokens presented through another client, and what
reuse detection revokes (the refresh family *and* every access token minted from it)."""

from __future__ import annotations

import httpx
import jwt

from verity.store.records import RevocationKind

from .conftest import CLIENT_SECRET, CONFIDENTIAL, PUBLIC, Idp, Login


def _refresh(idp: Idp, token: str, client_id: str = PUBLIC, **extra: str) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id}
    return idp.client.post("/idp/token", data={**form, **extra})


def _userinfo(idp: Idp, access_token: str) -> int:
    headers = {"Authorization": f"Bearer {access_token}"}
    return idp.client.get("/idp/userinfo", headers=headers).status_code


def _jti(access_token: str) -> str:
    return str(jwt.decode(access_token, options={"verify_signature": False})["jti"])


def test_refresh_token_presented_through_another_client_is_not_burned(idp: Idp) -> None:
    idp.add_user("burn@example.com")
    login = Login(idp)
    body = login.exchange(login.code("burn@example.com")).json()
    # a thief holding the public client's refresh token tries it through their own client
    stolen = idp.client.post(
        "/idp/token",
        data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
        auth=(CONFIDENTIAL, CLIENT_SECRET),
    )
    assert stolen.status_code == 400
    assert stolen.json()["error"] == "invalid_grant"
    # the token was neither consumed nor taken for reuse: its own client still refreshes
    rotated = _refresh(idp, body["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    assert _userinfo(idp, rotated.json()["access_token"]) == 200
    assert _userinfo(idp, body["access_token"]) == 200


def test_code_presented_through_another_client_is_not_burned(idp: Idp) -> None:
    idp.add_user("codeburn@example.com")
    login = Login(idp)
    code = login.code("codeburn@example.com")
    other = login.exchange(code, client_id=CONFIDENTIAL, client_secret=CLIENT_SECRET)
    assert other.json()["error"] == "invalid_grant"
    moved = login.exchange(code, redirect_uri="http://127.0.0.1:9999/cb?x=1")
    assert moved.json()["error"] == "invalid_grant"
    response = login.exchange(code)  # the rightful client, redirect_uri and verifier
    assert response.status_code == 200, response.text
    # and nothing it produced was revoked as "reuse"
    assert _userinfo(idp, response.json()["access_token"]) == 200


def test_refresh_token_reuse_revokes_access_tokens_minted_from_the_family(idp: Idp) -> None:
    idp.add_user("reuse@example.com")
    login = Login(idp)
    first = login.exchange(login.code("reuse@example.com")).json()
    second = _refresh(idp, first["refresh_token"]).json()
    third = _refresh(idp, second["refresh_token"]).json()
    for body in (first, second, third):
        assert _userinfo(idp, body["access_token"]) == 200
    # an attacker replays the stolen first refresh token: reuse detected
    assert _refresh(idp, first["refresh_token"]).json()["error"] == "invalid_grant"
    for body in (first, second, third):  # every access token of the family stops
        assert idp.stores.revocations.is_revoked(RevocationKind.JTI, _jti(body["access_token"]))
        assert _userinfo(idp, body["access_token"]) == 401
    assert _refresh(idp, third["refresh_token"]).json()["error"] == "invalid_grant"


def test_code_reuse_revokes_access_tokens_of_later_refreshes_too(idp: Idp) -> None:
    idp.add_user("coderefresh@example.com")
    login = Login(idp)
    code = login.code("coderefresh@example.com")
    first = login.exchange(code).json()
    refreshed = _refresh(idp, first["refresh_token"]).json()
    assert login.exchange(code).json()["error"] == "invalid_grant"  # the code again
    for body in (first, refreshed):
        assert _userinfo(idp, body["access_token"]) == 401
    assert _refresh(idp, refreshed["refresh_token"]).json()["error"] == "invalid_grant"
