"""/readyz: issuer keys must be usable; a JWKS that cannot be fetched is not ready."""

from __future__ import annotations

import httpx
import pytest

from verity.identity import IssuerConfig, TokenVerifier

from .conftest import MakeGateway
from .servers import free_port

pytestmark = pytest.mark.anyio


async def test_unreachable_jwks_is_not_ready(make_gateway: MakeGateway) -> None:
    config = IssuerConfig(
        issuer="https://idp.down.test", audiences=["verity"], algorithms=("ES256",),
        jwks_uri=f"http://127.0.0.1:{free_port()}/jwks",
        jwks={"timeout_seconds": 1, "refetch_interval_seconds": 0},
    )  # fmt: skip
    gateway = make_gateway(verifiers=[TokenVerifier(config)])
    await gateway.readiness.warm_up()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway)) as client:
        response = await client.get("http://any.test/readyz")
        health = await client.get("http://any.test/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["issuers"]["https://idp.down.test"]["ok"] is False
    assert health.status_code == 200


async def test_websocket_upgrades_are_refused(make_gateway: MakeGateway) -> None:
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    await make_gateway()({"type": "websocket", "path": "/", "headers": []}, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008}]
