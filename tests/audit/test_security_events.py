"""Security events through ``SecurityEventSink``: real login, logout, back-channel logout,
MFA failure, lockout and policy reload flows each write one audit event (right OCSF class,
activity, status and actor) and one security log line, and never a secret."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from tests.gateway.servers import ThreadServer
from tests.identity.idp.conftest import PASSWORD, Clock, Idp, Login, Server, make_config
from tests.identity.oidc.conftest import provider_config
from tests.identity.oidc.fake_idp import FakeIdP
from tests.identity.oidc.harness import RP, gateway_app
from verity.audit import AuditLog, Query
from verity.audit.sink import AuditSink, SecurityEventSink
from verity.audit.sqlite import SQLiteStore
from verity.config import StoreConfig
from verity.gateway.readiness import Readiness
from verity.identity.idp import IdentityProvider, SqliteUserStore, create_app
from verity.identity.idp.totp import code_at
from verity.identity.idp_config import LockoutPolicy
from verity.identity.oidc import LoginConfig, LoginService
from verity.policy import LivePolicy
from verity.store import Stores, open_stores
from verity.store.sqlite.db import SqliteDatabase

AUTHN, API = 3002, 6003
LOGON, LOGOFF, UPDATE = 1, 2, 3
SUCCESS, FAILURE = 1, 2


@pytest.fixture
def audit(tmp_path: Path) -> Iterator[AuditLog]:
    with AuditLog(SQLiteStore(tmp_path / "audit.db")) as log:
        yield log


def stored(log: AuditLog) -> list[dict[str, Any]]:
    return [record.event() for record in log.store.query(Query())]


def raw(log: AuditLog) -> bytes:
    return b"\n".join(record.body for record in log.store.query(Query()))


def kind(event: dict[str, Any]) -> str:
    return str(event["unmapped"]["verity"]["kind"])


def security_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [str(r.msg) for r in caplog.records if r.name == "verity.security"]


# -- browser login (relying party) ------------------------------------------------------
@pytest.fixture(scope="module")
def fake_idp() -> Iterator[FakeIdP]:
    fake = FakeIdP()
    with ThreadServer(fake.app) as server:
        fake.issuer = server.url
        yield fake


@pytest.fixture
def rp(fake_idp: FakeIdP, tmp_path: Path, audit: AuditLog) -> Iterator[RP]:
    fake_idp.reset()
    stores: Stores = open_stores(StoreConfig(url=f"sqlite:///{tmp_path}/verity.db"))
    config = LoginConfig(providers=(provider_config(fake_idp),), cache_seconds=0)
    service = LoginService.from_stores(config, stores, events=AuditSink(audit))
    try:
        with (
            ThreadServer(gateway_app(service)) as server,
            httpx.Client(base_url=server.url) as client,
        ):
            yield RP(service, server.url, client, fake_idp)
    finally:
        service.close()
        stores.close()


def test_browser_login_and_logout_are_audited_without_tokens(
    rp: RP, audit: AuditLog, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="verity.security")
    assert rp.login().status_code == 302
    cookie = rp.client.cookies["verity_session"]
    principal = rp.principal(cookie)
    assert principal is not None
    assert rp.logout().status_code == 303
    login, logout = stored(audit)
    assert (login["class_uid"], login["activity_id"], login["status_id"]) == (
        AUTHN, LOGON, SUCCESS,
    )  # fmt: skip
    assert kind(login) == "login"
    assert login["actor"]["user"]["uid"] == principal.id
    assert login["src_endpoint"]["ip"] == "127.0.0.1"
    assert (logout["class_uid"], logout["activity_id"], logout["status_id"]) == (
        AUTHN, LOGOFF, SUCCESS,
    )  # fmt: skip
    assert logout["actor"]["user"]["uid"] == principal.id
    body = raw(audit) + "\n".join(security_lines(caplog)).encode()
    assert cookie.encode() not in body
    assert b"eyJ" not in body  # no ID, access, refresh or logout token (all JWTs here)
    lines = security_lines(caplog)
    assert any("login.succeeded" in line for line in lines)
    assert any("'logout'" in line for line in lines)


def test_failed_browser_login_is_audited_as_failed_logon(rp: RP, audit: AuditLog) -> None:
    callback = rp.authorize(rp.start())
    code = httpx.URL(callback).params["code"]
    answer = rp.client.get("/verity/callback", params={"code": code, "state": "forged"})
    assert answer.status_code == 400
    (event,) = stored(audit)
    assert (event["class_uid"], event["activity_id"], event["status_id"]) == (
        AUTHN, LOGON, FAILURE,
    )  # fmt: skip
    assert event["status_detail"] == "login_state"
    assert event["actor"]["user"]["uid"] == "unknown"
    assert code.encode() not in raw(audit)  # the authorization code is a credential


def test_backchannel_logout_is_audited_as_sessions_revoked(rp: RP, audit: AuditLog) -> None:
    rp.login()
    token = rp.idp.logout_token()
    answer = rp.client.post("/verity/backchannel-logout", data={"logout_token": token})
    assert answer.status_code == 200
    revoked = stored(audit)[-1]
    assert kind(revoked) == "session_revoked"
    assert (revoked["class_uid"], revoked["activity_id"], revoked["status_id"]) == (
        AUTHN, LOGOFF, SUCCESS,
    )  # fmt: skip
    assert revoked["unmapped"]["verity"]["detail"]["revoked"] == 1
    assert revoked["actor"]["user"]["uid"] == "fake"
    assert token.encode() not in raw(audit)


# -- embedded IdP: MFA failure and lockout ----------------------------------------------
@pytest.fixture
def idp(tmp_path: Path, audit: AuditLog) -> Iterator[Idp]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    stores = open_stores(StoreConfig(url=f"sqlite:///{tmp_path / 'idp.db'}"))
    db = SqliteDatabase(tmp_path / "idp.db")
    users, clock = SqliteUserStore(db), Clock()
    lockout = LockoutPolicy(window_seconds=60, max_account_failures=3, max_ip_failures=8)
    provider = IdentityProvider(
        make_config(base + "/idp", lockout=lockout), users=users, keys=stores.keys,
        counters=stores.counters, clock=clock, events=AuditSink(audit),
    )  # fmt: skip
    server = Server(sock, Starlette(routes=[Mount("/idp", app=create_app(provider))]))
    client = httpx.Client(base_url=base, timeout=10, follow_redirects=False, trust_env=False)
    try:
        yield Idp(base, base + "/idp", provider, users, stores, clock, client)
    finally:
        client.close()
        server.stop()
        sock.close()
        db.close()
        stores.close()


def test_mfa_failure_is_audited_without_the_code_or_secret(idp: Idp, audit: AuditLog) -> None:
    secret = idp.add_user("m@example.com", mfa=True)
    good = code_at(secret, at=idp.clock())
    # Not "000000": event ids end in a zero-padded counter, so that is in every early one
    # (their random prefix holds a given 6 digits in about 1e-6 of runs).
    bad = "918273" if good != "918273" else "827364"
    login = Login(idp)
    login.authorize()
    login.password("m@example.com")
    assert login.otp(bad).status_code == 401
    (event,) = stored(audit)
    assert kind(event) == "mfa_failure"
    assert (event["class_uid"], event["activity_id"], event["status_id"]) == (
        AUTHN, LOGON, FAILURE,
    )  # fmt: skip
    assert event["is_mfa"] is True
    user = idp.users.by_email("m@example.com")
    assert user is not None
    assert event["actor"]["user"]["uid"] == user.id
    body = raw(audit)
    assert secret.encode() not in body
    assert bad.encode() not in body
    assert PASSWORD.encode() not in body


def test_lockout_is_audited_without_password_or_typed_account(idp: Idp, audit: AuditLog) -> None:
    login = Login(idp)
    login.authorize()
    for _ in range(3):
        login.password("ghost@example.com", "wrong guess hunter2")
    assert login.password("ghost@example.com", "wrong guess hunter2").status_code == 429
    events = stored(audit)
    # each failed password is an event of its own, then the lockout
    assert [e["status_detail"] for e in events] == ["unknown_account"] * 3 + ["locked_out"]
    event = events[-1]
    assert (event["class_uid"], event["activity_id"], event["status_id"]) == (
        AUTHN, LOGON, FAILURE,
    )  # fmt: skip
    assert event["actor"]["user"]["uid"].startswith("account:")
    body = raw(audit)
    assert b"hunter2" not in body
    assert b"ghost@example.com" not in body


# -- policy reload ----------------------------------------------------------------------
ALLOW_ENG = "rules: [{name: eng, allow: {roles: [eng]}}]\n"
ALLOW_OPS = "rules: [{name: ops, allow: {roles: [ops]}}]\n"


def test_policy_reload_success_and_failure_are_audited(tmp_path: Path, audit: AuditLog) -> None:
    file = tmp_path / "policy.yaml"
    file.write_text(ALLOW_ENG)
    policy = LivePolicy(file)
    old = policy.version
    sink: SecurityEventSink = AuditSink(audit)
    readiness = Readiness(verifiers=(), policy=policy, events=sink)
    assert asyncio.run(readiness.reload_once(policy)) is not None  # unchanged: no event
    assert stored(audit) == []
    file.write_text(ALLOW_OPS)
    asyncio.run(readiness.reload_once(policy))
    new = policy.version
    file.write_text("rules: [{name: broken, allow: 3}]\n")
    asyncio.run(readiness.reload_once(policy))
    assert policy.version == new  # the good version stays in force
    ok, bad = stored(audit)
    assert (ok["class_uid"], ok["activity_id"], ok["status_id"]) == (API, UPDATE, SUCCESS)
    detail = ok["unmapped"]["verity"]["detail"]
    assert (detail["old_version"], detail["new_version"]) == (old, new)
    assert ok["actor"]["user"]["uid"] == "verity-gateway"
    assert (bad["class_uid"], bad["status_id"], bad["status_detail"]) == (
        API, FAILURE, "policy_invalid",
    )  # fmt: skip
    bad_detail = bad["unmapped"]["verity"]["detail"]
    assert bad_detail["new_version"] is None
    assert bad_detail["problems"]


def test_without_a_sink_only_the_security_log_line_is_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="verity.security")
    file = tmp_path / "policy.yaml"
    file.write_text(ALLOW_ENG)
    policy = LivePolicy(file)
    file.write_text(ALLOW_OPS)
    asyncio.run(Readiness(verifiers=(), policy=policy).reload_once(policy))
    lines = security_lines(caplog)
    assert len(lines) == 1
    assert "policy.reloaded" in lines[0]
    json.dumps(lines)  # plain text, nothing unserialisable
