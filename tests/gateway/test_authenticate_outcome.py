"""The policy's ``authenticate`` outcome at the gateway, over a real socket: a caller
who is not signed in gets 401 only when signing in could change the decision; a deny
about the request itself (here: the client network) is a 403, not a sign-in loop."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from verity.model import AccessRequest, Decision, Effect, Obligation, ObligationKind, Reason
from verity.policy import compile_policy, load_policy

from .conftest import Issuer, MakeGateway, bearer, gateway_config
from .servers import ThreadServer

POLICY = """
rules:
  - name: loopback-blocked
    resources: [{host: blocked.test}]
    deny: {ip: [127.0.0.0/8]}
  - name: engineers-app
    resources: [{hosts: [app.test, blocked.test]}]
    allow: {groups: [engineers]}
    hint: ask for the engineers group
"""
ROUTES = [
    {"name": "app", "host": "app.test", "upstream": "http://upstream.test"},
    {"name": "blocked", "host": "blocked.test", "upstream": "http://upstream.test"},
]
Seen = list[tuple[AccessRequest, Decision, str]]


@pytest.fixture
def seen() -> Seen:
    return []


@pytest.fixture
def gateway_url(make_gateway: MakeGateway, seen: Seen) -> Iterator[str]:
    gateway = make_gateway(
        config=gateway_config(routes=ROUTES),
        decider=compile_policy(load_policy(POLICY)),
        listeners=[lambda request, decision, route: seen.append((request, decision, route))],
    )
    with ThreadServer(gateway) as server:
        yield server.url


def _get(url: str, host: str, **headers: str) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=5) as client:
        return client.get("/page", headers={"Host": host, **headers})


def test_unauthenticated_request_denied_by_a_rule_is_401_authentication_required(
    gateway_url: str, seen: Seen
) -> None:
    response = _get(gateway_url, "app.test")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"] == "unauthenticated"
    (_request, decision, _route) = seen[-1]
    assert response.json()["decision_id"] == decision.decision_id
    assert decision.requires_authentication
    assert decision.reasons[0].code == "authentication_required"
    assert "requires group" not in decision.reason


def test_unauthenticated_request_denied_for_its_network_is_403_not_sent_to_sign_in(
    gateway_url: str, seen: Seen
) -> None:
    response = _get(gateway_url, "blocked.test")
    assert response.status_code == 403
    assert "www-authenticate" not in response.headers
    assert response.json()["error"] == "access_denied"
    assert seen[-1][1].rule == "loopback-blocked"


def test_signed_in_request_denied_by_a_rule_is_403_with_the_rule_reason(
    gateway_url: str, issuer: Issuer, seen: Seen
) -> None:
    response = _get(gateway_url, "app.test", **bearer(issuer.token("bob", ("sales",))))
    assert response.status_code == 403
    body = response.json()
    assert body["reason"] == "This is open to members of the group engineers (you have: sales)."
    assert body["hint"] == "ask for the engineers group"
    assert not seen[-1][1].requires_authentication


class AlwaysAuthenticate:
    """A decider that (wrongly) asks even signed-in callers to authenticate."""

    def decide(self, request: AccessRequest) -> Decision:
        return Decision(
            Effect.DENY, None, "d-1", "v", (Reason("authentication_required", "sign in"),),
            (Obligation(ObligationKind.AUTHENTICATE, ""),),
        )  # fmt: skip


def test_signed_in_caller_is_never_sent_to_sign_in_again(
    make_gateway: MakeGateway, issuer: Issuer
) -> None:
    gateway = make_gateway(config=gateway_config(routes=ROUTES), decider=AlwaysAuthenticate())
    with ThreadServer(gateway) as server:
        assert _get(server.url, "app.test", **bearer(issuer.token())).status_code == 403
        assert _get(server.url, "app.test").status_code == 401
