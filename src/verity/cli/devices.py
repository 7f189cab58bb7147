"""``verity devices register|report|list``: the device registry and posture reports.

    verity devices register laptop-042 --owner alice --attr model=mbp14 --attr asset=A-1187
    verity devices report laptop-042 posture.json          # or '-' (default): stdin
    verity devices list --owner alice --json

A posture report is one JSON object (what an MDM or an agent on the device knows):

    {"managed": true, "disk_encrypted": true, "screen_lock": true, "firewall": true,
     "os_type": "macos", "os_version": "14.4.1",
     "reported_at": "2026-11-22T15:00:00Z", "facts": {"agent": "osquery 5.12"}}

Every key is optional (a missing flag is ``false``, the OS ``unknown``, the time now);
others are refused, and so is a time more than 5 minutes ahead. A report older than the
one stored is ignored (``stored: false``).

Audit: registering a new device, changing its owner or attributes, and a report whose
posture differs from the newest stored one (or the first report) each write one
``device_state_changed`` event to the configured audit log, naming the changed fields
with their old and new values. A report that changes nothing writes none.

The gateway reads the posture of the device named by the ``device_id`` claim of a
verified token (``verity.gateway.device_facts``; docs/jit-access.md, "Device posture").

Exit codes: 0 done; 1 invalid report, unknown device, store or audit log unavailable;
2 usage error.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from ..audit import Receipt, UserRef
from ..audit.builders import device_event, posture_changes
from ..audit.ocsf import UserType
from ..errors import VerityError
from ..model import Device
from ..store import DeviceRecord, DeviceStore, PostureReport, UnknownDeviceError, postgres, sqlite
from . import render
from ._audited import (
    ConfigOption,
    JsonFlag,
    Recorder,
    UrlOption,
    iso,
    load,
    reporting_errors,
    usage,
)
from ._grant_ledger import open_database

app = typer.Typer(
    help="Register devices and record their posture reports.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals hold the store URL and its password
)

_FLAGS = ("managed", "disk_encrypted", "screen_lock", "firewall")
_TEXTS = ("os_type", "os_version")
_KEYS = frozenset((*_FLAGS, *_TEXTS, "reported_at", "facts"))
SYSTEM = UserRef(uid="verity", type=UserType.SYSTEM)
FUTURE_SKEW = 300

DeviceArg = Annotated[str, typer.Argument(metavar="DEVICE", help="The device id.")]
ActorOption = Annotated[
    str | None,
    typer.Option("--actor", help="Who acts (recorded in the audit log; default: verity)."),
]


class ReportError(VerityError):
    """A posture report that is not a valid JSON object of the known keys."""


def _stamp(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ReportError("reported_at: give UNIX seconds or an ISO 8601 time")
    if not isinstance(value, str):
        return float(value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ReportError("reported_at: give UNIX seconds or an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise ReportError("reported_at: give a time zone (e.g. Z or +01:00)")
    return parsed.timestamp()


def parse_report(device_id: str, text: str, *, now: float) -> PostureReport:
    """A ``PostureReport`` from the JSON text of a report (``ReportError`` if invalid)."""
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise ReportError(f"the report is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ReportError("the report is one JSON object")
    unknown = sorted(set(body) - _KEYS)
    if unknown:
        raise ReportError(f"unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_KEYS))}")
    posture: dict[str, Any] = {}
    for key in _FLAGS:
        if key in body and not isinstance(body[key], bool):
            raise ReportError(f"{key}: give true or false")
        posture[key] = body.get(key, False)
    for key in _TEXTS:
        if key in body and not isinstance(body[key], str):
            raise ReportError(f"{key}: give a string")
    posture["os_type"] = body.get("os_type", "unknown")
    posture["os_version"] = body.get("os_version", "")
    facts = body.get("facts", {})
    if not isinstance(facts, dict):
        raise ReportError("facts: give a JSON object")
    at = _stamp(body["reported_at"]) if "reported_at" in body else now
    if at > now + FUTURE_SKEW:  # it would shadow every later report
        raise ReportError(f"reported_at is more than {FUTURE_SKEW} s in the future")
    return PostureReport(device_id, at, Device(id=device_id, **posture), facts)


@contextmanager
def _device_store(url: str) -> Iterator[DeviceStore]:
    db = open_database(url)
    try:
        if isinstance(db, sqlite.SqliteDatabase):
            yield sqlite.SqliteDevices(db)
        else:
            yield postgres.PostgresDevices(db)
    finally:
        db.close()


@contextmanager
def _opened(config_path: Path | None, url: str | None) -> Iterator[tuple[DeviceStore, Recorder]]:
    """The device store and the audit log, the log first: nothing changes when it cannot
    be opened."""
    config, base = load(config_path, url)
    recorder = Recorder(config, base)
    try:
        with _device_store(config.store.url) as store:
            yield store, recorder
    finally:
        recorder.close()


def device_json(record: DeviceRecord) -> dict[str, Any]:
    """A device and its newest posture as JSON."""
    report = record.posture
    posture = None
    if report is not None:
        p = report.posture
        posture = {
            "managed": p.managed, "disk_encrypted": p.disk_encrypted,
            "screen_lock": p.screen_lock, "firewall": p.firewall, "os_type": p.os_type,
            "os_version": p.os_version, "reported_at": iso(report.reported_at),
            "facts": dict(report.facts),
        }  # fmt: skip
    return {
        "id": record.id,
        "owner": record.owner,
        "attributes": dict(record.attributes),
        "created": iso(record.created),
        "updated": iso(record.updated),
        "posture": posture,
    }


def _attributes(pairs: list[str] | None) -> dict[str, str]:
    attributes: dict[str, str] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise usage("give KEY=VALUE", "--attr")
        attributes[key.strip()] = value
    return attributes


def _actor(actor: str | None) -> UserRef:
    return UserRef(uid=actor) if actor else SYSTEM


def _audit_json(receipt: Receipt | None, uid: str | None) -> dict[str, Any] | None:
    return None if receipt is None else {"kind": "device_state_changed", "uid": uid,
                                         "seq": receipt.seq}  # fmt: skip


@app.command("register")
def register(
    device_id: DeviceArg,
    owner: Annotated[
        str | None, typer.Option("--owner", help="The principal (token sub) it belongs to.")
    ] = None,
    attr: Annotated[
        list[str] | None, typer.Option("--attr", help="KEY=VALUE (repeat); replaces all.")
    ] = None,
    actor: ActorOption = None,
    config_path: ConfigOption = None,
    url: UrlOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Register a device, or update its owner and attributes (its posture is kept)."""
    attributes = _attributes(attr)
    receipt = uid = None
    with reporting_errors(as_json=as_json), _opened(config_path, url) as (store, recorder):
        before = store.get(device_id)
        record = store.upsert(device_id, owner=owner, attributes=attributes)
        change = _registration_change(before, record)
        if change is not None:
            event = device_event(device_id, actor=_actor(actor), owner=owner, change=change)
            receipt = recorder.record(event, what=f"device {device_id} was {change}")
            uid = event.uid
    if as_json:
        document = {"device": device_json(record), "change": change}
        render.print_json(document | {"audit": _audit_json(receipt, uid)})
        return
    verb = change or "unchanged"
    render.line(render.stdout(), (f"{verb} ", "bold green"), (device_id, "bold"),
                f" (owner {owner or '-'})")  # fmt: skip


def _registration_change(before: DeviceRecord | None, after: DeviceRecord) -> str | None:
    if before is None:
        return "registered"
    same = before.owner == after.owner and dict(before.attributes) == dict(after.attributes)
    return None if same else "updated"


def _read(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    try:
        return Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"cannot read {source}: {exc.strerror}") from None


@app.command("report")
def report(
    device_id: DeviceArg,
    source: Annotated[
        str, typer.Argument(metavar="FILE", help="The JSON report, or '-' for standard input.")
    ] = "-",
    actor: ActorOption = None,
    config_path: ConfigOption = None,
    url: UrlOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Record a posture report; a change of posture is audited."""
    with reporting_errors(as_json=as_json):
        posture = parse_report(device_id, _read(source), now=time.time())
        with _opened(config_path, url) as (store, recorder):
            outcome = _store_report(store, recorder, posture, _actor(actor))
    if as_json:
        render.print_json(outcome.to_json())
        return
    _print_report(device_id, stored=outcome.stored, changed=outcome.changed)


@dataclass(frozen=True)
class _Reported:
    record: DeviceRecord
    stored: bool
    changed: tuple[str, ...]
    receipt: Receipt | None = None
    uid: str | None = None

    def to_json(self) -> dict[str, Any]:
        document = {"device": device_json(self.record), "stored": self.stored}
        return document | {"changed": list(self.changed),
                           "audit": _audit_json(self.receipt, self.uid)}  # fmt: skip


def _store_report(
    store: DeviceStore, recorder: Recorder, posture: PostureReport, actor: UserRef
) -> _Reported:
    """Store the report; audit it when it was stored and changed the posture."""
    device_id = posture.device_id
    before = store.get(device_id)
    if before is None:
        raise UnknownDeviceError(device_id)
    stored = store.report(posture)
    old = before.posture.posture if before.posture is not None else None
    changed = posture_changes(old, posture.posture) if stored else ()
    record = store.get(device_id) or before
    if not changed:
        return _Reported(record, stored, changed)
    event = device_event(
        device_id, actor=actor, owner=before.owner, change="posture", before=old,
        after=posture.posture,
    )  # fmt: skip
    receipt = recorder.record(event, what=f"device {device_id}'s posture was stored")
    return _Reported(record, stored, changed, receipt, event.uid)


def _print_report(device_id: str, *, stored: bool, changed: tuple[str, ...]) -> None:
    console = render.stdout()
    if not stored:
        render.line(console, ("ignored ", "yellow"), f"{device_id}: a newer report is stored")
    elif changed:
        render.line(
            console, ("posture changed ", "bold green"), f"{device_id}: {', '.join(changed)}"
        )
    else:
        render.line(console, ("stored ", "green"), f"{device_id}: posture unchanged")


@app.command("list")
def list_devices(
    owner: Annotated[str | None, typer.Option("--owner", help="Only this owner's.")] = None,
    config_path: ConfigOption = None,
    url: UrlOption = None,
    as_json: JsonFlag = False,
) -> None:
    """List devices and their newest posture."""
    with reporting_errors(as_json=as_json):
        config, _ = load(config_path, url)
        with _device_store(config.store.url) as store:
            records = store.list(owner=owner)
    if as_json:
        render.print_json({"devices": [device_json(r) for r in records]})
        return
    _print_table(records)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _row(record: DeviceRecord) -> tuple[str, ...]:
    report = record.posture
    if report is None:
        return (record.id, record.owner or "-", "-", "-", "-", "-", "-", "never")
    p = report.posture
    return (record.id, record.owner or "-", _yes(p.managed), _yes(p.disk_encrypted),
            _yes(p.screen_lock), _yes(p.firewall), f"{p.os_type} {p.os_version}".strip(),
            iso(report.reported_at) or "")  # fmt: skip


def _print_table(records: list[DeviceRecord]) -> None:
    console = render.stdout()
    if not records:
        render.line(console, "no devices")
        return
    columns = ("id", "owner", "managed", "disk", "lock", "firewall", "os", "reported")
    table = Table(*columns, highlight=False)
    for record in records:
        table.add_row(*(Text(cell) for cell in _row(record)))
    console.print(table, soft_wrap=True)
    render.line(console, f"{len(records)} device(s)")


__all__ = ["app", "device_json", "parse_report"]
