"""Just-in-time access end to end: a rule needs the grant ``prod-db``; the gateway (built
in-process with ``verity serve``'s fact sources over a real SQLite store) denies with the
hint to request it; ``verity grants request`` and ``approve`` (the CLI, in-process) make
it work within the grant cache's bound; it stops at the grant's end; every step is in the
signed audit log, which verifies."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from verity.audit import AuditLog, Query, load_public_key, open_store, public_key_path, verify
from verity.audit.keys import generate_key
from verity.cli.grants import app as grants_app
from verity.cli.serve import audit_url, fact_sources, open_audit
from verity.config import StoreConfig, VerityConfig, load_config
from verity.policy import compile_policy, load_policy
from verity.store import Stores, apply_migrations, open_stores

from .conftest import Issuer, MakeGateway, bearer, gateway_config

pytestmark = pytest.mark.anyio

POLICY = """
version: 1
rules:
  - name: prod-db-with-jit
    resources: [{host: db.test}]
    allow: {jit: prod-db}
"""
GRANT_SECONDS = 4
CACHE_BOUND = 2.0  # GrantFacts' default TTL, as `verity serve` wires it
SLACK = 1.5  # a loaded CI machine


@dataclass
class Node:
    config_path: Path
    config: VerityConfig
    stores: Stores
    audit: AuditLog

    def cli(self, *args: str) -> dict[str, Any]:
        result = CliRunner().invoke(
            grants_app, [*args, "--config", str(self.config_path), "--json"]
        )
        assert result.exit_code == 0, result.output
        document: dict[str, Any] = json.loads(result.stdout)
        return document


@contextmanager
def open_node(tmp_path: Path) -> Iterator[Node]:
    """A configuration with a SQLite store and a signed audit log, its stores and log."""
    store_url = f"sqlite:///{tmp_path}/verity.db"
    generate_key(tmp_path / "audit.key")
    path = tmp_path / "verity.yaml"
    path.write_text(f"store: {{url: '{store_url}'}}\naudit: {{signing_key: audit.key}}\n")
    apply_migrations(store_url)
    config = load_config(path)
    stores = open_stores(StoreConfig(url=store_url))
    audit = open_audit(config, base=tmp_path)  # the log the CLI writes too
    try:
        yield Node(path, config, stores, audit)
    finally:
        audit.close()
        stores.close()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    with open_node(tmp_path) as opened:
        yield opened


def events_and_verified(node: Node) -> tuple[list[dict[str, Any]], bool]:
    node.audit.close()
    store = open_store(audit_url(node.config, base=node.config_path.parent), create=False)
    try:
        events = [record.event() for record in store.query(Query())]
        key = load_public_key(public_key_path(node.config_path.parent / "audit.key"))
        report = verify(store, key)
        return events, report.ok and report.signatures_checked
    finally:
        store.close()


def squeezed(kinds: list[str]) -> list[str]:
    """Consecutive repeats collapsed: the shape of the story."""
    return [k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k]


@dataclass
class Caller:
    """Alice's client; ``get`` returns (time before, response, time after)."""

    client: httpx.AsyncClient
    headers: dict[str, str]

    async def get(self) -> tuple[float, httpx.Response, float]:
        before = time.time()
        response = await self.client.get("/tables", headers=self.headers)
        return before, response, time.time()

    async def until_allowed(self, deadline: float) -> float | None:
        """The time of the first allowed request before ``deadline`` (denies until then)."""
        while time.time() < deadline:
            before, response, _ = await self.get()
            if response.status_code == 200:
                return before
            assert response.status_code == 403
            await asyncio.sleep(0.1)
        return None

    async def until_denied(self, ends: float) -> tuple[float, httpx.Response]:
        """Use the grant until a deny: every allow started before ``ends``."""
        while True:
            before, response, after = await self.get()
            if response.status_code != 200:
                return after, response
            assert before < ends, "never allowed after the grant's end"
            assert after < ends + SLACK, "denied promptly at the end"
            await asyncio.sleep(0.1)


def check_audit(node: Node, grant_id: str) -> None:
    events, verified = events_and_verified(node)
    assert verified
    kinds = [e["unmapped"]["verity"]["kind"] for e in events]
    outcomes = [
        e["unmapped"]["verity"]["decision"]["effect"] if k == "decision" else k
        for k, e in zip(kinds, events, strict=True)
    ]
    shape = squeezed(outcomes)
    assert shape[:3] == ["deny", "grant_created", "grant_approved"]
    assert shape[-3:] == ["allow", "deny", "grant_expired"]
    assert set(shape[3:-3]) <= {"deny"}, "only denies while the cache still held no grant"
    by_kind = {k: e for k, e in zip(kinds, events, strict=True)}
    assert by_kind["grant_approved"]["actor"]["user"]["uid"] == "bob"
    assert by_kind["grant_approved"]["user"]["uid"] == "alice"
    assert by_kind["grant_expired"]["resources"] == [{"type": "grant", "uid": grant_id}]
    assert by_kind["grant_created"]["unmapped"]["verity"]["detail"]["reason"] == "INC-7 reindex"
    allow = next(e for e in events if e["class_uid"] == 6003 and e["status_id"] == 1)
    assert allow["unmapped"]["verity"]["decision"]["rule"] == "prod-db-with-jit"


async def test_jit_grant_request_approve_use_and_expiry(
    node: Node, make_gateway: MakeGateway, issuer: Issuer
) -> None:
    routes = [{"name": "db", "host": "db.test", "upstream": "http://upstream.test"}]
    gateway = make_gateway(
        config=gateway_config(routes=routes),
        decider=compile_policy(load_policy(POLICY)),
        audit=node.audit,
        fact_sources=fact_sources(node.stores),  # what `verity serve` passes
    )
    transport = httpx.ASGITransport(app=gateway, client=("203.0.113.9", 5555))
    headers = bearer(issuer.token("alice")) | {"Accept": "application/json"}
    async with httpx.AsyncClient(transport=transport, base_url="http://db.test") as client:
        alice = Caller(client, headers)
        _, denied, _ = await alice.get()
        assert denied.status_code == 403
        assert denied.json()["hint"] == "request just-in-time access 'prod-db'"
        assert "an approved just-in-time grant 'prod-db'" in denied.json()["reason"]

        filed = node.cli("request", "prod-db", "--for", f"{GRANT_SECONDS}s",
                         "--reason", "INC-7 reindex", "--principal", "alice")  # fmt: skip
        grant_id = filed["grant"]["id"]
        node.cli("approve", grant_id, "--approver", "bob")
        approved_at = time.time()
        grant = node.stores.grants.get(grant_id)
        assert grant is not None
        assert grant.expires is not None

        allowed_at = await alice.until_allowed(approved_at + CACHE_BOUND + SLACK)
        assert allowed_at is not None, "the approval took effect within the cache bound"
        denied_at, denied = await alice.until_denied(grant.expires)
        assert denied_at >= grant.expires, "denied only once the grant had ended"
        assert denied.status_code == 403
        assert denied.json()["hint"] == "request just-in-time access 'prod-db'"

    swept = node.cli("expire")["expired"]
    assert [g["id"] for g in swept] == [grant_id]
    check_audit(node, grant_id)
