"""The reverse proxy in-process: allow, 401, 403, header hygiene, bad input, fail-closed."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from verity.config import ServerConfig
from verity.gateway import AssertionSigner
from verity.integrations import assertion
from verity.model import AccessRequest, Decision

from .conftest import GATEWAY_URL, Issuer, MakeGateway, RecordingUpstream, bearer, gateway_config

pytestmark = pytest.mark.anyio


async def test_allowed_request_reaches_upstream_with_identity(
    client: httpx.AsyncClient, issuer: Issuer, upstream: RecordingUpstream
) -> None:
    response = await client.post("/api/items?x=1", content=b"hello", headers=bearer(issuer.token()))
    assert response.status_code == 200
    assert response.json() == {"path": "/api/items", "bytes": 5}
    seen = upstream.seen[-1]
    assert (seen.method, seen.query, seen.body) == ("POST", "x=1", b"hello")
    assert seen.header("x-verity-user") == ["alice"]
    assert seen.header("x-verity-email") == ["alice@example.com"]
    assert seen.header("x-verity-groups") == ["engineers"]
    assert len(seen.header("x-verity-assertion")) == 1
    assert seen.header("x-verity-decision-id")[0].startswith("d")
    assert seen.header("x-forwarded-for") == ["203.0.113.9"]
    assert seen.header("x-forwarded-host") == ["app.test"]
    assert seen.header("host") == ["upstream.test"]


async def test_response_headers_pass_except_hop_by_hop(
    client: httpx.AsyncClient, issuer: Issuer
) -> None:
    response = await client.get("/", headers=bearer(issuer.token()))
    assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert "x-hop" not in response.headers
    assert "connection" not in response.headers


@pytest.mark.parametrize(
    "name",
    ["X-Verity-User", "x-verity-user", "X-VERITY-USER", "X_Verity_User", "X-Verity-Assertion",
     "X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups", "X-Auth-Request-User",
     "Remote-User", "Remote_User", "X-Remote-User", "X-Forwarded-Client-Cert",
     "X-Goog-Authenticated-User-Email", "X-Amzn-Oidc-Identity", "X-Pomerium-Claim-Email"],
)  # fmt: skip
async def test_client_supplied_x_verity_user_never_reaches_upstream(
    client: httpx.AsyncClient, issuer: Issuer, upstream: RecordingUpstream, name: str
) -> None:
    await client.get("/", headers={**bearer(issuer.token()), name: "mallory"})
    seen = upstream.seen[-1]
    assert all(v != "mallory" for _, v in seen.headers), seen.headers
    assert seen.header("x-verity-user") == ["alice"]


async def test_spoofed_identity_headers_on_public_route_are_stripped_too(
    client: httpx.AsyncClient, upstream: RecordingUpstream
) -> None:
    response = await client.get("/public/page", headers={"X-Verity-User": "admin"})
    assert response.status_code == 200
    assert not upstream.seen[-1].header("x-verity-user")


async def test_hop_by_hop_and_connection_named_headers_are_removed(
    client: httpx.AsyncClient, issuer: Issuer, upstream: RecordingUpstream
) -> None:
    headers = {**bearer(issuer.token()), "Connection": "keep-alive, X-Secret-Hop",
               "X-Secret-Hop": "1", "Keep-Alive": "timeout=5", "TE": "trailers",
               "Proxy-Authorization": "Basic eDp5", "Proxy-Connection": "keep-alive",
               "Upgrade": "h2c", "Forwarded": "for=1.2.3.4", "X-Real-IP": "1.2.3.4"}  # fmt: skip
    await client.get("/", headers=headers)
    names = {k for k, _ in upstream.seen[-1].headers}
    for hop in ("x-secret-hop", "keep-alive", "te", "proxy-authorization", "proxy-connection",
                "upgrade", "forwarded", "x-real-ip"):  # fmt: skip
        assert hop not in names


async def test_authorization_is_not_forwarded_by_default(
    client: httpx.AsyncClient, issuer: Issuer, upstream: RecordingUpstream
) -> None:
    await client.get("/", headers=bearer(issuer.token()))
    assert not upstream.seen[-1].header("authorization")


async def test_authorization_is_forwarded_when_the_route_says_so(
    make_gateway: MakeGateway, issuer: Issuer, upstream: RecordingUpstream
) -> None:
    routes = [{"name": "app", "host": "app.test", "upstream": "http://u.test",
               "forward_authorization": True}]  # fmt: skip
    gateway = make_gateway(config=gateway_config(routes=routes))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway)) as c:
        token = issuer.token()
        await c.get("http://app.test/", headers=bearer(token))
    assert upstream.seen[-1].header("authorization") == [f"Bearer {token}"]


async def test_untrusted_peer_x_forwarded_for_is_ignored(
    client: httpx.AsyncClient, issuer: Issuer, upstream: RecordingUpstream
) -> None:
    await client.get("/", headers={**bearer(issuer.token()), "X-Forwarded-For": "10.9.9.9"})
    assert upstream.seen[-1].header("x-forwarded-for") == ["203.0.113.9"]


async def test_trusted_proxy_x_forwarded_for_is_believed(
    make_gateway: MakeGateway, issuer: Issuer, upstream: RecordingUpstream
) -> None:
    transport = httpx.ASGITransport(app=make_gateway(), client=("10.0.0.5", 1234))
    async with httpx.AsyncClient(transport=transport) as c:
        headers = {**bearer(issuer.token()), "X-Forwarded-For": "6.6.6.6, 198.51.100.4"}
        await c.get("http://app.test/", headers=headers)
    assert upstream.seen[-1].header("x-forwarded-for") == ["198.51.100.4, 10.0.0.5"]


async def test_no_token_is_401_with_bearer_challenge(client: httpx.AsyncClient) -> None:
    response = await client.get("/api")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="verity"'
    body = response.json()
    assert body["error"] == "unauthenticated"
    assert body["decision_id"]


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer garbage",
        "Bearer a.b.c",
        "Basic YWxpY2U6cHc=",
        "Bearer",
        "Bearer x y",
        "Bearer \u00e9t\u00e9",
    ],
)
async def test_garbage_tokens_are_401_invalid_token_and_never_reach_upstream(
    client: httpx.AsyncClient, upstream: RecordingUpstream, authorization: str
) -> None:
    response = await client.get("/", headers={"Authorization": authorization.encode()})  # type: ignore[dict-item]
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="verity", error="invalid_token", error_description="')
    assert "garbage" not in response.text
    assert "Traceback" not in response.text
    assert upstream.seen == []


async def test_expired_token_is_401_with_a_short_reason(
    client: httpx.AsyncClient, issuer: Issuer
) -> None:
    token = issuer.token(exp=1_000_000_000)
    response = await client.get("/", headers=bearer(token))
    assert response.status_code == 401
    assert (
        'error_description="The access token has expired."' in response.headers["www-authenticate"]
    )


async def test_denied_api_client_gets_json_403(
    client: httpx.AsyncClient, issuer: Issuer, upstream: RecordingUpstream
) -> None:
    response = await client.get("/", headers=bearer(issuer.token("bob", ("sales",))))
    assert response.status_code == 403
    body = response.json()
    assert body["error"] == "access_denied"
    assert body["decision_id"] == response.headers["x-verity-decision-id"]
    assert "engineers" in body["reason"]
    assert body["hint"] == "ask for the engineers group"
    assert set(body) == {"error", "decision_id", "reason", "hint"}
    assert upstream.seen == []


async def test_denied_browser_gets_an_escaped_html_page(
    client: httpx.AsyncClient, issuer: Issuer
) -> None:
    token = issuer.token("bob", ("<script>alert(1)</script>",))
    headers = {**bearer(token), "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    response = await client.get("/", headers=headers)
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")
    assert "<script>alert(1)" not in response.text
    assert "&lt;script&gt;" in response.text
    assert response.headers["x-verity-decision-id"] in response.text
    assert "ask for the engineers group" in response.text
    assert response.headers["content-security-policy"].startswith("default-src 'none'")


class Exploding:
    def decide(self, request: AccessRequest) -> Decision:
        raise RuntimeError("secret internal detail")


async def test_engine_exception_fails_closed(
    make_gateway: MakeGateway, issuer: Issuer, upstream: RecordingUpstream
) -> None:
    transport = httpx.ASGITransport(app=make_gateway(decider=Exploding()))
    async with httpx.AsyncClient(transport=transport) as c:
        response = await c.get("http://app.test/public/x", headers=bearer(issuer.token()))
    assert response.status_code == 403
    assert response.json()["reason"] == "Access denied: the request could not be evaluated."
    assert "secret internal detail" not in response.text
    assert upstream.seen == []


async def test_identity_exception_fails_closed(
    make_gateway: MakeGateway, issuer: Issuer, upstream: RecordingUpstream, monkeypatch: Any
) -> None:
    async def broken(token: Any) -> Any:
        raise KeyError("boom")

    monkeypatch.setattr(issuer.verifier, "aprincipal", broken)  # what the gateway calls
    transport = httpx.ASGITransport(app=make_gateway())
    async with httpx.AsyncClient(transport=transport) as c:
        response = await c.get("http://app.test/public/x", headers=bearer(issuer.token()))
    assert response.status_code == 403
    assert upstream.seen == []


class FailingFacts:
    async def facts(self, query: Any) -> Any:
        raise ConnectionError("device registry down")


async def test_fact_source_exception_fails_closed(
    make_gateway: MakeGateway, issuer: Issuer, upstream: RecordingUpstream
) -> None:
    transport = httpx.ASGITransport(app=make_gateway(fact_sources=[FailingFacts()]))
    async with httpx.AsyncClient(transport=transport) as c:
        response = await c.get("http://app.test/", headers=bearer(issuer.token()))
    assert response.status_code == 403
    assert upstream.seen == []


async def test_health_readiness_and_jwks(
    client: httpx.AsyncClient, make_gateway: MakeGateway
) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True
    keys = (await client.get("/.well-known/verity/jwks.json")).json()["keys"]
    assert keys[0]["alg"] == "ES256"
    assert "d" not in keys[0]


async def test_xff_spoofing_from_untrusted_peer_cannot_change_policy_ip(
    make_gateway: MakeGateway, issuer: Issuer
) -> None:
    seen: list[AccessRequest] = []

    def listen(request: AccessRequest, decision: Decision, route: str) -> None:
        seen.append(request)

    gateway = make_gateway(listeners=[listen], server=ServerConfig())
    transport = httpx.ASGITransport(app=gateway, client=("203.0.113.9", 1))
    async with httpx.AsyncClient(transport=transport) as c:
        await c.get(
            "http://app.test/", headers={**bearer(issuer.token()), "X-Forwarded-For": "10.0.0.1"}
        )
    assert str(seen[-1].network.ip) == "203.0.113.9"


async def test_upstream_set_cookie_is_never_replayed_for_another_user(
    make_gateway: MakeGateway, issuer: Issuer, upstream: RecordingUpstream
) -> None:
    gateway = make_gateway()
    for user in ("alice", "carol"):  # a fresh client each: only the gateway could replay
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway)) as c:
            response = await c.get("http://app.test/", headers=bearer(issuer.token(user)))
            assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert not upstream.seen[-1].header("cookie")


async def test_assertion_for_a_non_ascii_identity_verifies_and_names_this_decision(
    client: httpx.AsyncClient, issuer: Issuer, upstream: RecordingUpstream, signer: AssertionSigner
) -> None:
    token = issuer.token("j\u00f6rg", ("engineers", "\u00e9quipe"))
    for _ in range(2):  # two requests, two decisions: never a reused assertion
        await client.get("/", headers=bearer(token))
    seen = upstream.seen[-2:]
    claims = [
        assertion.verify(
            request.header("x-verity-assertion")[0], issuer=GATEWAY_URL, audience="app",
            jwks=signer.jwks(), method="GET", path="/",
        )
        for request in seen
    ]  # fmt: skip
    assert claims[0].subject == "j\u00f6rg"
    assert claims[0].groups == {"engineers", "\u00e9quipe"}
    assert [c.decision_id for c in claims] == [r.header("x-verity-decision-id")[0] for r in seen]
    assert claims[0].decision_id != claims[1].decision_id
    assert seen[0].header("x-verity-user") == ["j%C3%B6rg"]
