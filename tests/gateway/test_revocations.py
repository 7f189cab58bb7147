"""Revocation everywhere: ``verity revoke`` on one shared PostgreSQL+Redis store, and two
gateway nodes (each with its own verifier cache and store connections) answer 401."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from urllib.parse import quote

import anyio
import httpx
import pytest
from typer.testing import CliRunner

from verity.cli.revoke import app as revoke_app
from verity.cli.serve import sync_revocations
from verity.cli.signin import SignIn
from verity.config import StoreConfig
from verity.gateway.app import Gateway
from verity.identity import IssuerConfig, TokenVerifier, keyset_from_jwks
from verity.identity.dev import public_jwk
from verity.identity.revocation_sync import RevocationSync, start_revocation_sync
from verity.store import Stores, open_stores

from .conftest import AUDIENCE, ISSUER, Issuer, MakeGateway, bearer

pytestmark = pytest.mark.anyio
BOUND = 5.0  # seconds for a revocation to reach both nodes (it takes milliseconds)


@dataclass
class Node:
    gateway: Gateway
    stores: Stores
    sync: RevocationSync
    client: httpx.AsyncClient


def verifier_for(issuer: Issuer) -> TokenVerifier:
    """A node's own verifier (own cache, own revocation list) for the test issuer."""
    jwks = {"keys": [public_jwk(issuer.key, "ES256", issuer.kid)]}
    config = IssuerConfig(issuer=ISSUER, audiences=[AUDIENCE], algorithms=("ES256",))
    return TokenVerifier(config, keys=keyset_from_jwks(jwks, ("ES256",)))


@pytest.fixture
async def nodes(
    make_gateway: MakeGateway,
    issuer: Issuer,
    postgres_dsn: str,
    pg_schema: str,
    redis_url: str,
    redis_prefix: str,
) -> AsyncIterator[list[Node]]:
    config = StoreConfig(url=postgres_dsn, redis_url=redis_url)
    async with AsyncExitStack() as stack:
        started: list[Node] = []
        for _ in range(2):
            stores = open_stores(config, schema=pg_schema, redis_prefix=redis_prefix)
            stack.callback(stores.close)
            gateway = make_gateway(verifiers=[verifier_for(issuer)])
            sync = sync_revocations(stores, gateway, SignIn())  # as `verity serve` does
            stack.callback(sync.close)
            transport = httpx.ASGITransport(app=gateway, client=("203.0.113.9", 5555))
            client = httpx.AsyncClient(transport=transport, base_url="http://app.test")
            await stack.enter_async_context(client)
            started.append(Node(gateway, stores, sync, client))
        yield started


def store_url(postgres_dsn: str, pg_schema: str) -> str:
    """The shared database as an operator would name it (the schema as a libpq option)."""
    return f"{postgres_dsn}?options={quote(f'-csearch_path={pg_schema}')}"


async def statuses(nodes: list[Node], token: str) -> list[int]:
    return [(await n.client.get("/x", headers=bearer(token))).status_code for n in nodes]


async def test_verity_revoke_subject_reaches_every_gateway_node(
    nodes: list[Node], issuer: Issuer, postgres_dsn: str, pg_schema: str
) -> None:
    alice, bob = issuer.token("alice"), issuer.token("bob")
    for _ in range(2):  # the second round is answered from each node's verified-token cache
        assert await statuses(nodes, alice) == [200, 200]
        assert await statuses(nodes, bob) == [200, 200]
    assert all(n.gateway.enforcer.authenticator.verifiers[ISSUER].cache.stats.hits for n in nodes)

    result = CliRunner().invoke(
        revoke_app,
        ["subject", "alice", "--reason", "laptop stolen", "--url",
         store_url(postgres_dsn, pg_schema), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    started = time.monotonic()
    while (current := await statuses(nodes, alice)) != [401, 401]:
        assert time.monotonic() - started < BOUND, f"still {current} after {BOUND} s"
        await anyio.sleep(0.01)
    took = time.monotonic() - started
    print(f"revocation reached both nodes in {took * 1000:.1f} ms")
    refused = await nodes[0].client.get("/x", headers=bearer(alice))
    assert refused.status_code == 401
    assert "revoked" in refused.text.lower()
    assert await statuses(nodes, bob) == [200, 200]
    # issued within the verifiers' leeway of the revocation: refused (an issuer clock ahead)
    assert await statuses(nodes, issuer.token("alice", iat=int(time.time()) + 2)) == [401, 401]
    leeway = nodes[0].gateway.enforcer.authenticator.verifiers[ISSUER].config.leeway_seconds
    await anyio.sleep(1.05)  # int(now) is then past revoked_at
    later = issuer.token("alice", iat=int(time.time()) + int(leeway))  # after revoked_at + leeway
    assert await statuses(nodes, later) == [200, 200]


async def test_a_node_started_after_the_revocation_refuses_too(
    make_gateway: MakeGateway,
    issuer: Issuer,
    postgres_dsn: str,
    pg_schema: str,
    redis_url: str,
    redis_prefix: str,
) -> None:
    alice = issuer.token("alice", jti="a-1")
    result = CliRunner().invoke(
        revoke_app, ["jti", "a-1", "--for", "10m", "--url", store_url(postgres_dsn, pg_schema)]
    )
    assert result.exit_code == 0, result.output
    config = StoreConfig(url=postgres_dsn, redis_url=redis_url)
    with open_stores(config, schema=pg_schema, redis_prefix=redis_prefix) as stores:
        gateway = make_gateway(verifiers=[verifier_for(issuer)])
        verifiers = list(gateway.enforcer.authenticator.verifiers.values())
        sync = start_revocation_sync(stores, verifiers=verifiers)
        transport = httpx.ASGITransport(app=gateway, client=("203.0.113.9", 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as client:
            assert (await client.get("/x", headers=bearer(alice))).status_code == 401
            other = issuer.token("alice", jti="a-2")
            assert (await client.get("/x", headers=bearer(other))).status_code == 200
        sync.close()
