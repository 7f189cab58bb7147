"""Malformed and hostile requests: a clean 4xx that never reaches the upstream."""

from __future__ import annotations

import httpx
import pytest

from .conftest import Issuer, MakeGateway, RecordingUpstream, bearer, gateway_config

pytestmark = pytest.mark.anyio


async def test_dot_segments_cannot_smuggle_a_path_past_the_policy(
    client: httpx.AsyncClient, upstream: RecordingUpstream
) -> None:
    response = await client.get("/public/..%2fadmin")
    assert response.status_code == 400  # ambiguous: refused, neither /public nor /admin
    response = await client.get("/public/%2e%2e/admin")
    assert response.status_code == 400
    assert upstream.seen == []


async def test_upstream_receives_the_canonical_path_the_policy_saw(
    client: httpx.AsyncClient, upstream: RecordingUpstream
) -> None:
    await client.get("/public/%61/b/c%20d")
    assert upstream.seen[-1].path == "/public/a/b/c%20d"


@pytest.mark.parametrize("host", ["", "exa mple", "a/b", "x" * 300, "a..b", "-bad.test"])
async def test_bad_host_is_400(
    client: httpx.AsyncClient, upstream: RecordingUpstream, host: str
) -> None:
    response = await client.get("/public/x", headers={"Host": host})
    assert response.status_code == 400
    assert upstream.seen == []


async def test_oversized_headers_are_431(
    client: httpx.AsyncClient, upstream: RecordingUpstream
) -> None:
    response = await client.get("/public/x", headers={"X-Big": "a" * 40000})
    assert response.status_code == 431
    many = {f"X-H{i}": "1" for i in range(120)}
    assert (await client.get("/public/x", headers=many)).status_code == 431
    assert upstream.seen == []


async def test_invalid_cookies_do_not_break_the_gateway(
    client: httpx.AsyncClient, upstream: RecordingUpstream
) -> None:
    response = await client.get("/api", headers={"Cookie": '=;;"\x7f; a=b=c; \\"'})
    assert response.status_code == 401
    assert upstream.seen == []


async def test_declared_body_over_the_limit_is_413_before_upstream(
    make_gateway: MakeGateway, issuer: Issuer, upstream: RecordingUpstream
) -> None:
    routes = [
        {"name": "app", "host": "app.test", "upstream": "http://u.test", "max_body_bytes": 10}
    ]
    transport = httpx.ASGITransport(app=make_gateway(config=gateway_config(routes=routes)))
    async with httpx.AsyncClient(transport=transport) as c:
        response = await c.post(
            "http://app.test/", content=b"x" * 11, headers=bearer(issuer.token())
        )
    assert response.status_code == 413
    assert upstream.seen == []


@pytest.mark.parametrize("method", ["TRACE", "CONNECT"])
async def test_trace_and_connect_are_refused(client: httpx.AsyncClient, method: str) -> None:
    assert (await client.request(method, "/public/x")).status_code == 405


async def test_unknown_host_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("http://other.test/")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
