"""Regression tests: scopes decide the released claims, each client's access tokens carry
its own audience, refresh tokens need ``offline_access``, unsupported modes are refused."""

from __future__ import annotations

from typing import Any

import httpx
import jwt
import pytest
from pydantic import SecretStr, ValidationError

from verity.identity import InvalidAudienceError, IssuerConfig, TokenVerifier
from verity.identity.idp import IdpClient, IdpConfig

from .conftest import (
    CLIENT_SECRET,
    CONFIDENTIAL,
    GATEWAY_AUDIENCE,
    PUBLIC,
    REDIRECT,
    Clock,
    Idp,
    Login,
    backend,
    query_of,
    running_idp,
)

USER_CLAIMS = {"email", "email_verified", "name", "groups", "roles"}


def _tokens(idp: Idp, scope: str, *, client_id: str = PUBLIC) -> dict[str, Any]:
    login = Login(idp, client_id=client_id)
    assert login.authorize(scope=scope).status_code == 200
    redirect = login.password("scoped@example.com")
    assert redirect.status_code == 303, redirect.text
    code = query_of(redirect.headers["location"])["code"]
    secret = {"client_secret": CLIENT_SECRET} if client_id == CONFIDENTIAL else {}
    response = login.exchange(code, **secret)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def _userinfo(idp: Idp, access_token: str) -> httpx.Response:
    return idp.client.get("/idp/userinfo", headers={"Authorization": f"Bearer {access_token}"})


@pytest.fixture
def scoped(idp: Idp) -> Idp:
    idp.add_user("scoped@example.com", display_name="Sco", groups=("eng",), roles=("admin",))
    return idp


def test_openid_only_token_carries_no_email_groups_or_roles(scoped: Idp) -> None:
    body = _tokens(scoped, "openid")
    assert body["scope"] == "openid"
    for token in (body["id_token"], body["access_token"]):
        claims = _claims(token)
        assert claims["sub"]
        assert not USER_CLAIMS & set(claims), claims
    info = _userinfo(scoped, body["access_token"])
    assert info.status_code == 200
    assert set(info.json()) == {"sub"}


@pytest.mark.parametrize(
    ("scope", "released"),
    [
        ("openid profile", {"name"}),
        ("openid email", {"email", "email_verified"}),
        ("openid groups", {"groups"}),
        ("openid roles", {"roles"}),
        ("openid email profile groups roles", USER_CLAIMS),
    ],
)
def test_each_scope_releases_only_its_claims(scoped: Idp, scope: str, released: set[str]) -> None:
    body = _tokens(scoped, scope)
    for token in (body["id_token"], body["access_token"]):
        assert USER_CLAIMS & set(_claims(token)) == released
    info = _userinfo(scoped, body["access_token"]).json()
    assert set(info) == released | {"sub"}
    if "roles" in released:
        assert info["roles"] == ["admin"]


def test_public_cli_access_token_is_not_a_gateway_credential(scoped: Idp) -> None:
    gateway = TokenVerifier(
        IssuerConfig(
            issuer=scoped.issuer,
            audiences=(GATEWAY_AUDIENCE,),
            algorithms=("ES256",),
            expected_typ="at+jwt",
        ),
        clock=scoped.clock,
    )
    cli = _tokens(scoped, "openid email")
    assert _claims(cli["access_token"])["aud"] == PUBLIC
    with pytest.raises(InvalidAudienceError):
        gateway.verify(cli["access_token"])
    # the gateway's own login client is configured with the gateway's audience
    webapp = _tokens(scoped, "openid email", client_id=CONFIDENTIAL)
    assert gateway.verify(webapp["access_token"]).subject == _claims(cli["id_token"])["sub"]
    # both are still the provider's own access tokens at /userinfo
    assert _userinfo(scoped, cli["access_token"]).status_code == 200
    assert _userinfo(scoped, webapp["access_token"]).status_code == 200


def test_refresh_token_issued_only_for_offline_access(scoped: Idp) -> None:
    assert "refresh_token" not in _tokens(scoped, "openid email")
    body = _tokens(scoped, "openid email offline_access")
    refreshed = scoped.client.post(
        "/idp/token",
        data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"],
              "client_id": PUBLIC},
    )  # fmt: skip
    assert refreshed.status_code == 200
    assert "refresh_token" in refreshed.json()


def test_refresh_cannot_widen_the_scope_but_may_narrow_it(scoped: Idp) -> None:
    body = _tokens(scoped, "openid email offline_access")

    def refresh(token: str, scope: str) -> httpx.Response:
        form = {"grant_type": "refresh_token", "refresh_token": token, "client_id": PUBLIC}
        return scoped.client.post("/idp/token", data={**form, "scope": scope})

    wider = refresh(body["refresh_token"], "openid email roles offline_access")
    assert wider.json()["error"] == "invalid_scope"
    narrower = refresh(body["refresh_token"], "openid")
    assert narrower.status_code == 200, narrower.text
    assert not USER_CLAIMS & set(_claims(narrower.json()["access_token"]))
    # the new refresh token keeps the whole grant
    again = refresh(narrower.json()["refresh_token"], "openid email")
    assert again.status_code == 200, again.text
    assert _claims(again.json()["access_token"])["email"] == "scoped@example.com"


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"response_mode": "fragment"}, "invalid_request"),
        ({"response_mode": "form_post"}, "invalid_request"),
        ({"prompt": "none"}, "login_required"),
        ({"prompt": "none login"}, "invalid_request"),
    ],
)
def test_unsupported_response_mode_and_prompt_none_are_refused_not_ignored(
    idp: Idp, extra: dict[str, str], error: str
) -> None:
    login = Login(idp)
    response = login.authorize(**extra)
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?")  # the error itself in the query
    params = query_of(location)
    assert params["error"] == error
    assert params["state"] == login.state
    assert Login(idp).authorize(response_mode="query").status_code == 200


def test_discovery_tells_the_truth_about_scopes_modes_and_claims(idp: Idp) -> None:
    document = idp.client.get("/idp/.well-known/openid-configuration").json()
    assert document["response_modes_supported"] == ["query"]
    assert set(document["scopes_supported"]) == {
        "openid", "profile", "email", "groups", "roles", "offline_access"
    }  # fmt: skip
    assert set(document["claims_supported"]) >= USER_CLAIMS
    assert document["request_uri_parameter_supported"] is False
    assert document["claims_parameter_supported"] is False


def test_client_not_allowed_offline_access_gets_no_refresh_tokens(
    request: pytest.FixtureRequest, clock: Clock
) -> None:
    """A client registered without ``offline_access`` cannot ask for it, and a client that
    lost it from its registration cannot refresh the tokens it got before."""
    before = (IdpClient(client_id=PUBLIC, redirect_uris=(REDIRECT,)),)
    after = (IdpClient(client_id=PUBLIC, redirect_uris=(REDIRECT,), scopes=("openid", "email")),)
    with (
        backend(request, "sqlite") as (stores, storage),
        running_idp(stores, storage, clock, {"clients": before}) as old,
        running_idp(stores, storage, clock, {"clients": after}, issuer=old.issuer) as new,
    ):
        old.add_user("scoped@example.com")
        body = _tokens(old, "openid email offline_access")
        refused = new.client.post(
            "/idp/token",
            data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"],
                  "client_id": PUBLIC},
        )  # fmt: skip
        assert refused.json()["error"] == "invalid_grant"
        login = Login(new)
        response = login.authorize(scope="openid email offline_access")
        assert query_of(response.headers["location"])["error"] == "invalid_scope"
        assert "refresh_token" not in _tokens(new, "openid email")


def test_config_refuses_removed_global_audience_and_unknown_scopes() -> None:
    with pytest.raises(ValidationError, match="access_token_audience was removed"):
        IdpConfig.model_validate(
            {"issuer": "https://idp.example.com/idp", "access_token_audience": "verity"}
        )
    with pytest.raises(ValidationError, match="unknown scopes"):
        IdpClient(client_id="x", redirect_uris=(REDIRECT,), scopes=("openid", "admin"))
    client = IdpClient(client_id="gw", client_secret=SecretStr("s" * 40), redirect_uris=(REDIRECT,))
    assert client.token_audiences == ("gw",)  # the safe default: its own id only
