"""Session cookies: flags, signing, fixation, logout, back-channel logout, refresh."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.requests import Request

from verity.identity.oidc import LoginConfig, LoginService
from verity.identity.oidc.app import _require_same_origin
from verity.identity.oidc.errors import LogoutForgeryError
from verity.store import Stores

from .conftest import RP, make_rp, provider_config
from .fake_idp import FakeIdP
from .harness import logout_token


def _set_cookies(response: httpx.Response) -> dict[str, str]:
    return {c.split("=", 1)[0]: c for c in response.headers.get_list("set-cookie")}


def test_session_cookie_flags_on_localhost(rp: RP) -> None:
    start = rp.start()
    tx_cookie = _set_cookies(start)["verity_session_login"]
    done = rp.client.get(rp.authorize(start))
    cookie = _set_cookies(done)["verity_session"]
    for value in (tx_cookie, cookie):
        assert "HttpOnly" in value
        assert "SameSite=Lax" in value
        assert "Path=/" in value
        assert "Secure" not in value  # 127.0.0.1: a browser would drop a Secure cookie
        assert "Domain" not in value


def test_session_cookie_is_secure_and_host_prefixed_outside_localhost(
    idp: FakeIdP, stores: Stores
) -> None:
    config = LoginConfig(providers=(provider_config(idp),), public_url="https://app.example.com")
    service = LoginService.from_stores(config, stores)
    assert service.secure("https://app.example.com")
    assert service.cookie_name("https://app.example.com") == "__Host-verity_session"
    service.close()
    with make_rp(idp, stores, public_url="https://app.example.com") as rp:
        start = rp.start()
    tx = _set_cookies(start)["__Host-verity_session_login"]
    assert "Secure" in tx
    assert "HttpOnly" in tx
    assert "SameSite=Lax" in tx
    query = parse_qs(urlsplit(start.headers["location"]).query)
    assert query["redirect_uri"] == ["https://app.example.com/verity/callback"]


def test_tampered_session_cookie_is_rejected(rp: RP) -> None:
    rp.login()
    cookie = rp.client.cookies["verity_session"]
    assert rp.principal(cookie) is not None
    version, secret, mac = cookie.split(".")
    flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert rp.principal(f"{version}.{flipped}.{mac}") is None
    assert rp.principal(f"{version}.{secret}.{mac[:-2]}xx") is None
    assert rp.principal(f"9.{secret}.{mac}") is None
    assert rp.principal(secret) is None


def test_login_transaction_cookie_is_not_a_session_cookie(rp: RP) -> None:
    """Purpose binding: the signed tx cookie cannot be presented as a session."""
    start = rp.start()
    tx_value = rp.client.cookies["verity_session_login"]
    rp.client.get(rp.authorize(start))
    assert rp.principal(tx_value) is None


def test_session_fixation_pre_login_id_is_never_promoted(rp: RP) -> None:
    attacker = httpx.Client(base_url=rp.url)
    attacker_rp = RP(rp.service, rp.url, attacker, rp.idp)
    attacker_rp.login()
    planted = attacker.cookies["verity_session"]
    rp.client.cookies.set("verity_session", planted)  # fixed onto the victim's browser
    rp.client.cookies.set("verity_session", "1.planted.junk", domain="evil")  # ignored domain
    rp.login()
    fresh = rp.client.cookies.get("verity_session", domain="127.0.0.1")
    assert fresh != planted
    assert rp.principal(fresh) is not None
    assert rp.principal(planted) is None  # the session the browser had was replaced


def test_duplicate_session_cookies_are_rejected(rp: RP) -> None:
    rp.login()
    cookie = rp.client.cookies["verity_session"]
    host = rp.url.split("//")[1].encode()
    header = f"verity_session={cookie}; verity_session={cookie}".encode()
    import asyncio

    assert (
        asyncio.run(rp.service.authenticate_cookie([(b"host", host), (b"cookie", header)])) is None
    )


def test_logout_revokes_and_redirects_to_end_session(rp: RP) -> None:
    rp.login()
    cookie = rp.client.cookies["verity_session"]
    answer = rp.logout()
    assert answer.status_code == 303
    target = urlsplit(answer.headers["location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == f"{rp.idp.issuer}/end_session"
    query = parse_qs(target.query)
    assert query["post_logout_redirect_uri"] == [f"{rp.url}/"]
    assert query["client_id"] == ["verity-rp"]
    assert query["id_token_hint"][0].count(".") == 2
    assert 'verity_session=""' in answer.headers["set-cookie"]
    assert rp.principal(cookie) is None


def test_logout_evicts_the_session_cache_at_once(idp: FakeIdP, stores: Stores) -> None:
    with make_rp(idp, stores, cache_seconds=60) as rp:
        rp.login()
        cookie = rp.client.cookies["verity_session"]
        assert rp.principal(cookie) is not None  # now cached for 60 s
        rp.logout()
        assert rp.principal(cookie) is None


def _backchannel(rp: RP, token: str) -> httpx.Response:
    return rp.client.post("/verity/backchannel-logout", data={"logout_token": token})


def test_backchannel_logout_revokes_the_session(rp: RP) -> None:
    rp.login()
    cookie = rp.client.cookies["verity_session"]
    answer = _backchannel(rp, rp.idp.logout_token())
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    assert rp.principal(cookie) is None
    assert rp.client.get("/app").status_code == 302


@pytest.mark.parametrize(
    ("claims", "keeps"),
    [({"sub": None}, False), ({"sid": None}, False), ({"sid": "other-idp-session"}, True)],
    ids=["sid-only", "sub-only", "other-sid"],
)
def test_backchannel_logout_matches_sid_and_sub(
    rp: RP, claims: dict[str, Any], keeps: bool
) -> None:
    rp.login()
    cookie = rp.client.cookies["verity_session"]
    assert _backchannel(rp, rp.idp.logout_token(**claims)).status_code == 200
    assert (rp.principal(cookie) is not None) is keeps


def test_backchannel_logout_replayed_jti_is_rejected(rp: RP) -> None:
    token = rp.idp.logout_token(sid="no-such-session")
    assert _backchannel(rp, token).status_code == 200
    rp.login()
    replay = rp.idp.logout_token(jti=parse_jti(token))
    assert _backchannel(rp, replay).status_code == 400
    assert _backchannel(rp, token).status_code == 400
    assert rp.principal() is not None


def parse_jti(token: str) -> str:
    import jwt

    return str(jwt.decode(token, options={"verify_signature": False})["jti"])


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": "another-client"},
        {"nonce": "n-1"},
        {"events": None},
        {"events": {"http://example.com/other-event": {}}},
        {"sub": None, "sid": None},
        {"iss": "https://evil.example"},
        {"iat": 1_000_000_000, "exp": 4_000_000_000},
        {"jti": None},
        {"exp": None},
    ],
    ids=["wrong-aud", "with-nonce", "missing-events", "wrong-event", "no-sub-no-sid",
         "other-issuer", "too-old", "no-jti", "no-exp"],
)  # fmt: skip
def test_backchannel_logout_invalid_token_is_rejected(rp: RP, claims: dict[str, Any]) -> None:
    rp.login()
    assert _backchannel(rp, rp.idp.logout_token(**claims)).status_code == 400
    assert rp.principal() is not None


def test_backchannel_logout_wrong_content_type_is_rejected(rp: RP) -> None:
    answer = rp.client.post(
        "/verity/backchannel-logout", json={"logout_token": rp.idp.logout_token()}
    )
    assert answer.status_code == 400


def test_id_token_is_not_accepted_as_logout_token(rp: RP) -> None:
    rp.login()
    id_token = rp.service.sessions.lookup(rp.client.cookies["verity_session"])
    assert id_token is not None
    assert _backchannel(rp, str(id_token[0].data["id_token"])).status_code == 400


@pytest.fixture
def eager_refresh(idp: FakeIdP, stores: Stores) -> Iterator[RP]:
    with make_rp(idp, stores, refresh_margin_seconds=3600) as made:  # always due
        yield made


def test_refresh_renews_tokens_and_claims(eager_refresh: RP) -> None:
    rp = eager_refresh
    rp.login()
    first_refresh = set(rp.idp.refresh_tokens)
    rp.idp.user = {**rp.idp.user, "groups": ["engineers", "oncall"]}
    principal = rp.principal()
    assert principal is not None
    assert principal.groups == {"engineers", "oncall"}
    refresh = rp.idp.token_requests[-1]
    assert refresh["grant_type"] == "refresh_token"
    assert refresh["refresh_token"] in first_refresh  # kept server-side, never in the cookie
    assert refresh["refresh_token"] not in rp.client.cookies["verity_session"]


def test_refresh_rejected_by_provider_revokes_the_session(eager_refresh: RP) -> None:
    rp = eager_refresh
    rp.login()
    rp.idp.refresh_tokens.clear()  # the user was logged out at the IdP
    assert rp.principal() is None
    assert rp.idp.token_errors == ["invalid_grant"]
    rp.idp.refresh_tokens["x"] = "alice"
    assert rp.principal() is None  # revoked, not just refused once


def test_refreshed_id_token_for_another_subject_revokes(eager_refresh: RP) -> None:
    rp = eager_refresh
    rp.login()
    rp.idp.user = {**rp.idp.user, "sub": "mallory"}
    assert rp.principal() is None


def test_cross_site_get_logout_does_not_end_the_session(rp: RP) -> None:
    # an <img src=".../verity/logout"> or a link on another site: GET only asks
    rp.login()
    cookie = rp.client.cookies["verity_session"]
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {}):
        page = rp.client.get("/verity/logout", headers=headers)
        assert page.status_code == 200
        assert "set-cookie" not in page.headers
        assert "<form method='post'" in page.text
        assert page.headers["x-frame-options"] == "DENY"  # the button cannot be clickjacked
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert rp.principal(cookie) is not None


def test_logout_post_without_this_sessions_csrf_token_does_not_end_the_session(rp: RP) -> None:
    rp.login()
    cookie = rp.client.cookies["verity_session"]
    own_token = logout_token(rp.client.get("/verity/logout"))
    with httpx.Client(base_url=rp.url) as attacker:  # the attacker's own session and token
        RP(rp.service, rp.url, attacker, rp.idp).login()
        foreign_token = logout_token(attacker.get("/verity/logout"))
    version, session_id, mac = own_token.split(".")
    forms: list[dict[str, Any]] = [
        {},
        {"csrf": ""},
        {"csrf": foreign_token},
        {"csrf": f"{version}.{session_id}.{mac[:-2]}xx"},
        {"csrf": [own_token, own_token]},  # two values: which one? neither
    ]
    for form in forms:
        refused = rp.client.post("/verity/logout", data=form)
        assert refused.status_code == 403, form
        assert "set-cookie" not in refused.headers
    refused = rp.client.post("/verity/logout", content=f"csrf={own_token}")  # not a form
    assert refused.status_code == 403
    assert rp.principal(cookie) is not None


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # a sibling subdomain is another origin
    ],
)
def test_logout_post_from_a_foreign_origin_does_not_end_the_session_even_with_the_token(
    rp: RP, headers: dict[str, str]
) -> None:
    rp.login()
    cookie = rp.client.cookies["verity_session"]
    token = logout_token(rp.client.get("/verity/logout"))
    refused = rp.client.post("/verity/logout", data={"csrf": token}, headers=headers)
    assert refused.status_code == 403
    assert rp.principal(cookie) is not None
    assert rp.logout().status_code == 303  # from the page itself: signed out
    assert rp.principal(cookie) is None


def _logout_request(origin: str) -> Request:
    headers = [(b"origin", origin.encode())]
    return Request({"type": "http", "method": "POST", "path": "/verity/logout",
                    "headers": headers, "query_string": b""})  # fmt: skip


@pytest.mark.parametrize(
    ("public_url", "origin"),
    [
        ("https://gw.example.com:443", "https://gw.example.com"),
        ("https://GW.example.com", "https://gw.example.com"),
        ("http://gw.example.com:80", "http://gw.example.com"),
        ("https://gw.example.com", "https://gw.example.com:443"),
    ],
)
def test_logout_from_the_gateways_own_origin_is_accepted_however_the_public_url_spells_it(
    public_url: str, origin: str
) -> None:
    _require_same_origin(_logout_request(origin), public_url)  # no LogoutForgeryError


@pytest.mark.parametrize(
    "origin",
    ["https://gw.example.com:8443", "http://gw.example.com", "https://gw.example.com.evil",
     "null", "https://", "https://gw.example.com:99999"],
)  # fmt: skip
def test_logout_from_any_other_origin_is_refused(origin: str) -> None:
    with pytest.raises(LogoutForgeryError):
        _require_same_origin(_logout_request(origin), "https://gw.example.com:443")
