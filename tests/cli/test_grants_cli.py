"""``verity grants request|approve|deny|list|expire`` on SQLite and PostgreSQL: the grant
in the store, exit codes 0/1/2, JSON shapes, and one audit event per change in the
configured (signed, verified) audit log."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from typer.testing import CliRunner, Result

from verity.audit import (
    Query,
    generate_key,
    load_public_key,
    open_store,
    public_key_path,
    verify,
)
from verity.audit.sqlite import SQLiteStore
from verity.cli.grants import app
from verity.store import apply_migrations, postgres, sqlite
from verity.store.factory import backend_of, sqlite_path


@dataclass
class Node:
    """A configuration file naming a store and its signed audit log."""

    config: Path
    store_url: str
    audit_url: str
    audit_schema: str | None
    key: Path

    def run(self, *args: str, env: dict[str, str] | None = None) -> Result:
        full = [*args, "--config", str(self.config)]
        environment = {"COLUMNS": "200", "VERITY_PRINCIPAL": "", **(env or {})}
        return CliRunner().invoke(app, full, env=environment)

    def ok(self, *args: str) -> dict[str, Any]:
        result = self.run(*args, "--json")
        assert result.exit_code == 0, result.output
        document: dict[str, Any] = json.loads(result.stdout)
        return document

    def events(self) -> list[dict[str, Any]]:
        store = open_store(self.audit_url, schema=self.audit_schema, create=False)
        try:
            return [record.event() for record in store.query(Query())]
        finally:
            store.close()

    def verified(self) -> bool:
        store = open_store(self.audit_url, schema=self.audit_schema, create=False)
        try:
            report = verify(store, load_public_key(public_key_path(self.key)))
            return report.ok and report.signatures_checked
        finally:
            store.close()

    @contextmanager
    def grant_store(self) -> Iterator[Any]:
        """The node's GrantStore, opened directly (to file grants in the past)."""
        if backend_of(self.store_url) == "sqlite":
            db: Any = sqlite.SqliteDatabase(sqlite_path(self.store_url))
            store: Any = sqlite.SqliteGrants(db)
        else:
            db = postgres.PostgresDatabase(self.store_url, max_size=1)
            store = postgres.PostgresGrants(db)
        try:
            yield store
        finally:
            db.close()


def write_node(tmp_path: Path, store_url: str, audit_schema: str | None = None) -> Node:
    key = tmp_path / "audit.key"
    generate_key(key)
    schema_line = f"  pg_schema: {audit_schema}\n" if audit_schema else ""
    config = tmp_path / "verity.yaml"
    config.write_text(
        f"store: {{url: '{store_url}'}}\naudit:\n  signing_key: audit.key\n{schema_line}"
    )
    apply_migrations(store_url)  # what `verity db migrate` (or `verity serve`) did
    if backend_of(store_url) == "sqlite":
        path = sqlite_path(store_url)
        audit_url = f"sqlite:///{path.with_name(path.stem + '-audit.db')}"
    else:
        audit_url = store_url
    return Node(config, store_url, audit_url, audit_schema, key)


@pytest.fixture(params=["sqlite", "postgresql"])
def node(request: pytest.FixtureRequest, tmp_path: Path) -> Node:
    if request.param == "sqlite":
        return write_node(tmp_path, f"sqlite:///{tmp_path}/verity.db")
    dsn = request.getfixturevalue("postgres_dsn")
    schema = request.getfixturevalue("pg_schema")
    url = f"{dsn}?options={quote(f'-csearch_path={schema}')}"
    return write_node(tmp_path, url, audit_schema=schema)


def request_grant(node: Node, name: str = "prod-db", principal: str = "alice") -> dict[str, Any]:
    return node.ok("request", name, "--for", "2h", "--reason", "INC-42 index", "--principal",
                   principal)  # fmt: skip


def test_request_approve_list_and_audit(node: Node) -> None:
    filed = request_grant(node)
    grant = filed["grant"]
    assert grant["status"] == "pending"
    assert grant["active"] is False
    assert grant["duration_seconds"] == 7200
    assert filed["audit"]["kind"] == "grant_created"
    assert node.ok("list", "--active")["grants"] == []

    before = time.time()
    decided = node.ok("approve", grant["id"], "--approver", "bob")["grant"]
    assert decided["status"] == "approved"
    assert decided["approver"] == "bob"
    assert decided["active"] is True
    active = node.ok("list", "--active", "--principal", "alice")["grants"]
    assert [g["id"] for g in active] == [grant["id"]]
    assert node.ok("list", "--active", "--principal", "carol")["grants"] == []

    events = node.events()
    assert [e["unmapped"]["verity"]["kind"] for e in events] == ["grant_created", "grant_approved"]
    created, approved = events
    assert (created["class_uid"], created["activity_id"], created["status_id"]) == (3003, 1, 1)
    assert created["actor"]["user"]["uid"] == "alice"
    assert created["user"]["uid"] == "alice"
    assert created["privileges"] == ["prod-db"]
    assert created["resources"] == [{"type": "grant", "uid": grant["id"]}]
    assert created["status_detail"] == "pending"
    detail = created["unmapped"]["verity"]["detail"]
    assert detail["grant_id"] == grant["id"]
    assert detail["grant_name"] == "prod-db"
    assert detail["principal"] == "alice"
    assert detail["duration_seconds"] == 7200
    assert detail["reason"] == "INC-42 index"
    assert approved["actor"]["user"]["uid"] == "bob"
    assert approved["user"]["uid"] == "alice"
    assert approved["status_detail"] == "approved"
    assert approved["severity_id"] == 3
    ends_ms = approved["unmapped"]["verity"]["detail"]["expires_ms"]
    assert before * 1000 + 7200_000 - 1000 <= ends_ms <= time.time() * 1000 + 7200_000
    assert node.verified()


def test_deny_is_audited_as_a_failure(node: Node) -> None:
    grant = request_grant(node)["grant"]
    denied = node.ok("deny", grant["id"], "--approver", "bob")
    assert denied["grant"]["status"] == "denied"
    assert denied["audit"]["kind"] == "grant_denied"
    event = node.events()[-1]
    assert (event["class_uid"], event["activity_id"], event["status_id"]) == (3003, 1, 2)
    assert event["actor"]["user"]["uid"] == "bob"
    assert node.ok("list", "--status", "denied")["grants"][0]["id"] == grant["id"]


def test_self_approval_is_refused_and_changes_nothing(node: Node) -> None:
    grant = request_grant(node)["grant"]
    result = node.run("approve", grant["id"], "--approver", " ALICE ")
    assert result.exit_code == 1
    assert "cannot decide their own request" in result.output
    assert node.ok("list")["grants"][0]["status"] == "pending"
    assert len(node.events()) == 1, "only the request was audited"


def test_a_grant_is_decided_once(node: Node) -> None:
    grant = request_grant(node)["grant"]
    node.ok("approve", grant["id"], "--approver", "bob")
    again = node.run("deny", grant["id"], "--approver", "carol")
    assert again.exit_code == 1
    assert "is approved, not pending" in again.output
    assert [e["unmapped"]["verity"]["kind"] for e in node.events()] == [
        "grant_created",
        "grant_approved",
    ]


def test_expire_sweeps_ended_grants_once_each(node: Node) -> None:
    now = time.time()
    with node.grant_store() as store:
        old = store.request("dave", "prod-db", duration=60, reason="night shift", now=now - 600)
        store.approve(old.id, approver="bob", now=now - 500)  # ended 440 s ago
    live = request_grant(node, principal="erin")["grant"]
    node.ok("approve", live["id"], "--approver", "bob")
    swept = node.ok("expire")["expired"]
    assert [g["id"] for g in swept] == [old.id]
    assert swept[0]["status"] == "expired"
    assert node.ok("expire")["expired"] == [], "each grant is expired (and audited) once"
    events = [e for e in node.events() if e["unmapped"]["verity"]["kind"] == "grant_expired"]
    assert len(events) == 1
    assert events[0]["actor"]["user"] == {"uid": "verity", "type_id": 3, "type": "System"}
    assert events[0]["user"]["uid"] == "dave"
    assert events[0]["activity_id"] == 99
    assert events[0]["unmapped"]["verity"]["detail"]["grant_id"] == old.id
    assert node.verified()


def test_human_output_names_the_next_step(node: Node) -> None:
    result = node.run("request", "prod-db", "--for", "1h30m", "--reason", "r",
                      "--principal", "alice")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "requested grant 'prod-db' for alice" in result.stdout
    assert "1h30m once approved" in result.stdout
    grant_id = node.ok("list")["grants"][0]["id"]
    assert f"verity grants approve {grant_id} --approver" in result.stdout
    listing = node.run("list")
    assert grant_id in listing.stdout
    assert "pending" in listing.stdout
    assert "1 grant(s)" in listing.stdout


def test_unknown_grant_is_exit_1_with_a_json_error(node: Node) -> None:
    result = node.run("approve", "no-such-grant", "--approver", "bob", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stderr)["error"]["type"] == "GrantNotFoundError"
    assert node.events() == []


def test_usage_errors_are_exit_2(tmp_path: Path) -> None:
    node = write_node(tmp_path, f"sqlite:///{tmp_path}/verity.db")
    bad = node.run("request", "prod-db", "--for", "2 hours", "--reason", "r", "--principal", "a")
    assert bad.exit_code == 2
    assert "a duration is like 90s" in bad.output
    too_long = node.run("request", "prod-db", "--for", "31d", "--reason", "r", "--principal", "a")
    assert too_long.exit_code == 2
    no_reason = node.run("request", "prod-db", "--for", "1h", "--reason", " ", "--principal", "a")
    assert no_reason.exit_code == 2
    nobody = node.run("request", "prod-db", "--for", "1h", "--reason", "r")
    assert nobody.exit_code == 2
    assert "VERITY_PRINCIPAL" in nobody.output
    bad_url = node.run("list", "--url", "mysql://x")
    assert bad_url.exit_code == 2


def test_principal_from_the_environment(tmp_path: Path) -> None:
    node = write_node(tmp_path, f"sqlite:///{tmp_path}/verity.db")
    result = node.run("request", "prod-db", "--for", "1h", "--reason", "r", "--json",
                      env={"VERITY_PRINCIPAL": "frank"})  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["grant"]["principal"] == "frank"


def test_a_missing_sqlite_store_is_not_created(tmp_path: Path) -> None:
    node = write_node(tmp_path, f"sqlite:///{tmp_path}/verity.db")
    typo = tmp_path / "verity-typo.db"
    result = node.run("list", "--url", f"sqlite:///{typo}")
    assert result.exit_code == 1
    assert "does not exist" in result.output
    assert not typo.exists()


def test_an_audit_log_that_cannot_be_opened_changes_nothing(tmp_path: Path) -> None:
    node = write_node(tmp_path, f"sqlite:///{tmp_path}/verity.db")
    (tmp_path / "audit.key").write_text("not a key")
    result = node.run("request", "prod-db", "--for", "1h", "--reason", "r", "--principal", "a")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert node.ok("list")["grants"] == []


def test_an_unacknowledged_audit_event_is_exit_1_naming_the_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change whose audit event is not durable within ``audit.timeout_seconds`` exits 1.

    The audit store stalls (its commit waits until the test lets it go), so the event
    cannot be acknowledged in time whatever the machine's load: deterministic, unlike a
    timeout merely too short to meet."""
    node = write_node(tmp_path, f"sqlite:///{tmp_path}/verity.db")
    text = node.config.read_text().replace("audit:\n", "audit:\n  timeout_seconds: 0.2\n")
    node.config.write_text(text)
    release = threading.Event()
    commit = SQLiteStore.append_batch

    def stalled(self: SQLiteStore, *args: Any, **kwargs: Any) -> Any:
        release.wait(10)
        return commit(self, *args, **kwargs)

    monkeypatch.setattr(SQLiteStore, "append_batch", stalled)
    timer = threading.Timer(1.0, release.set)  # lets the writer finish once the CLI gave up
    timer.start()
    try:
        result = node.run("request", "prod-db", "--for", "1h", "--reason", "r", "--principal", "a")
    finally:
        release.set()
        timer.cancel()
    assert result.exit_code == 1, result.output
    assert "was requested, but its audit event was not recorded" in result.output
    assert "Traceback" not in result.output
