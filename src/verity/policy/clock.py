"""Local weekday and minute of a UNIX time in an IANA zone, fast.

``datetime.fromtimestamp(t, zone)`` costs about a microsecond; time windows are checked on
every decision. A zone's UTC offset is constant between transitions, so offsets are cached
per 15-minute bucket of UTC time, and only when the offset is the same at both ends of the
bucket (a bucket that contains a transition is always computed exactly).
"""

from __future__ import annotations

import zoneinfo
from datetime import datetime, timedelta

BUCKET = 900  # seconds; LocalClock.offsets is keyed by int(t // BUCKET)
_MAX_ENTRIES = 65536


class LocalClock:
    """Converts UNIX seconds to (weekday Monday=0, minute of day) in one zone."""

    __slots__ = ("offsets", "zone")

    def __init__(self, tz: str) -> None:
        self.zone = zoneinfo.ZoneInfo(tz)
        self.offsets: dict[int, int] = {}
        """UTC offset (seconds) by bucket; only buckets without a transition are cached."""

    def _offset(self, t: float) -> int | None:
        bucket = int(t // BUCKET)
        offset = self.offsets.get(bucket)
        if offset is not None:
            return offset
        start = bucket * BUCKET
        first = _utc_offset(start, self.zone)
        if first != _utc_offset(start + BUCKET - 1, self.zone):
            return None
        if len(self.offsets) >= _MAX_ENTRIES:
            self.offsets.clear()
        self.offsets[bucket] = first
        return first

    def local(self, t: float) -> tuple[int, int]:
        """(weekday, minute of day) of ``t`` in this zone."""
        offset = self._offset(t)
        if offset is None:
            moment = datetime.fromtimestamp(t, self.zone)
            return moment.weekday(), moment.hour * 60 + moment.minute
        local = int(t // 1) + offset
        days, seconds = divmod(local, 86400)
        return (days + 3) % 7, seconds // 60  # 1970-01-01 was a Thursday (weekday 3)


_CLOCKS: dict[str, LocalClock] = {}


def clock_for(tz: str) -> LocalClock:
    """The one ``LocalClock`` of a zone: every time window in that zone shares its offset
    cache (a policy with a window per role would otherwise warm a cache per role)."""
    clock = _CLOCKS.get(tz)
    if clock is None:
        clock = _CLOCKS.setdefault(tz, LocalClock(tz))
    return clock


def _utc_offset(t: int, zone: zoneinfo.ZoneInfo) -> int:
    delta = datetime.fromtimestamp(t, zone).utcoffset() or timedelta(0)
    return int(delta.total_seconds())


def describe_local(t: float, tz: str) -> str:
    """``"Sat 10:14"`` - the local time of ``t`` in ``tz``, for messages."""
    moment = datetime.fromtimestamp(t, zoneinfo.ZoneInfo(tz))
    return moment.strftime("%a %H:%M")
