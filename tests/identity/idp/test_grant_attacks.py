"""Regression tests: codes and refresh tokens presented through another client, and what
reuse detection revokes (the refresh family *and* every access token minted from it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest

from verity.identity.idp.errors import OAuthError
from verity.identity.idp.state import FlowState, RefreshGrant
from verity.identity.idp.token_endpoint import token_response
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


class _RaceOnPutRefresh:
    """A ``FlowState`` that runs ``hook`` once, just before the next refresh token is
    stored: the moment between a refresh's redemption and its new token's storage."""

    def __init__(self, inner: FlowState, hook: Callable[[], None]) -> None:
        self._inner = inner
        self._hook: Callable[[], None] | None = hook

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def put_refresh(self, token_hash: str, grant: RefreshGrant) -> Any:
        hook, self._hook = self._hook, None
        if hook is not None:
            hook()
        return self._inner.put_refresh(token_hash, grant)


def test_refresh_reuse_racing_the_rotation_leaves_no_usable_access_token(idp: Idp) -> None:
    """The thief and the victim present one refresh token at once (on two nodes): the
    loser's reuse detection revokes the family while the winner is still minting. The
    winner's new access token was not recorded yet, so revoking the family's recorded
    ``jti``s missed it: a 10-minute credential survived reuse detection."""
    idp.add_user("race@example.com")
    login = Login(idp)
    first = login.exchange(login.code("race@example.com")).json()
    form = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    loser: list[str] = []

    def present_again() -> None:  # the other party, while the winner mints
        with pytest.raises(OAuthError) as refused:
            token_response(idp.provider, {**form, "client_id": PUBLIC}, None)
        loser.append(refused.value.error)

    idp.provider.state = _RaceOnPutRefresh(idp.provider.state, present_again)  # type: ignore[assignment]
    winner = _refresh(idp, first["refresh_token"])
    assert loser == ["invalid_grant"]
    assert _userinfo(idp, first["access_token"]) == 401
    if winner.status_code == 200:  # whatever it got must be dead already
        assert _userinfo(idp, winner.json()["access_token"]) == 401, "access token survived"
        assert _refresh(idp, winner.json()["refresh_token"]).status_code == 400
    else:
        assert winner.json()["error"] == "invalid_grant"
