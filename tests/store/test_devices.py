"""DeviceStore behaviour, identical on every backend."""

from __future__ import annotations

from typing import Any

import pytest

from verity.model import Device
from verity.store import PostureReport, UnknownDeviceError

T = 1_000_000.0


def _report(at: float, *, encrypted: bool = True) -> PostureReport:
    posture = Device(id="d1", managed=True, disk_encrypted=encrypted, os_type="macOS",
                     os_version="14.5")  # fmt: skip
    return PostureReport("d1", at, posture, {"agent": "1.2"})


def test_register_update_and_list(devices: Any) -> None:
    first = devices.upsert("d1", owner="alice", attributes={"serial": "A"}, now=T)
    devices.upsert("d2", owner="bob", now=T)
    assert (first.owner, dict(first.attributes), first.posture) == ("alice", {"serial": "A"}, None)
    moved = devices.upsert("d1", owner="carol", attributes={"serial": "B"}, now=T + 5)
    assert (moved.owner, moved.created, moved.updated) == ("carol", T, T + 5)
    assert [d.id for d in devices.list()] == ["d1", "d2"]
    assert [d.id for d in devices.list(owner="bob")] == ["d2"]
    assert devices.delete("d2") is True
    assert devices.get("d2") is None


def test_a_posture_report_reads_back_as_the_model_device(devices: Any) -> None:
    devices.upsert("d1", owner="alice", now=T)
    assert devices.report(_report(T + 1)) is True
    posture = devices.get("d1").posture
    assert posture == _report(T + 1)
    assert posture.posture.os_type == "macos"


def test_an_older_report_never_replaces_a_newer_one(devices: Any) -> None:
    devices.upsert("d1", owner="alice", now=T)
    assert devices.report(_report(T + 10, encrypted=False)) is True
    assert devices.report(_report(T + 5, encrypted=True)) is False
    assert devices.get("d1").posture.posture.disk_encrypted is False
    devices.upsert("d1", owner="alice", now=T + 20)  # re-registering keeps the posture
    assert devices.get("d1").posture.reported_at == T + 10


def test_a_report_for_an_unknown_device_is_refused(devices: Any) -> None:
    with pytest.raises(UnknownDeviceError):
        devices.report(_report(T))
