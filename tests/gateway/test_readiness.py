"""/readyz: issuer keys must be usable (a JWKS that cannot be fetched is not ready) and the
audit log must take events (failing, stuck or dead writers are not ready, with a reason)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from verity.audit import AuditLog
from verity.audit.sqlite import SQLiteStore
from verity.identity import IssuerConfig, TokenVerifier

from .conftest import Issuer, MakeGateway, bearer
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


# -- the audit log: /readyz is 503 while it does not take events ------------------------
@contextmanager
def sqlite_write_lock(path: Path) -> Iterator[None]:
    """Another connection holds the audit database's write lock (a stuck process)."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("begin immediate")
    try:
        yield
    finally:
        other.execute("rollback")
        other.close()


async def readyz(client: httpx.AsyncClient) -> httpx.Response:
    return await client.get("http://any.test/readyz")


async def ready_becomes(client: httpx.AsyncClient, status: int, within: float = 5.0) -> Any:
    """Poll /readyz until it answers ``status``; its ``checks.audit``."""
    deadline = time.monotonic() + within
    while (response := await readyz(client)).status_code != status:
        assert time.monotonic() < deadline, response.text
        await asyncio.sleep(0.02)
    return response.json()["checks"]["audit"]


async def writer_up(client: httpx.AsyncClient) -> float:
    metrics = (await client.get("http://any.test/metrics")).text
    for family in text_string_to_metric_families(metrics):
        if family.name == "verity_audit_writer_up":
            return float(family.samples[0].value)
    raise AssertionError("no verity_audit_writer_up")


async def test_readyz_reports_failing_audit_writes_and_recovers(
    make_gateway: MakeGateway, tmp_path: Path, issuer: Issuer
) -> None:
    path = tmp_path / "audit.db"
    audit = AuditLog(SQLiteStore(path, timeout=0.1), unhealthy_after=0.5, probe_seconds=0.05)
    gateway = make_gateway(audit=audit, audit_timeout_seconds=2)
    transport = httpx.ASGITransport(app=gateway, client=("127.0.0.1", 1))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as client:
            assert await ready_becomes(client, 200) == {"ok": True, "status": "ok"}
            assert await writer_up(client) == 1
            with sqlite_write_lock(path):
                allowed = await client.get("/api/x", headers=bearer(issuer.token()))
                assert allowed.status_code == 503  # not audited: refused (fail closed)
                check = await ready_becomes(client, 503)
                assert check == {"ok": False, "status": "failing",
                                 "reason": "audit log writes are failing"}  # fmt: skip
                body = (await readyz(client)).text
                assert str(tmp_path) not in body
                assert "locked" not in body
                assert await writer_up(client) == 0
            # no request needed: the idle writer probes the store and health comes back
            assert await ready_becomes(client, 200) == {"ok": True, "status": "ok"}
            assert await writer_up(client) == 1
            assert (await client.get("/api/x", headers=bearer(issuer.token()))).status_code == 200
    finally:
        audit.close()


async def test_readyz_reports_a_stuck_audit_writer(
    make_gateway: MakeGateway, tmp_path: Path, issuer: Issuer
) -> None:
    path = tmp_path / "audit.db"
    audit = AuditLog(SQLiteStore(path, timeout=10), unhealthy_after=0.5)
    gateway = make_gateway(audit=audit, audit_timeout_seconds=0.2)
    transport = httpx.ASGITransport(app=gateway, client=("127.0.0.1", 1))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as client:
            with sqlite_write_lock(path):
                allowed = await client.get("/api/x", headers=bearer(issuer.token()))
                assert allowed.status_code == 503  # the commit hangs: not acknowledged in time
                check = await ready_becomes(client, 503)
                assert check["reason"] == "audit log writes are not completing"
            assert (await ready_becomes(client, 200))["ok"] is True
    finally:
        audit.close()


class _CrashingLog(AuditLog):
    def _sign_for(self, count: int) -> Any:
        raise RuntimeError("writer bug")


async def test_readyz_reports_a_dead_audit_writer(
    make_gateway: MakeGateway, tmp_path: Path, issuer: Issuer
) -> None:
    audit = _CrashingLog(SQLiteStore(tmp_path / "audit.db"))
    gateway = make_gateway(audit=audit)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway)) as client:
            await client.get("http://app.test/api/x", headers=bearer(issuer.token()))
            check = await ready_becomes(client, 503)
            assert check == {"ok": False, "status": "stopped",
                             "reason": "the audit log writer has stopped"}  # fmt: skip
            assert "writer bug" not in (await readyz(client)).text
    finally:
        audit.close()


async def test_a_policy_reload_compiles_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a (large, slow) policy compiles, the event loop keeps running: the reload
    runs in a worker thread and swaps the engine in when it is complete."""
    import threading

    import verity.policy as policy_package
    from verity.gateway.readiness import Readiness
    from verity.policy import LivePolicy

    file = tmp_path / "p.yaml"
    file.write_text("rules: [{name: a, allow: {roles: [a]}}]\n")
    live = LivePolicy(file)
    release = threading.Event()
    real_compile = policy_package.compile_policy

    def slow_compile(policy: Any, **options: Any) -> Any:
        assert release.wait(10)
        return real_compile(policy, **options)

    monkeypatch.setattr(policy_package, "compile_policy", slow_compile)
    file.write_text("rules: [{name: b, allow: {roles: [b]}}]\n")
    old = live.version
    reload = asyncio.ensure_future(Readiness(verifiers=(), policy=live).reload_once(live))
    ticks = 0
    for _ in range(20):  # the loop turns while the compile is held
        await asyncio.sleep(0.005)
        ticks += 1
    assert not reload.done()
    assert live.version == old
    release.set()
    result = await asyncio.wait_for(reload, 10)
    assert ticks == 20
    assert result is not None
    assert result.changed
    assert live.version != old
