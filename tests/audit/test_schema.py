"""The event schema: OCSF mapping of every builder, and no secret ever recorded."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest

from verity.audit import (
    EventClass,
    EventKind,
    Severity,
    Status,
    UserRef,
    authentication_event,
    decision_event,
    redact_detail,
    session_event,
)
from verity.audit.builders import REDACTED, SESSION_KINDS
from verity.audit.schema import product_version
from verity.model import (
    AccessRequest,
    Decision,
    Effect,
    HttpTarget,
    Obligation,
    ObligationKind,
    Principal,
    PrincipalKind,
    Resource,
)

from .conftest import decision_for, request_for

JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


def test_deny_decision_maps_to_api_activity() -> None:
    doc = decision_event(request_for("alice"), decision_for(Effect.DENY, 7)).to_ocsf()
    assert (doc["class_uid"], doc["category_uid"], doc["activity_id"]) == (6003, 6, 2)
    assert doc["type_uid"] == 600302
    assert doc["type_name"] == "API Activity: Read"
    assert (doc["status_id"], doc["status"]) == (2, "Failure")
    assert doc["severity_id"] == Severity.LOW
    assert isinstance(doc["time"], int)
    assert abs(doc["time"] - time.time() * 1000) < 60_000
    product = doc["metadata"]["product"]
    assert product == {"name": "Verity", "vendor_name": "Verity", "version": product_version()}
    assert doc["metadata"]["version"].startswith("1.")
    assert doc["actor"]["user"]["uid"] == "alice"
    assert doc["actor"]["session"] == {"uid": "s-alice"}
    assert doc["src_endpoint"] == {"ip": "10.1.2.3", "location": {"country": "DE"}}
    assert doc["http_request"] == {
        "http_method": "GET",
        "url": {"hostname": "wiki.internal", "path": "/docs/a"},
    }
    assert doc["policy"] == {"uid": "policyhash01", "name": "docs", "is_applied": True}
    decision = doc["unmapped"]["verity"]["decision"]
    assert decision["decision_id"] == "d-test-000007"
    assert decision["effect"] == "deny"
    assert decision["reasons"] == [
        {
            "code": "device.disk_encrypted",
            "message": "Disk not encrypted",
            "hint": "Turn on FileVault",
            "rule": "docs",
        }
    ]
    assert "Disk not encrypted" in doc["message"]


def test_allow_decision_is_success_and_informational() -> None:
    doc = decision_event(request_for("bob", method="POST"), decision_for(Effect.ALLOW)).to_ocsf()
    assert (doc["status_id"], doc["severity_id"], doc["activity_id"]) == (1, 1, 1)


def test_policy_version_in_force_is_recorded() -> None:
    event = decision_event(request_for("a"), decision_for(Effect.ALLOW), policy_version="v9hash")
    assert event.to_ocsf()["policy"]["uid"] == "v9hash"


def test_non_http_decision_uses_the_action() -> None:
    request = AccessRequest(
        principal=Principal(id="svc", kind=PrincipalKind.SERVICE),
        time=time.time(),
        action="delete",
        resource=Resource(type="document", id="doc-1"),
    )
    obligation = Obligation(ObligationKind.STEP_UP_MFA)
    decision = Decision(Effect.DENY, None, "d1", "p1", (), (obligation,))
    doc = decision_event(request, decision).to_ocsf()
    assert doc["activity_id"] == 4
    assert doc["api"] == {"operation": "delete"}
    assert doc["resources"] == [{"type": "document", "uid": "doc-1"}]
    assert doc["actor"]["user"]["type"] == "System"
    assert doc["unmapped"]["verity"]["decision"]["obligations"] == ["step_up_mfa"]
    assert "name" not in doc["policy"]


EXPECTED = {
    EventKind.LOGIN: (3002, 1, Status.SUCCESS),
    EventKind.LOGOUT: (3002, 2, Status.SUCCESS),
    EventKind.MFA_FAILURE: (3002, 1, Status.FAILURE),
    EventKind.SESSION_REVOKED: (3002, 2, Status.SUCCESS),
    EventKind.POLICY_RELOADED: (6003, 3, Status.SUCCESS),
    EventKind.GRANT_CREATED: (3003, 1, Status.SUCCESS),
    EventKind.DEVICE_STATE_CHANGED: (6003, 3, Status.SUCCESS),
}


@pytest.mark.parametrize("kind", sorted(SESSION_KINDS, key=lambda k: k.value))
def test_session_events_map_to_ocsf(kind: EventKind) -> None:
    admin = UserRef("admin", email="admin@example.com")
    event = session_event(kind, user=UserRef("alice"), actor=admin, session_id="s1")
    doc = event.to_ocsf()
    class_uid, activity, status = EXPECTED[kind]
    assert (doc["class_uid"], doc["activity_id"], doc["status_id"]) == (class_uid, activity, status)
    assert doc["type_uid"] == class_uid * 100 + activity
    assert doc["unmapped"]["verity"]["kind"] == kind.value
    assert doc["actor"]["user"]["uid"] == "admin"
    assert doc["user"]["uid"] == "alice"


def test_mfa_failure_and_revocation_details() -> None:
    mfa = session_event(EventKind.MFA_FAILURE, user=UserRef("a")).to_ocsf()
    assert mfa["is_mfa"] is True
    assert mfa["status_detail"] == "mfa_failed"
    assert mfa["severity_id"] == Severity.MEDIUM
    revoked = session_event(EventKind.SESSION_REVOKED, user=UserRef("a")).to_ocsf()
    assert revoked["status_detail"] == "session_revoked"


def test_grant_and_policy_events_carry_their_objects() -> None:
    grant = session_event(EventKind.GRANT_CREATED, user=UserRef("a"), privileges=("db-admin",))
    assert grant.to_ocsf()["privileges"] == ["db-admin"]
    assert grant.class_uid is EventClass.AUTHORIZE_SESSION
    reload = session_event(EventKind.POLICY_RELOADED, resource=("policy", "abc123")).to_ocsf()
    assert reload["resources"] == [{"type": "policy", "uid": "abc123"}]
    assert reload["api"] == {"operation": "policy_reloaded"}


def test_authentication_failure() -> None:
    event = authentication_event(
        UserRef("alice"), success=False, mfa=True, src_ip="192.0.2.1", status_detail="bad_otp"
    )
    doc = event.to_ocsf()
    assert (doc["class_uid"], doc["activity_id"], doc["status_id"]) == (3002, 1, 2)
    assert doc["is_mfa"] is True
    assert doc["severity_id"] == 3
    assert doc["status_detail"] == "bad_otp"
    assert doc["src_endpoint"]["ip"] == "192.0.2.1"


def test_session_event_refuses_a_decision_kind() -> None:
    with pytest.raises(ValueError, match="not a session event kind"):
        session_event(EventKind.DECISION)


def test_events_are_frozen() -> None:
    event = session_event(EventKind.LOGIN, user=UserRef("a"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.message = "edited"  # type: ignore[misc]


def test_no_secret_reaches_the_record() -> None:
    """Tokens in headers, claims, query strings or detail values are never stored."""
    principal = Principal(id="alice", claims={"access_token": JWT, "pwd": "hunter2"})
    request = AccessRequest(
        principal=principal,
        time=time.time(),
        http=HttpTarget(
            host="app.internal",
            path=f"/cb?token={JWT}&password=hunter2",
            headers={"Authorization": f"Bearer {JWT}", "Cookie": "session=s3cr3t"},
        ),
        context={"raw_token": JWT},
    )
    decision_body = decision_event(request, decision_for(Effect.ALLOW)).encode().decode()
    detail = {"password": "hunter2", "client_secret": "s3cr3t", "note": f"got {JWT}", "ok": 1}
    login_body = session_event(EventKind.LOGIN, user=UserRef("a"), detail=detail).encode()
    for secret in (JWT, "hunter2", "s3cr3t", "Bearer"):
        assert secret not in decision_body
        assert secret not in login_body.decode()
    assert json.loads(decision_body)["http_request"]["url"]["path"] == "/cb"


def test_detail_is_checked_and_redacted() -> None:
    clean = redact_detail({"api_key": "k", "count": 3, "flag": True, "empty": None})
    assert dict(clean) == {"api_key": REDACTED, "count": 3, "flag": True, "empty": None}
    with pytest.raises(ValueError, match="detail key"):
        redact_detail({"Bad Key": 1})
    with pytest.raises(TypeError, match="float"):
        redact_detail({"ratio": 0.5})
