"""Apps mounted on the gateway (the embedded IdP, the login routes) see the client IP the
gateway resolved through ``server.trusted_proxies``, never the proxy's, and never a
forged ``X-Forwarded-For``.

The IdP test drives the real provider (SQLite users and counters, a real audit log)
through the gateway: behind a trusted proxy, failed logins and the per-IP throttle count
the forwarded client; from an untrusted peer, a forged header changes nothing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from verity.audit import AuditLog, Query, open_store
from verity.audit.sink import AuditSink
from verity.config import StoreConfig
from verity.gateway.app import Gateway
from verity.identity.idp import (
    IdentityProvider,
    IdpClient,
    IdpConfig,
    LockoutPolicy,
    SqliteUserStore,
    create_app,
)
from verity.store.factory import Stores, open_stores
from verity.store.sqlite.db import SqliteDatabase

from .conftest import MakeGateway

pytestmark = pytest.mark.anyio
PROXY = "10.0.0.7"  # inside trusted_proxies (10.0.0.0/8), one trusted hop
OUTSIDER = "203.0.113.9"
CLIENT = "198.51.100.20"
REDIRECT = "http://127.0.0.1:9999/callback"
_HIDDEN = re.compile(r'name="(tx|csrf)" value="([^"]*)"')


class ScopeRecorder:
    """A mounted app that answers with what it was given."""

    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def client_for(gateway: Gateway, peer: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=gateway, client=(peer, 40000))
    return httpx.AsyncClient(transport=transport, base_url="https://gw.test")


def header(scope: dict[str, Any], name: bytes) -> list[bytes]:
    return [value for key, value in scope["headers"] if key == name]


async def test_a_mount_sees_the_client_resolved_through_a_trusted_proxy(
    make_gateway: MakeGateway,
) -> None:
    recorder = ScopeRecorder()
    gateway = make_gateway(mounts=[("/verity/login", recorder)])
    forged = {"X-Forwarded-For": f"192.0.2.66, {CLIENT}", "X-Real-IP": "192.0.2.66",
              "Forwarded": "for=192.0.2.66"}  # fmt: skip
    async with client_for(gateway, PROXY) as proxy:
        assert (await proxy.get("/verity/login", headers=forged)).status_code == 204
    scope = recorder.scopes[-1]
    assert scope["client"] == (CLIENT, 0)  # one trusted hop: the entry the proxy added
    assert header(scope, b"x-forwarded-for") == [f"{CLIENT}, {PROXY}".encode()]
    assert header(scope, b"x-real-ip") == []
    assert header(scope, b"forwarded") == []


async def test_a_mount_ignores_forwarding_headers_from_an_untrusted_peer(
    make_gateway: MakeGateway,
) -> None:
    recorder = ScopeRecorder()
    gateway = make_gateway(mounts=[("/verity/login", recorder)])
    async with client_for(gateway, OUTSIDER) as outsider:
        response = await outsider.get("/verity/login", headers={"X-Forwarded-For": CLIENT})
    assert response.status_code == 204
    scope = recorder.scopes[-1]
    assert scope["client"] == (OUTSIDER, 40000)
    assert header(scope, b"x-forwarded-for") == [OUTSIDER.encode()]


# -- the embedded IdP behind the gateway -------------------------------------------------
@dataclass
class MountedIdp:
    gateway: Gateway
    stores: Stores
    audit: AuditLog
    audit_path: Path
    window: float

    def ip_failures(self, ip: str) -> int:
        return self.stores.counters.count(f"idp:fail:ip:{ip}", window=self.window, now=time.time())

    def throttled_ips(self) -> list[str]:
        store = open_store(f"sqlite:///{self.audit_path}", create=False)
        try:
            events = [record.event() for record in store.query(Query())]
        finally:
            store.close()
        return [e["src_endpoint"]["ip"] for e in events if e.get("status_detail") == "throttled"]


@pytest.fixture
def mounted_idp(make_gateway: MakeGateway, tmp_path: Path) -> Iterator[MountedIdp]:
    stores = open_stores(StoreConfig(url=f"sqlite:///{tmp_path / 'verity.db'}"))
    database = SqliteDatabase(tmp_path / "verity.db")
    audit_path = tmp_path / "audit.db"
    audit = AuditLog(open_store(f"sqlite:///{audit_path}"))
    lockout = LockoutPolicy(
        window_seconds=300, max_account_failures=100, max_ip_failures=2, ip_delay_seconds=0.01
    )
    config = IdpConfig(
        issuer="https://gw.test/idp", lockout=lockout,
        clients=(IdpClient(client_id="cli", redirect_uris=(REDIRECT,)),),
    )  # fmt: skip
    provider = IdentityProvider(
        config, users=SqliteUserStore(database), keys=stores.keys, counters=stores.counters,
        events=AuditSink(audit),
    )  # fmt: skip
    app = Starlette(routes=[Mount("/idp", app=create_app(provider))])
    gateway = make_gateway(mounts=[("/idp", app)])
    try:
        yield MountedIdp(gateway, stores, audit, audit_path, lockout.window_seconds)
    finally:
        audit.close()
        database.close()
        stores.close()


async def attempt_login(client: httpx.AsyncClient, email: str, **headers: str) -> int:
    """Open the login form and post a wrong password; the status of the answer."""
    params = {
        "response_type": "code", "client_id": "cli", "redirect_uri": REDIRECT,
        "scope": "openid", "state": "s" * 16, "nonce": "n" * 16,
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
    }  # fmt: skip
    form = await client.get("/idp/authorize", params=params, headers=headers)
    assert form.status_code == 200, form.text
    fields = dict(_HIDDEN.findall(form.text))
    data = {**fields, "email": email, "password": "not the password"}
    return (await client.post("/idp/login", data=data, headers=headers)).status_code


async def test_idp_throttle_behind_a_trusted_proxy_counts_the_forwarded_client(
    mounted_idp: MountedIdp,
) -> None:
    async with client_for(mounted_idp.gateway, PROXY) as proxy:
        via = {"X-Forwarded-For": CLIENT}
        assert await attempt_login(proxy, "a@example.com", **via) == 401
        assert await attempt_login(proxy, "b@example.com", **via) == 401
        # this client is now slowed down (not refused: OWASP throttling by IP)
        assert await attempt_login(proxy, "c@example.com", **via) == 401
        other = {"X-Forwarded-For": "198.51.100.21"}  # another client behind the same proxy
        assert await attempt_login(proxy, "d@example.com", **other) == 401
    assert mounted_idp.ip_failures(CLIENT) == 3
    assert mounted_idp.ip_failures("198.51.100.21") == 1
    assert mounted_idp.ip_failures(PROXY) == 0
    mounted_idp.audit.close()
    assert mounted_idp.throttled_ips() == [CLIENT]


async def test_idp_ignores_a_forged_forwarded_for_from_an_untrusted_peer(
    mounted_idp: MountedIdp,
) -> None:
    async with client_for(mounted_idp.gateway, OUTSIDER) as outsider:
        forged = {"X-Forwarded-For": CLIENT}
        assert await attempt_login(outsider, "a@example.com", **forged) == 401
        assert await attempt_login(outsider, "b@example.com", **forged) == 401
        assert await attempt_login(outsider, "c@example.com", **forged) == 401  # throttled
    assert mounted_idp.ip_failures(OUTSIDER) == 3
    assert mounted_idp.ip_failures(CLIENT) == 0  # a forged header cannot frame a victim
    async with client_for(mounted_idp.gateway, PROXY) as proxy:  # who stays unaffected
        assert await attempt_login(proxy, "d@example.com", **{"X-Forwarded-For": CLIENT}) == 401
    mounted_idp.audit.close()
    assert mounted_idp.throttled_ips() == [OUTSIDER]
