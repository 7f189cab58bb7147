"""Export: OCSF JSON lines (plain and with chain fields) and RFC 5424 syslog over real
UDP and TCP sockets on 127.0.0.1 (TCP with RFC 6587 octet counting)."""

from __future__ import annotations

import io
import json
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from verity.audit import GENESIS, AuditLog, AuditStore, Query, StoredRecord, record_hash
from verity.audit.errors import AuditExportError
from verity.audit.export import export_jsonl, follow, iter_records, last_records
from verity.audit.sqlite import SQLiteStore
from verity.audit.syslog import BOM, SyslogForwarder, format_rfc5424

from .conftest import Backend, sample_events, split_octet_counted

RFC5424 = re.compile(
    rb"<(?P<pri>\d{1,3})>1 (?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (?P<host>[!-~]{1,255}) "
    rb"(?P<app>[!-~]{1,48}) (?P<proc>[!-~]{1,128}) (?P<msgid>[!-~]{1,32}) "
    rb"(?P<sd>\[verity@32473(?: [a-z_]+=\"(?:[^\"\\\]]|\\[\"\\\]])*\")+\]) (?P<msg>.*)",
    re.DOTALL,
)


@pytest.fixture
def filled(backend: Backend) -> Iterator[AuditStore]:
    with AuditLog(backend.open()) as log:
        log.append_many(sample_events(30))
    store = backend.open()
    yield store
    store.close()


def test_jsonl_is_ocsf_with_sequence(filled: AuditStore) -> None:
    out = io.BytesIO()
    assert export_jsonl(filled, out) == 30
    lines = out.getvalue().splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["metadata"]["sequence"] for e in events] == list(range(1, 31))
    assert all(e["class_uid"] in (3002, 6003) for e in events)


def test_jsonl_chain_lines_let_a_siem_recompute_every_hash(filled: AuditStore) -> None:
    out = io.BytesIO()
    export_jsonl(filled, out, chain=True)
    prev = GENESIS
    for line in out.getvalue().splitlines():
        doc = json.loads(line)
        body = line[len(b'{"event":') : line.rindex(b',"hash"')]
        assert json.loads(body) == doc["event"]
        assert doc["prev_hash"] == prev.hex()
        prev = record_hash(prev, doc["seq"], body)
        assert doc["hash"] == prev.hex()


def test_query_filters_and_tail(filled: AuditStore) -> None:
    denies = list(iter_records(filled, Query(user="alice", outcome="deny")))
    assert denies
    assert all(r.event()["unmapped"]["verity"]["decision"]["effect"] == "deny" for r in denies)
    assert all(r.event()["actor"]["user"]["uid"] == "alice" for r in denies)
    assert [r.seq for r in last_records(filled, 3)] == [28, 29, 30]
    assert [r.seq for r in iter_records(filled, Query(limit=4), page=3)] == [1, 2, 3, 4]


def test_follow_yields_new_records(tmp_path: Path) -> None:
    log = AuditLog(SQLiteStore(tmp_path / "a.db"))
    log.append_many(sample_events(2))
    reader = SQLiteStore(tmp_path / "a.db")
    seen: list[int] = []
    stream = follow(reader, after_seq=2, poll_seconds=0.01, stop=lambda: len(seen) >= 3)
    threading.Timer(0.1, lambda: log.append_many(sample_events(3))).start()
    seen.extend(r.seq for r in stream)
    assert seen == [3, 4, 5]
    reader.close()
    log.close()


def _check_message(message: bytes, seq: int) -> None:
    match = RFC5424.fullmatch(message)
    assert match, message[:200]
    assert int(match["pri"]) // 8 == 13  # facility "log audit"
    assert f'seq="{seq}"'.encode() in match["sd"]
    assert match["msg"].startswith(BOM)
    assert json.loads(match["msg"][len(BOM) :])["metadata"]["log_name"] == "verity.audit"


def test_syslog_over_udp(filled: AuditStore) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(5)
    records = list(iter_records(filled, Query(limit=5)))
    with SyslogForwarder("127.0.0.1", server.getsockname()[1], protocol="udp") as out:
        assert out.send_all(records) == 5
    received = [server.recv(65535) for _ in records]
    server.close()
    for record, message in zip(records, received, strict=True):
        _check_message(message, record.seq)


def _read_octet_counted(conn: socket.socket, count: int) -> list[bytes]:
    data, frames = b"", []
    while len(frames) < count and (chunk := conn.recv(65536)):
        found, data = split_octet_counted(data + chunk)
        frames.extend(found)
    return frames


def test_syslog_over_tcp_uses_octet_counting(filled: AuditStore) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    frames: list[bytes] = []
    records = list(iter_records(filled))

    def accept() -> None:
        conn, _ = server.accept()
        with conn:
            frames.extend(_read_octet_counted(conn, len(records)))

    thread = threading.Thread(target=accept)
    thread.start()
    with SyslogForwarder("127.0.0.1", server.getsockname()[1], protocol="tcp") as out:
        out.send_all(records)
    thread.join(timeout=10)
    server.close()
    assert len(frames) == 30
    for record, frame in zip(records, frames, strict=True):
        _check_message(frame, record.seq)


def test_syslog_escapes_structured_data_and_maps_severity(filled: AuditStore) -> None:
    record = next(r for r in iter_records(filled) if r.event()["severity_id"] == 2)
    message = format_rfc5424(record, hostname="gw 1", app_name="verity", procid="7")
    assert message.startswith(b"<109>1 ")  # 13 * 8 + notice (5)
    assert b" gw_1 verity 7 decision [verity@32473 " in message
    tricky = record._replace(body=record.body.replace(b'"uid":"alice"', b'"uid":"a\\"]b"'))
    assert b'user="a\\"\\]b"' in format_rfc5424(tricky)


def test_syslog_unreachable_tcp_receiver_is_an_export_error(filled: AuditStore) -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with pytest.raises(AuditExportError), SyslogForwarder("127.0.0.1", port, protocol="tcp") as out:
        out.send(next(iter_records(filled)))


def test_human_summary_escapes_terminal_control_characters() -> None:
    from verity.audit.text import printable, summary

    assert printable("GET /a\x1b[2J\nfake line") == "GET /a\\x1b[2J\\nfake line"
    record = StoredRecord(1, b"", b"", b'{"message":"deny \\u001b[31mx","time":0}')
    assert "\x1b" not in "".join(summary(record))
