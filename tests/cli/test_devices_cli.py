"""``verity devices register|report|list`` on SQLite and PostgreSQL: the registry, posture
reports from a file or stdin, and ``device_state_changed`` audit events only when the
registration or the posture actually changes (in the signed, verified audit log)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from typer.testing import CliRunner, Result

from verity.cli.devices import app

from .test_grants_cli import Node, write_node

REPORT = {"managed": True, "disk_encrypted": True, "screen_lock": True, "firewall": True,
          "os_type": "macOS", "os_version": "14.4"}  # fmt: skip


def run(node: Node, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(
        app, [*args, "--config", str(node.config)], input=stdin, env={"COLUMNS": "200"}
    )


def ok(node: Node, *args: str, stdin: str | None = None) -> dict[str, Any]:
    result = run(node, *args, "--json", stdin=stdin)
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def device_events(node: Node) -> list[dict[str, Any]]:
    return [e for e in node.events() if e["unmapped"]["verity"]["kind"] == "device_state_changed"]


@pytest.fixture(params=["sqlite", "postgresql"])
def node(request: pytest.FixtureRequest, tmp_path: Path) -> Node:
    if request.param == "sqlite":
        return write_node(tmp_path, f"sqlite:///{tmp_path}/verity.db")
    dsn = request.getfixturevalue("postgres_dsn")
    schema = request.getfixturevalue("pg_schema")
    return write_node(tmp_path, f"{dsn}?options={quote(f'-csearch_path={schema}')}", schema)


def test_register_report_and_audit_only_changes(node: Node, tmp_path: Path) -> None:
    first = ok(node, "register", "laptop-1", "--owner", "alice", "--attr", "model=mbp14",
               "--actor", "it-admin")  # fmt: skip
    assert first["change"] == "registered"
    assert first["device"]["posture"] is None
    again = ok(node, "register", "laptop-1", "--owner", "alice", "--attr", "model=mbp14")
    assert again["change"] is None
    assert again["audit"] is None

    path = tmp_path / "posture.json"
    path.write_text(json.dumps(REPORT))
    reported = ok(node, "report", "laptop-1", str(path))
    assert reported["stored"] is True
    assert reported["device"]["posture"]["os_type"] == "macos"
    assert len(reported["changed"]) == 6, "the first report sets every field"
    same = ok(node, "report", "laptop-1", stdin=json.dumps(REPORT))
    assert (same["stored"], same["changed"], same["audit"]) == (True, [], None)
    worse = ok(node, "report", "laptop-1", "-",
               stdin=json.dumps(REPORT | {"disk_encrypted": False, "os_version": "14.5"}))  # fmt: skip
    assert worse["changed"] == ["disk_encrypted", "os_version"]

    events = device_events(node)
    assert len(events) == 3, "registered, first posture, the change; nothing for repeats"
    registered, _, changed = events
    assert registered["actor"]["user"]["uid"] == "it-admin"
    assert registered["user"]["uid"] == "alice"
    assert registered["resources"] == [{"type": "device", "uid": "laptop-1"}]
    assert registered["unmapped"]["verity"]["detail"]["change"] == "registered"
    assert (changed["class_uid"], changed["activity_id"]) == (6003, 3)
    assert changed["actor"]["user"] == {"uid": "verity", "type_id": 3, "type": "System"}
    detail = changed["unmapped"]["verity"]["detail"]
    assert detail["changed"] == "disk_encrypted,os_version"
    assert (detail["disk_encrypted"], detail["was_disk_encrypted"]) == (False, True)
    assert (detail["os_version"], detail["was_os_version"]) == ("14.5", "14.4")
    assert "managed" not in detail
    assert node.verified()


def test_an_older_report_is_ignored_and_not_audited(node: Node) -> None:
    ok(node, "register", "laptop-1", "--owner", "alice")
    ok(node, "report", "laptop-1", stdin=json.dumps(REPORT))
    stale = REPORT | {"firewall": False, "reported_at": time.time() - 3600}
    ignored = ok(node, "report", "laptop-1", stdin=json.dumps(stale))
    assert ignored["stored"] is False
    assert ignored["device"]["posture"]["firewall"] is True
    assert len(device_events(node)) == 2


def test_owner_change_is_an_update(node: Node) -> None:
    ok(node, "register", "laptop-1", "--owner", "alice")
    moved = ok(node, "register", "laptop-1", "--owner", "bob")
    assert moved["change"] == "updated"
    assert [d["id"] for d in ok(node, "list", "--owner", "bob")["devices"]] == ["laptop-1"]
    assert ok(node, "list", "--owner", "alice")["devices"] == []


def test_bad_reports_are_exit_1_and_change_nothing(node: Node) -> None:
    ok(node, "register", "laptop-1")
    for body, message in [
        ("not json", "not JSON"),
        ("[1]", "one JSON object"),
        ('{"managed": "yes"}', "managed: give true or false"),
        ('{"disk": true}', "unknown key(s) disk"),
        ('{"reported_at": "2026-01-01T00:00:00"}', "time zone"),
        (json.dumps({"reported_at": time.time() + 3600}), "in the future"),
    ]:
        result = run(node, "report", "laptop-1", stdin=body)
        assert result.exit_code == 1, body
        assert message in result.output, (body, result.output)
    unknown = run(node, "report", "nope", stdin="{}")
    assert unknown.exit_code == 1
    assert "not registered" in unknown.output
    assert ok(node, "list")["devices"][0]["posture"] is None
    assert len(device_events(node)) == 1


def test_human_list(node: Node) -> None:
    ok(node, "register", "laptop-1", "--owner", "alice")
    ok(node, "register", "kiosk")
    ok(node, "report", "laptop-1", stdin=json.dumps(REPORT))
    listing = run(node, "list")
    assert listing.exit_code == 0
    assert "laptop-1" in listing.stdout
    assert "macos 14.4" in listing.stdout
    assert "never" in listing.stdout
    assert "2 device(s)" in listing.stdout


def test_bad_attribute_is_exit_2(node: Node) -> None:
    assert run(node, "register", "laptop-1", "--attr", "novalue").exit_code == 2
