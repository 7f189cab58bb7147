"""A route's ``issuers:`` applies to browser sessions as it does to bearer tokens: with two
login providers, a session from the one the route leaves out is refused (403 with a hint,
audited), over real sockets through the gateway."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.identity.oidc.conftest import provider_config
from tests.identity.oidc.fake_idp import FakeIdP
from verity.cli.signin import LOGIN_ROUTES
from verity.config import StoreConfig, parse_config
from verity.errors import ConfigError
from verity.gateway.authn import Authenticator, SessionIssuerNotAcceptedError
from verity.identity.oidc import LoginConfig, LoginService, build_login_app
from verity.model import AccessRequest, Decision, Principal
from verity.policy import compile_policy, load_policy
from verity.store import open_stores

from .conftest import Issuer, MakeGateway, gateway_config
from .servers import ThreadServer

POLICY = """
version: 1
rules:
  - name: engineers
    allow: {groups: [engineers]}
"""


@dataclass
class Stack:
    url: str
    corp: FakeIdP
    partner: FakeIdP
    decisions: list[tuple[AccessRequest, Decision, str]]

    def sign_in(self, client: httpx.Client, provider: str) -> None:
        start = client.get("/verity/login", params={"provider": provider, "rd": "/"})
        assert start.status_code == 302, start.text
        callback = httpx.get(start.headers["location"]).headers["location"]
        assert client.get(callback).status_code == 302


@pytest.fixture
def stack(make_gateway: MakeGateway, issuer: Issuer, tmp_path: Path) -> Iterator[Stack]:
    corp, partner = FakeIdP(), FakeIdP()
    with ThreadServer(corp.app) as corp_server, ThreadServer(partner.app) as partner_server:
        corp.issuer, partner.issuer = corp_server.url, partner_server.url
        providers = (
            provider_config(corp, name="corp"),
            provider_config(partner, name="partner"),
        )
        stores = open_stores(StoreConfig(url=f"sqlite:///{tmp_path}/verity.db"))
        service = LoginService.from_stores(
            LoginConfig(providers=providers, cache_seconds=0), stores
        )
        login_app = build_login_app(service)
        routes: list[dict[str, Any]] = [
            {"name": "corp-only", "host": "*", "path_prefix": "/corp/",
             "upstream": "http://upstream.test", "issuers": [corp.issuer]},
            {"name": "tokens-or-corp", "host": "*", "path_prefix": "/mixed/",
             "upstream": "http://upstream.test", "issuers": [issuer.verifier.config.issuer,
                                                            corp.issuer]},
            {"name": "any", "host": "*", "upstream": "http://upstream.test"},
        ]  # fmt: skip
        decisions: list[tuple[AccessRequest, Decision, str]] = []
        gateway = make_gateway(
            config=gateway_config(routes=routes),
            decider=compile_policy(load_policy(POLICY)),
            login=service,
            mounts=[(f"/verity/{leaf}", login_app) for leaf in LOGIN_ROUTES],
            listeners=[lambda r, d, route: decisions.append((r, d, route))],
        )
        try:
            with ThreadServer(gateway) as server:
                yield Stack(server.url, corp, partner, decisions)
        finally:
            service.close()
            stores.close()


def test_session_from_a_login_provider_the_route_does_not_list_is_refused(stack: Stack) -> None:
    with httpx.Client(base_url=stack.url, headers={"Accept": "text/html"}) as browser:
        stack.sign_in(browser, "partner")
        assert browser.get("/elsewhere").status_code == 200  # a valid session elsewhere
        for path in ("/corp/page", "/mixed/page"):
            refused = browser.get(path)
            assert refused.status_code == 403, (path, refused.status_code)
            assert "identity provider this application does not accept" in refused.text
            assert "sign in with a provider this application accepts" in refused.text
        request, decision, route = stack.decisions[-1]
        assert route == "tokens-or-corp"
        assert decision.reasons[0].code == "session.issuer_not_accepted"
        assert request.principal.id == "alice"  # audited with who it was

        stack.sign_in(browser, "corp")  # the accepted provider: in
        assert browser.get("/corp/page").status_code == 200
        assert browser.get("/mixed/page").status_code == 200


@pytest.mark.anyio
async def test_session_without_a_recorded_issuer_is_refused_on_a_route_with_issuers() -> None:
    async def session(_raw: Any) -> Principal:  # e.g. a session stored before issuers
        return Principal(id="alice", claims={"sub": "alice"})

    authenticator = Authenticator([], sessions=session)
    assert (await authenticator.authenticate([], ())).id == "alice"  # no limit: accepted
    with pytest.raises(SessionIssuerNotAcceptedError):
        await authenticator.authenticate([], ("https://corp.example",))


def test_bearer_tokens_on_a_route_with_issuers_are_unchanged(stack: Stack, issuer: Issuer) -> None:
    token = {"Authorization": f"Bearer {issuer.token()}"}
    with httpx.Client(base_url=stack.url) as api:
        assert api.get("/mixed/page", headers=token).status_code == 200
        assert api.get("/corp/page", headers=token).status_code == 401


def test_unauthenticated_browser_is_sent_to_the_provider_the_route_accepts(stack: Stack) -> None:
    with httpx.Client(base_url=stack.url, headers={"Accept": "text/html"}) as browser:
        corp_only = browser.get("/corp/page")
        anywhere = browser.get("/elsewhere")
    assert corp_only.status_code == anywhere.status_code == 302
    assert "provider=corp" in corp_only.headers["location"]
    assert "provider=" not in anywhere.headers["location"]  # the chooser: either one


def _config_with_route_issuers(*names: str) -> dict[str, Any]:
    return {
        "identity": {"issuers": [{"issuer": "https://tokens.example.com", "audiences": ["v"]}]},
        "login": {"providers": [{"name": "idp", "issuer": "https://access.example.com/idp",
                                 "client_id": "gw", "client_secret": "s" * 32}]},
        "gateway": {"routes": [{"name": "app", "host": "*", "upstream": "http://10.0.0.1",
                                "issuers": list(names)}]},
    }  # fmt: skip


def test_route_issuer_with_a_trailing_slash_is_refused_at_load_naming_the_near_match() -> None:
    """``.../idp/`` is not the embedded IdP's ``.../idp``: no session or token carries it,
    so the route would refuse every caller; the configuration says so instead."""
    accepted = parse_config(
        _config_with_route_issuers("https://access.example.com/idp", "https://tokens.example.com")
    )
    assert accepted.gateway.routes[0].issuers == (
        "https://access.example.com/idp",
        "https://tokens.example.com",
    )
    with pytest.raises(ConfigError) as refused:
        parse_config(_config_with_route_issuers("https://access.example.com/idp/"))
    message = str(refused.value)
    assert "'https://access.example.com/idp/'" in message
    assert "did you mean 'https://access.example.com/idp'" in message
    with pytest.raises(ConfigError, match=r"neither an identity\.issuers entry"):
        parse_config(_config_with_route_issuers("https://elsewhere.example.com"))
