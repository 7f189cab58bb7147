"""The assertion binds the request the upstream receives, so an app behind the gateway
can verify it: through the proxy to an upstream with a base path, and through
forward-auth on routes whose ``path_matching`` changes the path the policy decides
(the upstream then receives the raw target, not the policy's form)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from verity.integrations import assertion

from .conftest import GATEWAY_URL, Issuer, MakeGateway, RecordingUpstream, bearer, gateway_config

pytestmark = pytest.mark.anyio
PROXY = ("10.0.0.7", 40000)  # inside trusted_proxies
ROUTES: list[dict[str, Any]] = [
    {"name": "app", "host": "app.test", "upstream": "http://upstream.test/base/"},
    {"name": "fa", "host": "fa.test", "path_matching": {"case": "insensitive"}},
    {"name": "fa-params", "host": "fa.test", "path_prefix": "/legacy",
     "path_matching": {"parameters": "strip"}},
]  # fmt: skip


@pytest.fixture
async def gateway(make_gateway: MakeGateway) -> AsyncIterator[httpx.AsyncClient]:
    app = make_gateway(config=gateway_config(routes=ROUTES))
    transport = httpx.ASGITransport(app=app, client=PROXY)
    async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as client:
        yield client


async def _verify(
    client: httpx.AsyncClient, token: str, audience: str, method: str, path: str
) -> str:
    jwks = (await client.get("/.well-known/verity/jwks.json")).json()
    return assertion.verify(
        token, issuer=GATEWAY_URL, audience=audience, jwks=jwks, method=method, path=path,
        replay_cache=assertion.MemoryReplayCache(),
    ).subject  # fmt: skip


async def test_an_app_behind_an_upstream_base_path_can_verify_its_assertion(
    gateway: httpx.AsyncClient, issuer: Issuer, upstream: RecordingUpstream
) -> None:
    response = await gateway.get("/docs/page", headers=bearer(issuer.token()))
    assert response.status_code == 200
    seen = upstream.seen[-1]
    assert seen.path == "/base/docs/page"  # what the app's request line says
    token = seen.header("x-verity-assertion")[0]
    assert await _verify(gateway, token, "app", seen.method, seen.path) == "alice"


@pytest.mark.parametrize(
    ("sent", "decided"),
    [("/Docs/Page?x=1", "/docs/page"), ("/legacy/a;jsessionid=1/b", "/legacy/a/b")],
    ids=["case-insensitive", "strip-parameters"],
)
async def test_forward_auth_binds_the_raw_target_the_upstream_receives(
    gateway: httpx.AsyncClient, issuer: Issuer, sent: str, decided: str
) -> None:
    headers = {"Host": "fa.test", "X-Original-URI": sent, "X-Original-Method": "GET",
               **bearer(issuer.token())}  # fmt: skip
    response = await gateway.get("/verity/auth", headers=headers)
    assert response.status_code == 200
    token = response.headers["x-verity-assertion"]
    audience = "fa-params" if sent.startswith("/legacy") else "fa"
    # nginx forwards the raw target: that is what the app verifies against ...
    assert await _verify(gateway, token, audience, "GET", sent) == "alice"
    # ... and the assertion is still bound to it: not another path, not another method
    with pytest.raises(assertion.AssertionBindingError):
        await _verify(gateway, token, audience, "GET", "/other")
    with pytest.raises(assertion.AssertionBindingError):
        await _verify(gateway, token, audience, "DELETE", sent)
