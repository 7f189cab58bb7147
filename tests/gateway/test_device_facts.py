"""``DeviceFacts``: the posture of the device named by a verified claim, from a real
SQLite ``DeviceStore``; no device when there is no claim, no report, another owner, a
stale report or a store that is down; cached per device for a bounded time and size."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from verity.gateway.device_facts import DeviceFacts
from verity.gateway.facts import FactQuery
from verity.model import Device, HttpTarget, NetworkContext, Principal
from verity.store import PostureReport, sqlite

pytestmark = pytest.mark.anyio
T0 = 1_800_000_000.0
GOOD = Device(id="laptop-1", managed=True, disk_encrypted=True, screen_lock=True,
              firewall=True, os_type="macos", os_version="14.4")  # fmt: skip


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite.SqliteDatabase]:
    database = sqlite.SqliteDatabase(tmp_path / "verity.db")
    sqlite.migrate(database)
    yield database
    database.close()


@pytest.fixture
def store(db: sqlite.SqliteDatabase) -> sqlite.SqliteDevices:
    devices = sqlite.SqliteDevices(db)
    devices.upsert("laptop-1", owner="alice", now=T0 - 100)
    devices.report(PostureReport("laptop-1", T0 - 60, GOOD))
    return devices


def query(principal: str = "alice", **claims: Any) -> FactQuery:
    who = Principal(principal, claims=claims)
    return FactQuery(who, HttpTarget("app.test"), NetworkContext(), "app")


async def test_the_claimed_device_posture(store: sqlite.SqliteDevices) -> None:
    facts = await DeviceFacts(store, clock=Clock()).facts(query(device_id="laptop-1"))
    assert facts.device == GOOD


async def test_no_claim_no_device_and_no_query(store: sqlite.SqliteDevices) -> None:
    source = DeviceFacts(store, clock=Clock())
    assert (await source.facts(query())).device is None
    assert (await source.facts(query(device_id=""))).device is None
    assert (await source.facts(query(device_id=["laptop-1"]))).device is None
    anonymous = FactQuery(Principal.anonymous(), HttpTarget("app.test"), NetworkContext(), "a")
    assert (await source.facts(anonymous)).device is None
    assert source.queries == 0


async def test_the_claim_name_is_configurable(store: sqlite.SqliteDevices) -> None:
    source = DeviceFacts(store, claim="dev", clock=Clock())
    assert (await source.facts(query(dev="laptop-1"))).device == GOOD
    assert (await source.facts(query(device_id="laptop-1"))).device is None


async def test_unknown_or_unreported_devices_are_no_device(store: sqlite.SqliteDevices) -> None:
    store.upsert("fresh", owner="alice", now=T0)
    source = DeviceFacts(store, clock=Clock())
    assert (await source.facts(query(device_id="nope"))).device is None
    assert (await source.facts(query(device_id="fresh"))).device is None


async def test_another_owners_device_gives_nothing(
    store: sqlite.SqliteDevices, caplog: pytest.LogCaptureFixture
) -> None:
    source = DeviceFacts(store, clock=Clock())
    with caplog.at_level("WARNING", logger="verity.security"):
        assert (await source.facts(query("mallory", device_id="laptop-1"))).device is None
    assert "device.owner_mismatch" in caplog.text
    assert (await source.facts(query(" ALICE ", device_id="laptop-1"))).device == GOOD


async def test_a_shared_device_serves_anyone(store: sqlite.SqliteDevices) -> None:
    store.upsert("kiosk", owner=None, now=T0)
    kiosk = replace(GOOD, id="kiosk")
    store.report(PostureReport("kiosk", T0 - 1, kiosk))
    source = DeviceFacts(store, clock=Clock())
    assert (await source.facts(query("bob", device_id="kiosk"))).device == kiosk


async def test_a_stale_report_is_no_device(store: sqlite.SqliteDevices) -> None:
    clock = Clock(T0 - 60 + 3600)
    source = DeviceFacts(store, max_age_seconds=3600, clock=clock)
    assert (await source.facts(query(device_id="laptop-1"))).device == GOOD
    clock.now += 0.001
    assert (await source.facts(query(device_id="laptop-1"))).device is None


async def test_a_new_report_shows_after_the_ttl(store: sqlite.SqliteDevices) -> None:
    clock = Clock()
    source = DeviceFacts(store, ttl_seconds=2.0, clock=clock)
    assert (await source.facts(query(device_id="laptop-1"))).device == GOOD
    worse = Device(id="laptop-1", managed=True, os_type="macos", os_version="14.4")
    store.report(PostureReport("laptop-1", T0, worse))
    clock.now = T0 + 1.9
    assert (await source.facts(query(device_id="laptop-1"))).device == GOOD
    clock.now = T0 + 2
    assert (await source.facts(query(device_id="laptop-1"))).device == worse
    assert source.queries == 2


async def test_a_store_that_is_down_is_no_device(
    db: sqlite.SqliteDatabase, store: sqlite.SqliteDevices, caplog: pytest.LogCaptureFixture
) -> None:
    source = DeviceFacts(store, clock=Clock())
    db.close()
    with caplog.at_level("WARNING", logger="verity.security"):
        assert (await source.facts(query(device_id="laptop-1"))).device is None
    assert "devices.unavailable" in caplog.text


def test_settings_are_checked(store: sqlite.SqliteDevices) -> None:
    with pytest.raises(ValueError, match="claim"):
        DeviceFacts(store, claim="")
    with pytest.raises(ValueError, match="max_entries"):
        DeviceFacts(store, max_entries=0)
