"""Every answer of the decision endpoints is one audited decision, not only the policy's.

No route (forward-auth 403, proxy 404), a route without an upstream on the proxy, a
malformed or untrusted forward-auth check, headers over the limits and an unexpected
failure: each is counted in ``verity_decisions_total{effect="deny",rule="none"}`` and
written to the real SQLite audit log (read back and verified) with its decision id, no
rule, the reason and the resolved client IP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from verity.config import ServerConfig

from .conftest import Issuer, MakeGateway, bearer
from .test_audit_metrics import AuditedGateway, scrape

pytestmark = pytest.mark.anyio
PROXY = "10.0.0.7"  # inside trusted_proxies (10.0.0.0/8, one hop)
NO_RULE = (("effect", "deny"), ("rule", "none"))


@pytest.fixture
def audited(make_gateway: MakeGateway, tmp_path: Path) -> Iterator[AuditedGateway]:
    gateway = AuditedGateway(make_gateway, tmp_path)
    yield gateway
    gateway.audit.close()


@pytest.fixture
async def nginx(audited: AuditedGateway) -> AsyncIterator[httpx.AsyncClient]:
    """The reverse proxy calling forward-auth from a trusted address."""
    async with audited.client(PROXY) as client:
        yield client


def check(uri: str, host: str = "fa.test", **extra: str) -> dict[str, str]:
    """nginx auth_request headers for a client at 198.51.100.20."""
    return {"Host": host, "X-Original-URI": uri, "X-Original-Method": "GET",
            "X-Forwarded-For": "198.51.100.20", **extra}  # fmt: skip


def decision_of(event: dict[str, Any]) -> dict[str, Any]:
    decision: dict[str, Any] = event["unmapped"]["verity"]["decision"]
    return decision


def only_event(audited: AuditedGateway) -> dict[str, Any]:
    audited.audit.close()
    events = audited.events()
    assert len(events) == 1, events
    assert audited.verify()
    return events[0]


async def test_forward_auth_without_a_route_is_an_audited_deny(
    audited: AuditedGateway, nginx: httpx.AsyncClient, issuer: Issuer
) -> None:
    token = issuer.token()
    response = await nginx.get(
        "/verity/auth", headers={**check("/x?secret=1", host="nowhere.test"), **bearer(token)}
    )
    assert response.status_code == 403
    decision_id = response.headers["x-verity-decision-id"]
    assert response.json()["decision_id"] == decision_id
    samples = await scrape(audited)
    assert samples["verity_decisions_total"][NO_RULE] == 1
    event = only_event(audited)
    decision = decision_of(event)
    assert decision["decision_id"] == decision_id
    assert decision["effect"] == "deny"
    assert decision["rule"] is None
    assert [r["code"] for r in decision["reasons"]] == ["no_route"]
    assert event["status_id"] == 2
    assert event["http_request"]["url"]["hostname"] == "nowhere.test"
    assert event["http_request"]["url"]["path"] == "/x"
    assert event["src_endpoint"]["ip"] == "198.51.100.20"  # resolved through the proxy
    assert event["actor"]["user"]["uid"] == "anonymous"
    assert token not in str(event)
    assert "secret=1" not in str(event)


async def test_proxy_without_a_route_is_an_audited_404(audited: AuditedGateway) -> None:
    async with audited.client("203.0.113.9") as client:
        response = await client.get("http://nowhere.test/some/where")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    samples = await scrape(audited)
    assert samples["verity_decisions_total"][NO_RULE] == 1
    event = only_event(audited)
    decision = decision_of(event)
    assert decision["decision_id"] == response.headers["x-verity-decision-id"]
    assert decision["rule"] is None
    assert [r["code"] for r in decision["reasons"]] == ["no_route"]
    assert event["api"]["operation"] == "GET /some/where"
    assert event["src_endpoint"]["ip"] == "203.0.113.9"


async def test_proxy_to_a_route_without_upstream_is_an_audited_404(
    audited: AuditedGateway,
) -> None:
    async with audited.client() as client:  # fa.test is a forward-auth-only route
        response = await client.post("http://fa.test/api")
    assert response.status_code == 404
    decision = decision_of(only_event(audited))
    assert decision["decision_id"] == response.headers["x-verity-decision-id"]
    assert [r["code"] for r in decision["reasons"]] == ["no_route"]


@pytest.mark.parametrize(
    ("peer", "headers", "status", "code"),
    [
        (PROXY, {"Host": "fa.test", "X-Forwarded-For": "198.51.100.20"}, 400, "bad_request"),
        (PROXY, check("/", **{"X-Original-Method": "TRACE"}), 405, "method_not_allowed"),
        (PROXY, check("/", host="bad host!"), 400, "bad_request"),
        ("203.0.113.9", check("/"), 403, "untrusted_caller"),
        (PROXY, {**check("/"), "X-Big": "x" * 70_000}, 431, "headers_too_large"),
    ],
)  # fmt: skip
async def test_malformed_forward_auth_checks_are_audited(
    audited: AuditedGateway, peer: str, headers: dict[str, str], status: int, code: str
) -> None:
    async with audited.client(peer) as client:
        response = await client.get("/verity/auth", headers=headers)
    assert response.status_code == status
    event = only_event(audited)
    decision = decision_of(event)
    assert decision["decision_id"] == response.headers["x-verity-decision-id"]
    assert decision["rule"] is None
    assert [r["code"] for r in decision["reasons"]] == [code]
    assert event["api"]["operation"] == "forward_auth"
    assert event["resources"] == [{"type": "endpoint", "uid": "/verity/auth"}]
    # the client IP: resolved when the headers could be read, else the socket peer
    expected = "198.51.100.20" if peer == PROXY and status != 431 else peer
    assert event["src_endpoint"]["ip"] == expected
    assert "x" * 100 not in str(event)


async def test_forward_auth_internal_error_fails_closed_and_is_audited(
    audited: AuditedGateway, nginx: httpx.AsyncClient, issuer: Issuer
) -> None:
    class BrokenRoutes:
        def match(self, host: str, path: str) -> None:
            raise RuntimeError("route index corrupted")

    audited.gateway.forward_auth.routes = BrokenRoutes()  # type: ignore[assignment]
    response = await nginx.get("/verity/auth", headers={**check("/"), **bearer(issuer.token())})
    assert response.status_code == 403
    assert "corrupted" not in response.text
    decision = decision_of(only_event(audited))
    assert decision["decision_id"] == response.headers["x-verity-decision-id"]
    assert [r["code"] for r in decision["reasons"]] == ["internal_error"]


async def test_envoy_check_without_a_route_is_audited(
    audited: AuditedGateway, nginx: httpx.AsyncClient
) -> None:
    response = await nginx.get("/verity/ext_authz/private", headers={"Host": "nowhere.test"})
    assert response.status_code == 403
    event = only_event(audited)
    assert event["api"]["operation"] == "GET /private"
    assert decision_of(event)["decision_id"] == response.headers["x-verity-decision-id"]


async def test_routed_decisions_are_still_audited_once(
    audited: AuditedGateway, nginx: httpx.AsyncClient, issuer: Issuer
) -> None:
    allowed = await nginx.get("/verity/auth", headers={**check("/"), **bearer(issuer.token())})
    assert allowed.status_code == 200
    event = only_event(audited)
    assert decision_of(event)["rule"] == "engineers-forward-auth"


async def test_without_an_audit_log_refusals_are_still_counted(
    make_gateway: MakeGateway,
) -> None:
    gateway = make_gateway(server=ServerConfig(trusted_proxies=["10.0.0.0/8"], trusted_hops=1))
    transport = httpx.ASGITransport(app=gateway, client=("127.0.0.1", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://nowhere.test") as c:
        assert (await c.get("/")).status_code == 404
        metrics = await c.get("/metrics")
    assert 'verity_decisions_total{effect="deny",rule="none"} 1.0' in metrics.text
