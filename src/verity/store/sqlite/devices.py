"""Devices and their newest posture report in SQLite."""

from __future__ import annotations

from .._common import check_text, current
from ..errors import UnknownDeviceError
from ..records import DeviceRecord, JsonObject, PostureReport, dump_json, load_json
from .db import Row, SqliteDatabase

_SELECT = "select id, owner, created, updated, attributes, posture, reported_at from verity_devices"


def _record(row: Row) -> DeviceRecord:
    posture = None if row[5] is None else PostureReport.from_json(row[0], row[6], row[5])
    return DeviceRecord(row[0], row[1], row[2], row[3], load_json(row[4]), posture)


class SqliteDevices:
    """``DeviceStore`` on a SQLite file."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    def upsert(
        self,
        device_id: str,
        *,
        owner: str | None,
        attributes: JsonObject | None = None,
        now: float | None = None,
    ) -> DeviceRecord:
        """Register or update a device (its posture is kept)."""
        at = current(now)
        params = (check_text("device id", device_id), owner, at, at, dump_json(attributes))
        with self._db.write() as conn:
            conn.execute(
                "insert into verity_devices (id, owner, created, updated, attributes) "
                "values (?, ?, ?, ?, ?) on conflict (id) do update set owner = excluded.owner, "
                "updated = excluded.updated, attributes = excluded.attributes",
                params,
            )
            row = conn.execute(_SELECT + " where id = ?", (device_id,)).fetchone()
        return _record(row)

    def report(self, report: PostureReport) -> bool:
        """Store a posture report unless a newer one is stored."""
        with self._db.write() as conn:
            cursor = conn.execute(
                "update verity_devices set posture = ?, reported_at = ? "
                "where id = ? and (reported_at is null or reported_at < ?)",
                (report.to_json(), report.reported_at, report.device_id, report.reported_at),
            )
            if cursor.rowcount:
                return True
            known = conn.execute("select 1 from verity_devices where id = ?", (report.device_id,))
            if known.fetchone() is None:
                raise UnknownDeviceError(report.device_id)
        return False

    def get(self, device_id: str) -> DeviceRecord | None:
        """The device, or ``None``."""
        row = self._db.query_one(_SELECT + " where id = ?", (device_id,))
        return None if row is None else _record(row)

    def list(self, *, owner: str | None = None) -> list[DeviceRecord]:
        """Every device, or those of ``owner``, by id."""
        if owner is None:
            rows = self._db.query(_SELECT + " order by id")
        else:
            rows = self._db.query(_SELECT + " where owner = ? order by id", (owner,))
        return [_record(row) for row in rows]

    def delete(self, device_id: str) -> bool:
        """Forget a device."""
        with self._db.write() as conn:
            return (
                conn.execute("delete from verity_devices where id = ?", (device_id,)).rowcount > 0
            )
