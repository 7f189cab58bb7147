"""Regression tests for authorization-request and code-exchange attack classes."""

from __future__ import annotations

import pytest

from verity.store.records import RevocationKind

from .conftest import CONFIDENTIAL, PUBLIC, REDIRECT, Idp, Login, pkce_pair, query_of


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://evil.example/callback",
        "http://127.0.0.1:9999/callback/",
        "http://127.0.0.1:9999/callback?next=http://evil.example",
        "http://127.0.0.1:9999/callback#x",
        "http://127.0.0.1:9999/CALLBACK",
        "http://127.0.0.1:9999/callback/../evil",
        "http://127.0.0.1:9999@evil.example/callback",
        "//evil.example/callback",
        "",
    ],
)
def test_open_redirect_unregistered_redirect_uri_is_never_redirected(
    idp: Idp, redirect_uri: str
) -> None:
    response = Login(idp, redirect_uri=redirect_uri).authorize()
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "not registered" in response.text


def test_unknown_client_is_never_redirected(idp: Idp) -> None:
    response = Login(idp, client_id="nobody").authorize()
    assert response.status_code == 400
    assert "location" not in response.headers


def test_redirect_uri_registered_with_query_keeps_it(idp: Idp) -> None:
    idp.add_user("q@example.com")
    login = Login(idp, redirect_uri="http://127.0.0.1:9999/cb?x=1")
    login.authorize()
    location = login.password("q@example.com").headers["location"]
    assert location.startswith("http://127.0.0.1:9999/cb?x=1&code=")


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"code_challenge": ""}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": ""}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": "code id_token"}, "unsupported_response_type"),
        ({"scope": "email"}, "invalid_scope"),
        ({"scope": "openid admin"}, "invalid_scope"),
        ({"request_uri": "http://evil.example/r"}, "request_not_supported"),
    ],
)
def test_pkce_required_and_bad_requests_redirect_with_error(
    idp: Idp, extra: dict[str, str], error: str
) -> None:
    login = Login(idp)
    response = login.authorize(**extra)
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?")
    params = query_of(location)
    assert params["error"] == error
    assert params["state"] == login.state
    assert "code" not in params


def test_repeated_parameter_rejected(idp: Idp) -> None:
    _, challenge = pkce_pair()
    url = (
        f"/idp/authorize?response_type=code&client_id={PUBLIC}&redirect_uri={REDIRECT}"
        f"&redirect_uri=http://evil.example/&scope=openid&code_challenge={challenge}"
        "&code_challenge_method=S256"
    )
    response = idp.client.get(url)
    assert response.status_code == 400
    assert "location" not in response.headers


def test_state_and_nonce_round_trip_verbatim(idp: Idp) -> None:
    idp.add_user("s@example.com")
    login = Login(idp, state="a b&c=d/é<>", nonce="n-<>&\"'")
    code = login.code("s@example.com")
    body = login.exchange(code).json()
    import jwt

    claims = jwt.decode(body["id_token"], options={"verify_signature": False})
    assert claims["nonce"] == login.nonce


@pytest.mark.parametrize("verifier", ["", "x" * 43, "short"])
def test_pkce_missing_or_wrong_verifier_rejected_without_burning_the_code(
    idp: Idp, verifier: str
) -> None:
    idp.add_user("p@example.com")
    login = Login(idp)
    code = login.code("p@example.com")
    response = login.exchange(code, verifier=verifier)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    # whoever lacks the verifier cannot burn the code: its rightful client still redeems it
    assert login.exchange(code).status_code == 200
    assert login.exchange(code).json()["error"] == "invalid_grant"  # then it is used


def test_code_reuse_rejected_and_its_tokens_revoked(idp: Idp) -> None:
    idp.add_user("r@example.com")
    login = Login(idp)
    code = login.code("r@example.com")
    first = login.exchange(code).json()
    second = login.exchange(code)
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"
    refresh = idp.client.post(
        "/idp/token",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"],
              "client_id": PUBLIC},
    )  # fmt: skip
    assert refresh.json()["error"] == "invalid_grant"
    import jwt

    jti = jwt.decode(first["access_token"], options={"verify_signature": False})["jti"]
    assert idp.stores.revocations.is_revoked(RevocationKind.JTI, jti)
    info = idp.client.get(
        "/idp/userinfo", headers={"Authorization": f"Bearer {first['access_token']}"}
    )
    assert info.status_code == 401


def test_code_expires_quickly(idp: Idp) -> None:
    idp.add_user("t@example.com")
    login = Login(idp)
    code = login.code("t@example.com")
    idp.clock.advance(61)
    assert login.exchange(code).json()["error"] == "invalid_grant"


def test_code_bound_to_client_and_redirect_uri(idp: Idp) -> None:
    idp.add_user("u@example.com")
    login = Login(idp)
    code = login.code("u@example.com")
    other = login.exchange(code, client_id=CONFIDENTIAL, client_secret="s" * 40)
    assert other.json()["error"] == "invalid_grant"
    login2 = Login(idp)
    code2 = login2.code("u@example.com")
    moved = login2.exchange(code2, redirect_uri="http://127.0.0.1:9999/cb?x=1")
    assert moved.json()["error"] == "invalid_grant"


def test_unknown_grant_type_and_garbage_code(idp: Idp) -> None:
    login = Login(idp)
    assert login.exchange("nonsense").json()["error"] == "invalid_grant"
    password_grant = idp.client.post(
        "/idp/token", data={"grant_type": "password", "client_id": PUBLIC}
    )
    assert password_grant.json()["error"] == "unsupported_grant_type"
