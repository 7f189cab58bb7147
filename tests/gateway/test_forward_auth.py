"""Forward-auth for nginx auth_request, Traefik ForwardAuth and Envoy ext_authz."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.responses import Response

from verity.config import ServerConfig
from verity.gateway import responses
from verity.gateway.enforce import Outcome, Verdict
from verity.gateway.forward_auth import _allowed_response
from verity.integrations import assertion

from .conftest import GATEWAY_URL, Issuer, MakeGateway, bearer, gateway_config

pytestmark = pytest.mark.anyio
PROXY = ("10.0.0.7", 40000)  # inside trusted_proxies


@pytest.fixture
async def proxy_client(make_gateway: MakeGateway) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_gateway(), client=PROXY)
    async with httpx.AsyncClient(transport=transport, base_url="http://verity.internal") as c:
        yield c


def nginx(uri: str, method: str = "GET", host: str = "fa.test") -> dict[str, str]:
    return {"Host": host, "X-Original-URI": uri, "X-Original-Method": method,
            "X-Forwarded-For": "198.51.100.20"}  # fmt: skip


def traefik(uri: str, method: str = "GET", host: str = "fa.test") -> dict[str, str]:
    return {"X-Forwarded-Method": method, "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": host, "X-Forwarded-Uri": uri,
            "X-Forwarded-For": "198.51.100.20"}  # fmt: skip


async def test_nginx_allowed_returns_identity_headers(
    proxy_client: httpx.AsyncClient, issuer: Issuer
) -> None:
    headers = {**nginx("/docs?page=1"), **bearer(issuer.token())}
    response = await proxy_client.get("/verity/auth", headers=headers)
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["x-verity-user"] == "alice"
    assert response.headers["x-verity-groups"] == "engineers"
    assert response.headers["x-verity-decision-id"]
    jwks = (await proxy_client.get("/.well-known/verity/jwks.json")).json()
    claims = assertion.verify(
        response.headers["x-verity-assertion"], issuer=GATEWAY_URL, audience="fa", jwks=jwks,
        method="GET", path="/docs?page=1",  # what nginx then sends the app
    )  # fmt: skip
    assert claims.subject == "alice"


async def test_nginx_denied_is_403_with_decision_id(
    proxy_client: httpx.AsyncClient, issuer: Issuer
) -> None:
    headers = {**nginx("/"), **bearer(issuer.token("bob", ("sales",)))}
    response = await proxy_client.get("/verity/auth", headers=headers)
    assert response.status_code == 403
    assert response.json()["decision_id"] == response.headers["x-verity-decision-id"]
    assert "x-verity-assertion" not in response.headers


async def test_nginx_unauthenticated_is_401(proxy_client: httpx.AsyncClient) -> None:
    response = await proxy_client.get("/verity/auth", headers=nginx("/"))
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_traefik_headers_are_understood(
    proxy_client: httpx.AsyncClient, issuer: Issuer
) -> None:
    allowed = await proxy_client.get(
        "/verity/auth/traefik", headers={**traefik("/x"), **bearer(issuer.token())}
    )
    assert allowed.status_code == 200
    other_host = await proxy_client.get(
        "/verity/auth/traefik",
        headers={**traefik("/x", host="nowhere.test"), **bearer(issuer.token())},
    )
    assert other_host.status_code == 403
    assert other_host.json()["reason"] == "no application is configured at this address"


async def test_envoy_ext_authz_path_prefix(proxy_client: httpx.AsyncClient, issuer: Issuer) -> None:
    headers = {"Host": "fa.test", **bearer(issuer.token())}
    response = await proxy_client.post("/verity/ext_authz/api/v1/items", headers=headers)
    assert response.status_code == 200
    assert response.headers["x-verity-user"] == "alice"
    denied = await proxy_client.get("/verity/ext_authz/", headers={"Host": "fa.test"})
    assert denied.status_code == 401


async def test_forward_auth_decides_the_original_path_decoded_once(
    make_gateway: MakeGateway, issuer: Issuer
) -> None:
    seen = []
    gateway = make_gateway(listeners=[lambda request, decision, route: seen.append(request)])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway, client=PROXY)) as c:
        await c.get(
            "http://v/verity/auth",
            headers={**nginx("/a/%62/c%20d?q=1", "post"), **bearer(issuer.token())},
        )
    assert (seen[-1].http.method, seen[-1].http.path, str(seen[-1].network.ip)) == (
        "POST",
        "/a/b/c d",
        "198.51.100.20",
    )


async def test_forward_auth_refuses_callers_that_are_not_the_proxy(
    make_gateway: MakeGateway, issuer: Issuer
) -> None:
    transport = httpx.ASGITransport(app=make_gateway(), client=("203.0.113.9", 1))
    async with httpx.AsyncClient(transport=transport) as c:
        response = await c.get(
            "http://v/verity/auth", headers={**nginx("/"), **bearer(issuer.token())}
        )
    assert response.status_code == 403
    assert "x-verity-assertion" not in response.headers


async def test_x_forwarded_host_from_an_untrusted_caller_is_ignored(
    make_gateway: MakeGateway, issuer: Issuer
) -> None:
    config = gateway_config(forward_auth={"require_trusted_caller": False})
    gateway = make_gateway(config=config, server=ServerConfig())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=gateway, client=("203.0.113.9", 1))
    ) as c:
        headers = {**traefik("/x", host="fa.test"), "Host": "app.test", **bearer(issuer.token())}
        response = await c.get("http://app.test/verity/auth/traefik", headers=headers)
        jwks = (await c.get("http://app.test/.well-known/verity/jwks.json")).json()
    assert response.status_code == 200
    claims = assertion.verify(
        response.headers["x-verity-assertion"], issuer=GATEWAY_URL, audience="app", jwks=jwks,
        method="GET", path="/x",
    )  # fmt: skip
    assert claims.audience == "app"  # routed by Host, not by the spoofed X-Forwarded-Host


async def test_nginx_check_carrying_a_client_x_forwarded_host_is_decided_for_the_host_nginx_set(
    proxy_client: httpx.AsyncClient, issuer: Issuer
) -> None:
    """nginx's auth_request passes every header the client sent: a configuration that
    forgets ``proxy_set_header X-Forwarded-Host`` must not let the client's copy choose
    the route (review finding). The nginx dialect reads ``Host`` only."""
    headers = {**nginx("/x", host="app.test"), "X-Forwarded-Host": "fa.test",
               **bearer(issuer.token())}  # fmt: skip
    response = await proxy_client.get("/verity/auth", headers=headers)
    assert response.status_code == 200
    jwks = (await proxy_client.get("/.well-known/verity/jwks.json")).json()
    claims = assertion.verify(
        response.headers["x-verity-assertion"], issuer=GATEWAY_URL, audience="app", jwks=jwks,
        method="GET", path="/x",
    )  # fmt: skip
    assert claims.audience == "app"  # the route of Host: app.test, not fa.test


async def test_missing_original_uri_is_400(proxy_client: httpx.AsyncClient) -> None:
    response = await proxy_client.get("/verity/auth", headers={"Host": "fa.test"})
    assert response.status_code == 400


async def test_repeated_original_uri_is_400(proxy_client: httpx.AsyncClient) -> None:
    headers = [("Host", "fa.test"), ("X-Original-URI", "/"), ("X-Original-URI", "/admin")]
    response = await proxy_client.get("/verity/auth", headers=headers)
    assert response.status_code == 400


@pytest.mark.parametrize("uri", ["no-slash", "/\x00", "/%00admin", "/a%0d%0aX: y"])
async def test_malformed_original_uri_is_400(proxy_client: httpx.AsyncClient, uri: str) -> None:
    response = await proxy_client.get("/verity/auth", headers=nginx(uri))
    assert response.status_code == 400


async def test_malformed_original_method_is_400(proxy_client: httpx.AsyncClient) -> None:
    response = await proxy_client.get("/verity/auth", headers=nginx("/", method="G E T"))
    assert response.status_code == 400


def test_allowed_answer_has_the_headers_a_starlette_response_would_build() -> None:
    identity = (("X-Verity-User", "alice"), ("x-verity-groups", "a,b"),
                ("x-verity-assertion", "e.y.j"), ("X-Verity-Decision-Id", "d1-2"))  # fmt: skip
    built = Response(b"", 200, headers=responses.SECURITY_HEADERS)
    for name, value in identity:
        built.headers.append(name, value)
    answer = _allowed_response(Outcome(Verdict.ALLOWED, identity_headers=identity))
    assert (answer.status_code, answer.body) == (200, b"")
    assert answer.raw_headers == built.raw_headers
    assert answer.headers.getlist("x-verity-user") == ["alice"]
