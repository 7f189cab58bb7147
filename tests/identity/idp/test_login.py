"""The login form: CSRF, credentials, TOTP (with replay protection), lockout, disabled users."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import httpx
import jwt
import pytest

from verity.audit import AuditEvent
from verity.identity.idp import LockoutPolicy
from verity.identity.idp.totp import code_at
from verity.store.errors import StoreUnavailableError

from .conftest import PUBLIC, Idp, Login, query_of

GENERIC = "Invalid e-mail address or password."
LOCKED = "Too many failed attempts. Try again later."


def test_login_form_is_escaped_and_hardened(idp: Idp) -> None:
    login = Login(idp)
    page = login.authorize()
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    echoed = login.password('"><script>alert(1)</script>@x.example')
    assert "<script>alert(1)" not in echoed.text
    assert "&lt;script&gt;" in echoed.text or "&#34;&gt;&lt;script" in echoed.text


@pytest.mark.parametrize("tamper", ["csrf", "missing_csrf", "cookie"])
def test_csrf_login_form_rejected_without_matching_token_and_cookie(idp: Idp, tamper: str) -> None:
    idp.add_user("c@example.com")
    login = Login(idp)
    login.authorize()
    form: dict[str, Any] = {**login.fields, "email": "c@example.com", "password": "x" * 20}
    if tamper == "csrf":
        form["csrf"] = "A" * 43
        response = idp.client.post("/idp/login", data=form)
    elif tamper == "missing_csrf":
        del form["csrf"]
        response = idp.client.post("/idp/login", data=form)
    else:  # another browser (the attacker's page) posting the victim's form fields
        with httpx.Client(base_url=idp.base, trust_env=False) as other:
            response = other.post("/idp/login", data=form)
    assert response.status_code == 403
    assert "location" not in response.headers


def test_wrong_password_and_unknown_account_look_the_same(idp: Idp) -> None:
    idp.add_user("w@example.com")
    login = Login(idp)
    login.authorize()
    wrong = login.password("w@example.com", "not the password at all")
    unknown = login.password("nobody@example.com", "not the password at all")
    assert wrong.status_code == unknown.status_code == 401
    assert GENERIC in wrong.text
    assert GENERIC in unknown.text
    assert "not the password" not in wrong.text


def _mfa_login(idp: Idp, email: str, code: str) -> httpx.Response:
    login = Login(idp)
    login.authorize()
    page = login.password(email)
    assert page.status_code == 200
    assert 'name="code"' in page.text
    return login.otp(code)


def test_totp_required_and_verified(idp: Idp) -> None:
    secret = idp.add_user("m@example.com", mfa=True)
    login = Login(idp)
    login.authorize()
    page = login.password("m@example.com")
    assert page.status_code == 200
    assert "location" not in page.headers  # no code before the second factor
    wrong = login.otp("000000" if code_at(secret, at=idp.clock()) != "000000" else "111111")
    assert wrong.status_code == 401
    ok = login.otp(code_at(secret, at=idp.clock()))
    assert ok.status_code == 303
    body = login.exchange(query_of(ok.headers["location"])["code"]).json()
    claims = jwt.decode(body["id_token"], options={"verify_signature": False})
    assert claims["amr"] == ["pwd", "otp", "mfa"]
    assert claims["acr"] == "urn:verity:acr:mfa"


def test_totp_replay_of_same_code_rejected(idp: Idp) -> None:
    secret = idp.add_user("rp@example.com", mfa=True)
    code = code_at(secret, at=idp.clock())
    assert _mfa_login(idp, "rp@example.com", code).status_code == 303
    assert _mfa_login(idp, "rp@example.com", code).status_code == 401


def test_totp_old_code_rejected(idp: Idp) -> None:
    secret = idp.add_user("old@example.com", mfa=True)
    current = code_at(secret, at=idp.clock())
    # an old step's code (the first one, from 5 minutes back, that differs from the current)
    old = next(
        code
        for back in range(300, 3600, 30)
        if (code := code_at(secret, at=idp.clock() - back)) != current
    )
    assert _mfa_login(idp, "old@example.com", old).status_code == 401


@pytest.fixture
def idp_overrides() -> dict[str, Any]:
    return {
        "lockout": LockoutPolicy(
            window_seconds=60,
            max_account_failures=3,
            max_ip_failures=8,
            ip_delay_seconds=0.2,
            ip_max_delay_seconds=0.5,
        )
    }


def test_lockout_after_failures_and_unlock_after_window(idp: Idp) -> None:
    idp.add_user("l@example.com")
    login = Login(idp)
    login.authorize()
    for _ in range(3):
        assert login.password("l@example.com", "wrong password guess").status_code == 401
    locked = login.password("l@example.com")  # even the right password
    assert locked.status_code == 429
    assert LOCKED in locked.text
    idp.clock.advance(61)
    login = Login(idp)
    login.authorize()
    assert login.password("l@example.com").status_code == 303


def test_lockout_message_does_not_reveal_whether_account_exists(idp: Idp) -> None:
    idp.add_user("real@example.com")
    responses = []
    for email in ("real@example.com", "ghost@example.com"):
        login = Login(idp)
        login.authorize()
        for _ in range(3):
            login.password(email, "wrong password guess")
        responses.append(login.password(email, "wrong password guess"))
    assert [r.status_code for r in responses] == [429, 429]
    assert all(LOCKED in r.text for r in responses)


def test_password_spray_from_one_ip_cannot_lock_out_the_correct_login_of_another_account(
    idp: Idp,
) -> None:
    idp.add_user("victim@example.com")
    login = Login(idp)
    login.authorize()
    for index in range(8):  # max_ip_failures: from now on this IP is slowed down
        assert login.password(f"spray{index}@example.com", "Summer2024!Summer").status_code == 401
    # further guesses from the IP wait longer and longer (slots 1, 2, ...: 0.2 s each)
    started = time.monotonic()
    assert login.password("spray9@example.com", "Summer2024!Summer").status_code == 401
    assert login.password("spray10@example.com", "Summer2024!Summer").status_code == 401
    assert time.monotonic() - started >= 0.2 + 0.4
    # the victim, behind the same address, still logs in with the right password
    started = time.monotonic()
    victim = login.password("victim@example.com")
    assert victim.status_code == 303, victim.text
    assert time.monotonic() - started >= 0.5  # capped at ip_max_delay_seconds
    # while the account lockout is untouched: per account, not per IP
    other = Login(idp)
    other.authorize()
    assert other.password("victim@example.com", "wrong password guess").status_code == 401


def test_totp_failures_count_toward_lockout(idp: Idp) -> None:
    secret = idp.add_user("tf@example.com", mfa=True)
    bad = "000000" if code_at(secret, at=idp.clock()) != "000000" else "111111"
    login = Login(idp)
    login.authorize()
    login.password("tf@example.com")  # right, but an attempt until the login completes
    for _ in range(2):
        assert login.otp(bad).status_code == 401
    final = login.otp(code_at(secret, at=idp.clock()))
    assert final.status_code == 429


def test_disabled_user_cannot_log_in_refresh_or_use_userinfo(idp: Idp) -> None:
    idp.add_user("off@example.com")
    login = Login(idp)
    body = login.exchange(login.code("off@example.com")).json()
    user = idp.users.by_email("off@example.com")
    assert user is not None
    idp.users.set_disabled(user.id, True)
    login = Login(idp)
    login.authorize()
    denied = login.password("off@example.com")
    assert denied.status_code == 401
    assert GENERIC in denied.text
    refresh = idp.client.post(
        "/idp/token",
        data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"],
              "client_id": PUBLIC},
    )  # fmt: skip
    assert refresh.json()["error"] == "invalid_grant"
    info = idp.client.get(
        "/idp/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert info.status_code == 401


def test_expired_login_transaction_rejected(idp: Idp) -> None:
    idp.add_user("slow@example.com")
    login = Login(idp)
    login.authorize()
    idp.clock.advance(601)
    response = login.password("slow@example.com")
    assert response.status_code == 400
    assert "location" not in response.headers


def test_failed_login_logged_without_secrets(idp: Idp, caplog: pytest.LogCaptureFixture) -> None:
    idp.add_user("log@example.com")
    login = Login(idp)
    login.authorize()
    with caplog.at_level(logging.INFO, logger="verity.identity.idp"):
        login.password("log@example.com", "hunter2hunter2hunter2")
    text = caplog.text
    assert "idp login failed: password" in text
    assert "hunter2" not in text
    assert "log@example.com" not in text


def test_sign_ins_during_a_user_store_outage_do_not_lock_the_account_out(
    idp: Idp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The users' database is down (503, "nothing was changed"): each retry had already
    used one of the account's lockout attempts, so a user retrying through a short outage
    was locked out for the whole window after it."""
    email = "outage@example.com"
    idp.add_user(email)
    limit = idp.provider.config.lockout.max_account_failures

    def down(_email: str) -> None:
        raise StoreUnavailableError("postgresql://db/verity", "connection refused")

    monkeypatch.setattr(idp.provider.users, "by_email", down)
    for _ in range(limit + 1):
        login = Login(idp)
        login.authorize()
        assert login.password(email).status_code == 503
    monkeypatch.undo()
    login = Login(idp)
    login.authorize()
    assert login.password(email).status_code == 303  # back up: signs in


class _Collected:
    """A security-event sink that keeps what it is given."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def emit(self, event: AuditEvent) -> None:
        self.events.append(event)


def test_failed_password_sign_ins_are_audit_events_without_the_password(idp: Idp) -> None:
    idp.add_user("aud@example.com")
    sink = _Collected()
    idp.provider.events = sink
    login = Login(idp)
    login.authorize()
    assert login.password("aud@example.com", "hunter2hunter2hunter2").status_code == 401
    assert login.password("hunter3hunter3@example.com", "x").status_code == 401
    documents = [event.to_ocsf() for event in sink.events]
    assert [d["status_detail"] for d in documents] == ["bad_password", "unknown_account"]
    assert all(d["class_uid"] == 3002 and d["status"] == "Failure" for d in documents)
    assert documents[0]["user"]["email_addr"] == "aud@example.com"
    # an unknown account appears as its keyed hash: what was typed may be a password
    assert documents[1]["user"]["uid"].startswith("account:")
    text = json.dumps(documents)
    assert "hunter2" not in text
    assert "hunter3" not in text
