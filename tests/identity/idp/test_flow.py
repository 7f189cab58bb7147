"""The whole authorization code flow over real HTTP, verified by verity's TokenVerifier."""

from __future__ import annotations

import base64

import pytest

from verity.identity import IssuerConfig, TokenVerifier, WrongTokenTypeError

from .conftest import CLIENT_SECRET, CONFIDENTIAL, PUBLIC, Idp, Login, query_of


def verifier(idp: Idp, audience: str, *, expected_typ: str | None = None) -> TokenVerifier:
    config = IssuerConfig(
        issuer=idp.issuer, audiences=(audience,), algorithms=("ES256",), expected_typ=expected_typ
    )
    return TokenVerifier(config, clock=idp.clock)


def test_login_issues_tokens_that_token_verifier_accepts(idp: Idp) -> None:
    idp.add_user("Ada@Example.com", display_name="Ada", groups=("eng",), roles=("admin",))
    login = Login(idp)
    login.authorize()
    redirect = login.password("ada@example.com")
    assert redirect.status_code == 303
    params = query_of(redirect.headers["location"])
    assert redirect.headers["location"].startswith("http://127.0.0.1:9999/callback?")
    assert params["state"] == login.state
    assert params["iss"] == idp.issuer
    response = login.exchange(params["code"])
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"

    access = verifier(idp, PUBLIC, expected_typ="at+jwt").verify(body["access_token"])
    principal = verifier(idp, PUBLIC).principal(access)
    assert principal.email == "ada@example.com"
    assert principal.roles == frozenset({"admin"})
    assert principal.groups == frozenset({"eng"})
    assert principal.mfa is False
    assert access.claims["client_id"] == PUBLIC

    id_token = verifier(idp, PUBLIC).verify(body["id_token"])
    claims = id_token.claims
    assert claims["nonce"] == login.nonce
    assert list(claims["amr"]) == ["pwd"]
    assert claims["acr"] == "urn:verity:acr:pwd"
    assert claims["auth_time"] == int(idp.clock())
    assert claims["sub"] == access.subject
    assert id_token.header["kid"] == access.header["kid"]

    info = idp.client.get(
        "/idp/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert info.status_code == 200
    assert info.json()["email"] == "ada@example.com"


def test_discovery_document_describes_the_provider(idp: Idp) -> None:
    document = idp.client.get("/idp/.well-known/openid-configuration").json()
    assert document["issuer"] == idp.issuer
    assert document["jwks_uri"] == idp.issuer + "/jwks"
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["response_types_supported"] == ["code"]
    keys = idp.client.get("/idp/jwks").json()["keys"]
    assert len(keys) == 1
    assert "d" not in keys[0]


def test_id_token_is_not_accepted_as_access_token(idp: Idp) -> None:
    idp.add_user("bob@example.com")
    login = Login(idp)
    body = login.exchange(login.code("bob@example.com")).json()
    strict = verifier(idp, PUBLIC, expected_typ="at+jwt")
    with pytest.raises(WrongTokenTypeError):
        strict.verify(body["id_token"])
    info = idp.client.get("/idp/userinfo", headers={"Authorization": f"Bearer {body['id_token']}"})
    assert info.status_code == 401


def test_confidential_client_secret_basic_and_post(idp: Idp) -> None:
    idp.add_user("carol@example.com")
    login = Login(idp, client_id=CONFIDENTIAL)
    code = login.code("carol@example.com")
    basic = base64.b64encode(f"{CONFIDENTIAL}:{CLIENT_SECRET}".encode()).decode()
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": login.redirect_uri,
        "code_verifier": login.verifier,
    }
    ok = idp.client.post("/idp/token", data=form, headers={"Authorization": f"Basic {basic}"})
    assert ok.status_code == 200, ok.text
    login2 = Login(idp, client_id=CONFIDENTIAL)
    posted = login2.exchange(login2.code("carol@example.com"), client_secret=CLIENT_SECRET)
    assert posted.status_code == 200


@pytest.mark.parametrize("secret", [None, "x" * 40, CLIENT_SECRET[:-1]])
def test_confidential_client_wrong_or_missing_secret_rejected(idp: Idp, secret: str | None) -> None:
    idp.add_user("dan@example.com")
    login = Login(idp, client_id=CONFIDENTIAL)
    extra = {} if secret is None else {"client_secret": secret}
    response = login.exchange(login.code("dan@example.com"), **extra)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert CLIENT_SECRET not in response.text


def test_public_client_cannot_present_a_secret(idp: Idp) -> None:
    idp.add_user("erin@example.com")
    login = Login(idp)
    response = login.exchange(login.code("erin@example.com"), client_secret="x" * 40)
    assert response.json()["error"] == "invalid_client"
