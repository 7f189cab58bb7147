"""Device posture end to end: a rule needs a managed, encrypted device; the gateway (built
in-process with ``verity serve``'s fact sources over a real SQLite store) finds the device
through the token's verified ``device_id`` claim, never through a request header;
``verity devices register`` and ``report`` (the CLI, in-process) change the outcome
within the cache bound, and each change of posture is one audit event."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from verity.cli.devices import app as devices_app
from verity.cli.serve import fact_sources
from verity.policy import compile_policy, load_policy

from .conftest import Issuer, MakeGateway, bearer, gateway_config
from .test_jit import Node, events_and_verified, open_node

pytestmark = pytest.mark.anyio

POLICY = """
version: 1
rules:
  - name: trusted-laptops
    resources: [{host: app.test}]
    allow: {device: {managed: true, disk_encrypted: true}}
"""
GOOD = {"managed": True, "disk_encrypted": True, "os_type": "macos", "os_version": "14.4"}
BOUND = 2.0 + 1.5  # the fact cache's TTL, and slack for a loaded machine


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    with open_node(tmp_path) as opened:
        yield opened


def cli(node: Node, *args: str, stdin: str | None = None) -> dict[str, Any]:
    result = CliRunner().invoke(
        devices_app, [*args, "--config", str(node.config_path), "--json"], input=stdin
    )
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


async def until(client: httpx.AsyncClient, headers: dict[str, str], status: int) -> float:
    """Seconds until the gateway answers ``status`` (at most BOUND)."""
    started = time.time()
    while time.time() < started + BOUND:
        if (await client.get("/", headers=headers)).status_code == status:
            return time.time() - started
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {status} within {BOUND} s")


async def test_posture_from_the_registry_through_the_verified_claim(
    node: Node, make_gateway: MakeGateway, issuer: Issuer
) -> None:
    gateway = make_gateway(
        config=gateway_config(),
        decider=compile_policy(load_policy(POLICY)),
        audit=node.audit,
        fact_sources=fact_sources(node.stores),
    )
    transport = httpx.ASGITransport(app=gateway, client=("203.0.113.9", 5555))
    with_claim = bearer(issuer.token("alice", device_id="laptop-1")) | {
        "Accept": "application/json"
    }
    # a header naming the device proves nothing: only the signed claim counts
    without = bearer(issuer.token("alice")) | {
        "Accept": "application/json",
        "X-Device-Id": "laptop-1",
        "X-Verity-Device": "laptop-1",
    }
    async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as client:
        denied = await client.get("/", headers=with_claim)
        assert denied.status_code == 403
        cli(node, "register", "laptop-1", "--owner", "alice")
        cli(node, "report", "laptop-1", stdin=json.dumps(GOOD))
        assert await until(client, with_claim, 200) <= BOUND
        assert (await client.get("/", headers=without)).status_code == 403
        worse = cli(node, "report", "laptop-1", stdin=json.dumps(GOOD | {"disk_encrypted": False}))
        assert worse["changed"] == ["disk_encrypted"]
        assert await until(client, with_claim, 403) <= BOUND
        reason = (await client.get("/", headers=with_claim)).json()
        assert "disk" in reason["reason"]

    events, verified = events_and_verified(node)
    assert verified
    changes = [e for e in events if e["unmapped"]["verity"]["kind"] == "device_state_changed"]
    assert [e["unmapped"]["verity"]["detail"]["change"] for e in changes] == [
        "registered",
        "posture",
        "posture",
    ]
    allowed = [
        e
        for e in events
        if e["class_uid"] == 6003
        and e["status_id"] == 1
        and e["unmapped"]["verity"].get("decision")
    ]
    assert allowed
    assert allowed[0]["unmapped"]["verity"]["decision"]["device"]["uid"] == "laptop-1"
