"""LocalClock (cached UTC offsets) against datetime.fromtimestamp, around real transitions."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from verity.policy.clock import LocalClock, describe_local

# (zone, a UTC moment next to a transition): EU and US DST ends and starts, a half-hour
# DST shift (Lord Howe), a :45 offset (Kathmandu), a zone without DST (Kolkata, +05:30).
TRANSITIONS = [
    ("Europe/Berlin", "2025-03-30T01:00:00"),
    ("Europe/Berlin", "2025-10-26T01:00:00"),
    ("America/New_York", "2025-03-09T07:00:00"),
    ("America/New_York", "2025-11-02T06:00:00"),
    ("Australia/Lord_Howe", "2025-04-05T15:00:00"),
    ("Australia/Lord_Howe", "2025-10-04T15:30:00"),
    ("Asia/Kathmandu", "2025-06-01T18:15:00"),
    ("Asia/Kolkata", "2025-06-01T18:30:00"),
    ("UTC", "1969-12-31T23:00:00"),
    ("Europe/Amsterdam", "1940-05-15T23:40:00"),  # +00:20 -> +02:00, mid-bucket
]


def _expected(t: float, zone: str) -> tuple[int, int]:
    moment = datetime.fromtimestamp(t, ZoneInfo(zone))
    return moment.weekday(), moment.hour * 60 + moment.minute


@pytest.mark.parametrize(("zone", "moment"), TRANSITIONS)
def test_local_time_matches_datetime_across_transitions(zone: str, moment: str) -> None:
    clock = LocalClock(zone)
    center = datetime.fromisoformat(moment).replace(tzinfo=UTC).timestamp()
    # every 7 seconds for three hours either side, twice (second pass hits the cache)
    for _ in range(2):
        for t in range(int(center) - 3 * 3600, int(center) + 3 * 3600, 7):
            assert clock.local(t) == _expected(t, zone), (zone, t)


def test_fractional_seconds_round_down() -> None:
    clock = LocalClock("UTC")
    assert clock.local(59.999) == (3, 0)
    assert clock.local(60.0) == (3, 1)


def test_buckets_containing_a_transition_are_not_cached() -> None:
    clock = LocalClock("Europe/Amsterdam")
    switch = datetime.fromisoformat("1940-05-15T23:40:00+00:00").timestamp()
    for t in (switch - 61, switch - 1, switch, switch + 1):
        assert clock.local(t) == _expected(t, "Europe/Amsterdam")
    assert int(switch // 900) not in clock.offsets
    clock.local(switch + 3600)
    assert int((switch + 3600) // 900) in clock.offsets


def test_describe_local_names_weekday_and_time() -> None:
    t = datetime.fromisoformat("2025-11-22T09:14:00+00:00").timestamp()
    assert describe_local(t, "Europe/Berlin") == "Sat 10:14"
