"""``grant_event`` and ``device_event``: OCSF mapping of the JIT grant lifecycle and of
device changes, and no secret in their free text."""

from __future__ import annotations

import pytest

from verity.audit import EventKind, UserRef
from verity.audit.builders import GRANT_KINDS, REDACTED, device_event, grant_event, posture_changes
from verity.model import Device
from verity.store import Grant, GrantStatus

GRANT = Grant("g1", "alice", "prod-db", "INC-1", 7200.0, 1_800_000_000.0,
              GrantStatus.APPROVED, "bob", 1_800_000_010.0, 1_800_000_010.0, 1_800_007_210.0)  # fmt: skip
EXPECTED = {
    EventKind.GRANT_CREATED: (3003, 1, 1, 2),
    EventKind.GRANT_APPROVED: (3003, 1, 1, 3),
    EventKind.GRANT_DENIED: (3003, 1, 2, 2),
    EventKind.GRANT_EXPIRED: (3003, 99, 1, 1),
}


@pytest.mark.parametrize("kind", sorted(GRANT_KINDS, key=lambda k: k.value))
def test_grant_events_map_to_ocsf(kind: EventKind) -> None:
    doc = grant_event(kind, GRANT, actor=UserRef("bob"), time=1_800_000_010.0).to_ocsf()
    got = (doc["class_uid"], doc["activity_id"], doc["status_id"], doc["severity_id"])
    assert got == EXPECTED[kind]
    assert doc["type_uid"] == doc["class_uid"] * 100 + doc["activity_id"]
    assert doc["time"] == 1_800_000_010_000
    assert doc["actor"]["user"]["uid"] == "bob"
    assert doc["user"]["uid"] == "alice"
    assert doc["privileges"] == ["prod-db"]
    assert doc["resources"] == [{"type": "grant", "uid": "g1"}]
    detail = doc["unmapped"]["verity"]["detail"]
    assert detail["expires_ms"] == 1_800_007_210_000
    assert detail["duration_seconds"] == 7200


def test_only_grant_kinds() -> None:
    with pytest.raises(ValueError, match="not a grant event kind"):
        grant_event(EventKind.LOGIN, GRANT, actor=UserRef("bob"))


def test_a_token_pasted_into_the_reason_is_redacted() -> None:
    token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl"
    leaky = Grant("g2", "alice", "prod-db", f"use {token}", 60.0, 1.0)
    doc = grant_event(EventKind.GRANT_CREATED, leaky, actor=UserRef("alice")).to_ocsf()
    assert doc["unmapped"]["verity"]["detail"]["reason"] == REDACTED
    assert token not in str(doc)


def test_device_event_names_changed_fields_with_old_and_new_values() -> None:
    before = Device("d1", managed=True, disk_encrypted=True, os_type="macos", os_version="14.4")
    after = Device("d1", managed=True, disk_encrypted=False, os_type="macos", os_version="14.5")
    assert posture_changes(before, after) == ("disk_encrypted", "os_version")
    assert len(posture_changes(None, after)) == 6
    event = device_event("d1", actor=UserRef("agent"), owner="alice", change="posture",
                         before=before, after=after)  # fmt: skip
    doc = event.to_ocsf()
    assert (doc["class_uid"], doc["activity_id"]) == (6003, 3)
    assert doc["unmapped"]["verity"]["kind"] == "device_state_changed"
    assert doc["resources"] == [{"type": "device", "uid": "d1"}]
    detail = doc["unmapped"]["verity"]["detail"]
    assert detail["changed"] == "disk_encrypted,os_version"
    assert (detail["disk_encrypted"], detail["was_disk_encrypted"]) == (False, True)
    assert "managed" not in detail
    assert "disk_encrypted,os_version" in doc["message"]
