"""``verity audit``: exit codes (0 intact, 1 tampered, 2 cannot run), the first bad record
named, JSON shapes, tail/query/export/keygen."""

from __future__ import annotations

import json
import socket
import stat
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from verity.audit import AuditLog, CheckpointSigner, generate_key
from verity.cli.audit import app

from .conftest import Backend, sample_events, split_octet_counted


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def db_args(backend: Backend) -> list[str]:
    return ["--db", backend.url] + (["--schema", backend.schema] if backend.schema else [])


@pytest.fixture
def logged(backend: Backend, signer: CheckpointSigner) -> Backend:
    with AuditLog(backend.open(), signer=signer, checkpoint_every=10) as log:
        events = sample_events(30)
        for start in range(0, 30, 10):
            log.append_many(events[start : start + 10])
    return backend


def test_verify_intact_exits_0(logged: Backend, key_path: Path) -> None:
    result = invoke("verify", *db_args(logged), "--public-key", f"{key_path}.pub")
    assert result.exit_code == 0, result.output
    assert "INTACT" in result.stdout
    assert "30 records" in result.stdout


def test_verify_json(logged: Backend, key_path: Path) -> None:
    result = invoke("verify", *db_args(logged), "--public-key", f"{key_path}.pub", "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["records"] == 30
    assert report["first_bad"] is None
    assert report["signatures_checked"] is True


def test_verify_tampered_exits_1_naming_the_record(logged: Backend, key_path: Path) -> None:
    logged.raw("delete from audit_log where seq = 14")
    result = invoke("verify", *db_args(logged), "--public-key", f"{key_path}.pub")
    assert result.exit_code == 1
    assert "TAMPERED" in result.stdout
    assert "seq 14" in result.stdout
    result = invoke("verify", *db_args(logged), "--public-key", f"{key_path}.pub", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["first_bad"]["seq"] == 14


def test_verify_with_another_key_exits_1(logged: Backend, tmp_path: Path) -> None:
    generate_key(tmp_path / "other.key")
    result = invoke("verify", *db_args(logged), "--public-key", str(tmp_path / "other.key.pub"))
    assert result.exit_code == 1
    assert "bad_signature" in result.stdout


def test_verify_without_key_warns(logged: Backend) -> None:
    result = invoke("verify", *db_args(logged))
    assert result.exit_code == 0
    assert "signatures not checked" in result.stdout


def test_verify_missing_log_exits_2(tmp_path: Path) -> None:
    result = invoke("verify", "--db", f"sqlite:///{tmp_path / 'none.db'}")
    assert result.exit_code == 2
    assert "no audit log" in result.stderr


def test_verify_unreadable_key_exits_2(logged: Backend, tmp_path: Path) -> None:
    result = invoke("verify", *db_args(logged), "--public-key", str(tmp_path / "nope.pub"))
    assert result.exit_code == 2
    assert "cannot read the key" in result.stderr


def test_tail_json_and_text(logged: Backend) -> None:
    result = invoke("tail", *db_args(logged), "-n", "3", "--json")
    assert result.exit_code == 0
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["metadata"]["sequence"] for e in events] == [28, 29, 30]
    text = invoke("tail", *db_args(logged), "-n", "2").stdout.splitlines()
    assert len(text) == 2
    assert "#30" in text[1]


def test_tail_follow_prints_new_events(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    from verity.audit.sqlite import SQLiteStore

    log = AuditLog(SQLiteStore(tmp_path / "a.db"))
    log.append_many(sample_events(2))
    threading.Timer(0.2, lambda: log.append_many(sample_events(2))).start()
    args = ("tail", "--db", url, "-n", "1", "--follow", "--json", "--poll", "0.02")
    result = invoke(*args, "--follow-for", "1.0")
    log.close()
    seqs = [json.loads(line)["metadata"]["sequence"] for line in result.stdout.splitlines()]
    assert seqs == [2, 3, 4]


def test_query_user_decision_since(logged: Backend) -> None:
    args = ("query", *db_args(logged), "--user", "alice", "--decision", "deny", "--since", "1h")
    result = invoke(*args, "--json")
    assert result.exit_code == 0
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events
    for event in events:
        assert event["actor"]["user"]["uid"] == "alice"
        assert event["unmapped"]["verity"]["decision"]["effect"] == "deny"
    assert "event(s)" in invoke(*args).stderr


def test_tail_text_shows_who_and_the_decision_id(logged: Backend) -> None:
    last = invoke("tail", *db_args(logged), "-n", "2").stdout.splitlines()  # seq 29: a decision
    event = json.loads(invoke("tail", *db_args(logged), "-n", "2", "--json").stdout.split("\n")[0])
    decision_id = event["unmapped"]["verity"]["decision"]["decision_id"]
    assert decision_id in last[0]  # a decision id quoted from a deny page can be found
    assert event["actor"]["user"]["email_addr"] in last[0]


def test_query_user_accepts_an_email_address(logged: Backend) -> None:
    args = ("query", *db_args(logged), "--user", "Alice@Example.com", "--json")
    result = invoke(*args)
    assert result.exit_code == 0
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events
    assert {e["actor"]["user"]["uid"] for e in events} == {"alice"}


def test_audit_tail_finds_the_demo_log_from_where_make_run_ran(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from verity.audit.sqlite import SQLiteStore
    from verity.demo import prepare

    setup = prepare(tmp_path / ".verity-demo", port=18099, app_port=18098)
    log = AuditLog(SQLiteStore(setup.folder / "audit.db"))
    log.append_many(sample_events(2))
    log.close()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VERITY_CONFIG", raising=False)
    monkeypatch.delenv("VERITY_AUDIT_DB", raising=False)
    result = invoke("tail", "-n", "1")
    assert result.exit_code == 0, result.output
    assert "#2" in result.stdout


@pytest.mark.parametrize(
    ("option", "value"), [("--decision", "maybe"), ("--since", "yesterday-ish")]
)
def test_query_bad_options_exit_2(logged: Backend, option: str, value: str) -> None:
    assert invoke("query", *db_args(logged), option, value).exit_code == 2


def test_export_jsonl_to_file_and_stdout(logged: Backend, tmp_path: Path) -> None:
    out = tmp_path / "audit.jsonl"
    result = invoke("export", *db_args(logged), "--format", "jsonl", "-o", str(out))
    assert result.exit_code == 0
    assert "exported 30" in result.stderr
    assert len(out.read_bytes().splitlines()) == 30
    result = invoke("export", *db_args(logged), "--user", "bob")
    lines = result.stdout.splitlines()
    assert lines
    assert all(json.loads(line)["actor"]["user"]["uid"] == "bob" for line in lines)


def test_export_syslog_tcp(logged: Backend) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def accept() -> None:
        conn, _ = server.accept()
        with conn:
            while chunk := conn.recv(65536):
                received.append(chunk)

    thread = threading.Thread(target=accept)
    thread.start()
    port = str(server.getsockname()[1])
    args = ("--format", "syslog", "--protocol", "tcp", "--syslog-port", port)
    result = invoke("export", *db_args(logged), *args)
    thread.join(timeout=10)
    server.close()
    assert result.exit_code == 0, result.output
    frames, rest = split_octet_counted(b"".join(received))
    assert len(frames) == 30
    assert rest == b""
    assert all(frame.startswith((b"<109>1 ", b"<110>1 ")) for frame in frames)


def test_export_bad_format_exits_2(logged: Backend) -> None:
    assert invoke("export", *db_args(logged), "--format", "csv").exit_code == 2


def test_keygen(tmp_path: Path) -> None:
    key = tmp_path / "k"
    result = invoke("keygen", str(key))
    assert result.exit_code == 0
    assert "key id" in result.stdout
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert Path(f"{key}.pub").exists()
    assert invoke("keygen", str(key)).exit_code == 2  # never replaces a key
