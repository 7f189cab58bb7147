"""Devices and their newest posture report in PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

from psycopg.types.json import Jsonb

from .._common import check_text, current
from ..errors import UnknownDeviceError
from ..records import DeviceRecord, JsonObject, PostureReport
from .db import PostgresDatabase

_SELECT = "select id, owner, created, updated, attributes, posture, reported_at from verity_devices"


def _record(row: tuple[Any, ...]) -> DeviceRecord:
    posture = None
    if row[5] is not None:
        posture = PostureReport.from_json(row[0], row[6], json.dumps(row[5]))
    return DeviceRecord(row[0], row[1], row[2], row[3], row[4], posture)


class PostgresDevices:
    """``DeviceStore`` on PostgreSQL."""

    def __init__(self, db: PostgresDatabase) -> None:
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
        params = (check_text("device id", device_id), owner, at, at, Jsonb(dict(attributes or {})))
        with self._db.connection() as conn:
            row = conn.execute(
                "insert into verity_devices (id, owner, created, updated, attributes) "
                "values (%s, %s, %s, %s, %s) on conflict (id) do update set "
                "owner = excluded.owner, updated = excluded.updated, "
                "attributes = excluded.attributes returning id, owner, created, updated, "
                "attributes, posture, reported_at",
                params,
            ).fetchone()
        if row is None:  # pragma: no cover - an upsert always returns its row
            raise RuntimeError("upsert returned no row")
        return _record(row)

    def report(self, report: PostureReport) -> bool:
        """Store a posture report unless a newer one is stored (atomic per device row)."""
        with self._db.connection() as conn:
            cursor = conn.execute(
                "update verity_devices set posture = %s::jsonb, reported_at = %s "
                "where id = %s and (reported_at is null or reported_at < %s)",
                (report.to_json(), report.reported_at, report.device_id, report.reported_at),
            )
            if cursor.rowcount:
                return True
            known = conn.execute("select 1 from verity_devices where id = %s", (report.device_id,))
            if known.fetchone() is None:
                raise UnknownDeviceError(report.device_id)
        return False

    def get(self, device_id: str) -> DeviceRecord | None:
        """The device, or ``None``."""
        with self._db.connection() as conn:
            row = conn.execute(_SELECT + " where id = %s", (device_id,)).fetchone()
        return None if row is None else _record(row)

    def list(self, *, owner: str | None = None) -> list[DeviceRecord]:
        """Every device, or those of ``owner``, by id."""
        with self._db.connection() as conn:
            if owner is None:
                rows = conn.execute(_SELECT + " order by id").fetchall()
            else:
                rows = conn.execute(_SELECT + " where owner = %s order by id", (owner,)).fetchall()
        return [_record(row) for row in rows]

    def delete(self, device_id: str) -> bool:
        """Forget a device."""
        with self._db.connection() as conn:
            cursor = conn.execute("delete from verity_devices where id = %s", (device_id,))
            return cursor.rowcount > 0
