"""The gateway audits every decision into a real SQLite audit log and exports metrics.

In-process gateway (the same app uvicorn runs), real ``AuditLog`` over ``SQLiteStore``
in tmp_path with a signing key, verified with ``verity.audit.verify`` afterwards.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from verity.audit import AuditLog, CheckpointSigner, Query, generate_key, open_store, verify
from verity.config import ServerConfig
from verity.observability import MetricsConfig

from .conftest import Issuer, MakeGateway, RecordingUpstream, bearer

pytestmark = pytest.mark.anyio


class AuditedGateway:
    """A gateway with a real audit log, and clients from chosen addresses."""

    def __init__(self, make_gateway: MakeGateway, tmp_path: Path, **options: Any) -> None:
        self.db = tmp_path / "audit.db"
        self.key = tmp_path / "audit.key"
        self.public_key = generate_key(self.key)
        self.audit = AuditLog(
            open_store(f"sqlite:///{self.db}"), signer=CheckpointSigner.from_file(self.key)
        )
        self.gateway = make_gateway(audit=self.audit, **options)

    def client(self, ip: str = "203.0.113.9") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.gateway, client=(ip, 5555))
        return httpx.AsyncClient(transport=transport, base_url="http://app.test")

    def events(self) -> list[dict[str, Any]]:
        store = open_store(f"sqlite:///{self.db}", create=False)
        try:
            return [record.event() for record in store.query(Query())]
        finally:
            store.close()

    def verify(self) -> bool:
        store = open_store(f"sqlite:///{self.db}", create=False)
        try:
            return verify(store, self.public_key).ok
        finally:
            store.close()


@pytest.fixture
def audited(make_gateway: MakeGateway, tmp_path: Path) -> Iterator[AuditedGateway]:
    gateway = AuditedGateway(make_gateway, tmp_path)
    yield gateway
    gateway.audit.close()


@pytest.fixture
async def client(audited: AuditedGateway) -> AsyncIterator[httpx.AsyncClient]:
    async with audited.client() as c:
        yield c


async def scrape(gateway: AuditedGateway) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``{sample name: {sorted labels: value}}`` from /metrics, as Prometheus parses it."""
    async with gateway.client("127.0.0.1") as local:
        response = await local.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            key = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[key] = sample.value
    return samples


async def test_every_decision_is_one_verified_audit_event(
    audited: AuditedGateway, client: httpx.AsyncClient, issuer: Issuer, upstream: RecordingUpstream
) -> None:
    allowed = await client.get("/api/x?secret=1", headers=bearer(issuer.token()))
    denied = await client.get("/api/x", headers=bearer(issuer.token("bob", groups=())))
    anonymous = await client.get("/api/x")
    bad = await client.get("/api/x", headers=bearer(issuer.token(exp=int(time.time()) - 600)))
    assert [r.status_code for r in (allowed, denied, anonymous, bad)] == [200, 403, 401, 401]
    audited.audit.close()
    events = audited.events()
    assert [e["class_uid"] for e in events] == [6003, 6003, 6003, 3002]
    allow, deny, anon, rejected = events
    assert allow["status_id"] == 1
    assert deny["status_id"] == 2
    assert anon["status_id"] == 2
    assert allow["actor"]["user"]["uid"] == "alice"
    assert deny["actor"]["user"]["uid"] == "bob"
    assert allow["src_endpoint"]["ip"] == "203.0.113.9"
    decision = allow["unmapped"]["verity"]["decision"]
    assert decision["rule"] == allow["policy"]["name"] == "engineers-app"
    assert decision["policy_hash"] == allow["policy"]["uid"] != ""
    assert decision["decision_id"] == upstream.seen[0].header("x-verity-decision-id")[0]
    assert "/api/x" in allow["api"]["operation"]
    assert "secret=1" not in str(allow)
    denied_decision = deny["unmapped"]["verity"]["decision"]
    assert denied_decision["decision_id"] == denied.json()["decision_id"]
    assert [r["code"] for r in denied_decision["reasons"]]
    assert rejected["status_detail"] == "expired"
    assert rejected["src_endpoint"]["ip"] == "203.0.113.9"
    assert audited.verify()


async def test_metrics_count_decisions_tokens_upstream_and_audit(
    audited: AuditedGateway, client: httpx.AsyncClient, issuer: Issuer
) -> None:
    before = await scrape(audited)
    for _ in range(3):
        await client.get("/api/x", headers=bearer(issuer.token()))
    await client.get("/api/x", headers=bearer(issuer.token("bob", groups=())))
    await client.get("/api/x", headers=bearer("not-a-jwt"))
    after = await scrape(audited)
    decisions = after["verity_decisions_total"]
    assert decisions[(("effect", "allow"), ("rule", "engineers-app"))] == 3
    assert decisions[(("effect", "deny"), ("rule", "none"))] == 1
    assert "verity_decisions_total" not in before
    tokens = after["verity_token_verifications_total"]
    assert tokens[(("outcome", "ok"),)] == 4
    assert tokens[(("outcome", "malformed"),)] == 1
    assert after["verity_decision_duration_seconds_count"][()] == 4
    upstream = after["verity_upstream_duration_seconds_count"]
    assert upstream[(("route", "app"), ("status_class", "2xx"))] == 3
    assert after["verity_audit_write_duration_seconds_count"][()] == 5  # 4 decisions + 1 authn
    assert after["verity_audit_events_total"][()] == 5
    assert after["verity_audit_queue_depth"][()] == 0


@pytest.mark.parametrize(
    ("peer", "forwarded"),
    [("203.0.113.9", None), ("10.1.2.3", None), ("10.0.0.5", "198.51.100.7"),
     ("127.0.0.1", "198.51.100.7")],
)  # fmt: skip
async def test_metrics_refused_from_a_client_outside_the_allowed_cidrs(
    make_gateway: MakeGateway, tmp_path: Path, peer: str, forwarded: str | None
) -> None:
    # 127.0.0.1 is a trusted proxy here (nginx on the same host): what counts is the
    # client it forwards for, not the loopback peer.
    server = ServerConfig(trusted_proxies=["10.0.0.0/8", "127.0.0.1/32"], trusted_hops=1)
    gateway = AuditedGateway(make_gateway, tmp_path, server=server)
    try:
        headers = {"X-Forwarded-For": forwarded} if forwarded else {}
        async with gateway.client(peer) as outsider:
            response = await outsider.get("/metrics", headers=headers)
        assert response.status_code == 403
        assert "verity_" not in response.text
    finally:
        gateway.audit.close()


async def test_metrics_served_to_configured_cidr_and_can_be_disabled(
    make_gateway: MakeGateway, tmp_path: Path
) -> None:
    config = MetricsConfig(allowed_cidrs=["192.0.2.0/24"])
    gateway = AuditedGateway(make_gateway, tmp_path, metrics=config)
    try:
        async with gateway.client("192.0.2.10") as scraper:
            assert (await scraper.get("/metrics")).status_code == 200
        async with gateway.client("127.0.0.1") as local:
            assert (await local.get("/metrics")).status_code == 403
    finally:
        gateway.audit.close()
    off = make_gateway(metrics=MetricsConfig(enabled=False))
    transport = httpx.ASGITransport(app=off, client=("127.0.0.1", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as local:
        response = await local.get("/metrics")
    assert "verity_decisions" not in response.text  # proxied like any path (no route: 404)


async def test_audit_failure_fails_closed_allow_becomes_503_deny_stays_deny(
    audited: AuditedGateway, client: httpx.AsyncClient, issuer: Issuer
) -> None:
    audited.audit.close()  # the log can no longer acknowledge anything
    allowed = await client.get("/api/x", headers=bearer(issuer.token()))
    denied = await client.get("/api/x", headers=bearer(issuer.token("bob", groups=())))
    public = await client.get("/public/page")
    assert allowed.status_code == 503
    assert "x-verity-decision-id" not in allowed.headers
    assert denied.status_code == 403
    assert public.status_code == 503
    samples = await scrape(audited)
    assert samples["verity_audit_write_failures_total"][()] == 3


async def test_audit_outage_does_not_let_repeated_allows_through_unaudited(
    audited: AuditedGateway, client: httpx.AsyncClient, issuer: Issuer
) -> None:
    """Repeated allows are answered before their group commit only while the log keeps
    up: once a commit has failed, each waits for its own commit again and is refused."""
    token = bearer(issuer.token())
    assert (await client.get("/api/x", headers=token)).status_code == 200  # first: durable
    assert (await client.get("/api/x", headers=token)).status_code == 200  # repeated: early
    deadline = time.monotonic() + 5
    while audited.audit.stats.events < 2:  # committed within the window
        assert time.monotonic() < deadline
        await anyio.sleep(0.005)
    audited.audit.store.append_batch = _broken  # type: ignore[method-assign]
    denied = await client.get("/api/x", headers=bearer(issuer.token("bob", groups=())))
    assert denied.status_code == 403  # its commit failed: the log is not healthy now
    refused = [(await client.get("/api/x", headers=token)).status_code for _ in range(3)]
    assert refused == [503, 503, 503]
    assert audited.audit.stats.early == 1
    assert audited.audit.stats.early_lost == 0


async def test_a_closed_audit_log_refuses_repeated_allows(
    audited: AuditedGateway, client: httpx.AsyncClient, issuer: Issuer
) -> None:
    token = bearer(issuer.token())
    assert (await client.get("/api/x", headers=token)).status_code == 200
    audited.audit.close()
    assert (await client.get("/api/x", headers=token)).status_code == 503


def _broken(*args: Any, **kwargs: Any) -> Any:
    raise OSError("audit disk gone")


async def test_audit_failure_with_fail_open_serves_the_allow(
    make_gateway: MakeGateway, tmp_path: Path, issuer: Issuer
) -> None:
    gateway = AuditedGateway(make_gateway, tmp_path, audit_fail_closed=False)
    gateway.audit.close()
    async with gateway.client() as client:
        allowed = await client.get("/api/x", headers=bearer(issuer.token()))
        denied = await client.get("/api/x", headers=bearer(issuer.token("bob", groups=())))
    assert (allowed.status_code, denied.status_code) == (200, 403)


async def test_audit_log_locked_by_another_writer_times_out_to_503(
    make_gateway: MakeGateway, tmp_path: Path, issuer: Issuer
) -> None:
    gateway = AuditedGateway(make_gateway, tmp_path, audit_timeout_seconds=0.3)
    blocker = sqlite3.connect(gateway.db, isolation_level=None)
    try:
        blocker.execute("begin exclusive")
        async with gateway.client() as client:
            started = time.perf_counter()
            response = await client.get("/api/x", headers=bearer(issuer.token()))
            waited = time.perf_counter() - started
        assert response.status_code == 503
        assert waited < 5
    finally:
        blocker.execute("rollback")
        blocker.close()
        gateway.audit.close()
    assert gateway.verify()


class Broken:
    def decide(self, request: Any) -> Any:
        raise RuntimeError("engine bug")


async def test_internal_error_is_a_deny_and_is_audited(
    make_gateway: MakeGateway, tmp_path: Path, issuer: Issuer
) -> None:
    gateway = AuditedGateway(make_gateway, tmp_path, decider=Broken())
    async with gateway.client() as client:
        response = await client.get("/api/x", headers=bearer(issuer.token()))
    assert response.status_code == 403
    gateway.audit.close()
    (event,) = gateway.events()
    decision = event["unmapped"]["verity"]["decision"]
    assert decision["effect"] == "deny"
    assert [r["code"] for r in decision["reasons"]] == ["internal_error"]
    assert decision["decision_id"] == response.json()["decision_id"]
    assert event["actor"]["user"]["uid"] == "alice"
    assert gateway.verify()


async def test_decisions_from_the_cache_are_each_audited_and_counted(
    audited: AuditedGateway, client: httpx.AsyncClient, issuer: Issuer, upstream: RecordingUpstream
) -> None:
    token = issuer.token()
    await anyio.sleep(1.01 - time.time() % 1)  # entries end at a whole second: start one
    for _ in range(3):
        assert (await client.get("/api/x", headers=bearer(token))).status_code == 200
    after = await scrape(audited)
    assert after["verity_decision_cache_hits_total"][()] == 2
    assert after["verity_decision_cache_misses_total"][()] == 1
    assert after["verity_decisions_total"][(("effect", "allow"), ("rule", "engineers-app"))] == 3
    audited.audit.close()
    events = audited.events()
    ids = [e["unmapped"]["verity"]["decision"]["decision_id"] for e in events]
    assert len(events) == 3
    assert len(set(ids)) == 3
    assert ids == [seen.header("x-verity-decision-id")[0] for seen in upstream.seen]
    assert audited.verify()


async def test_favicon_is_answered_before_enforcement_and_never_audited(
    audited: AuditedGateway, upstream: RecordingUpstream
) -> None:
    async with audited.client() as c:
        icon = await c.get("/favicon.ico")
        assert icon.status_code == 200
        assert icon.headers["content-type"] == "image/x-icon"
        assert icon.content[:4] == b"\x00\x00\x01\x00"  # an ICO
        # only that exact path: no other path becomes a way around the policy
        for path in ("/favicon.ico/x", "/favicon.icox", "/sub/favicon.ico", "/favicon.ico/"):
            assert (await c.get(path)).status_code == 401, path
    paths = [event["http_request"]["url"]["path"] for event in audited.events()]
    assert sorted(paths) == ["/favicon.ico/", "/favicon.ico/x", "/favicon.icox", "/sub/favicon.ico"]
    assert upstream.seen == []
