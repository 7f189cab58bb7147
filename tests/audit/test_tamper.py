"""Tamper evidence on both backends: every kind of edit is found, at the right record.

Each test builds a 50-record log with a signed checkpoint every 10 records, edits it as
an attacker with write access to the database would (append-only triggers dropped), and
checks that ``verify`` names the first bad record and why.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from verity.audit import (
    AuditLog,
    AuditStoreError,
    CheckpointSigner,
    Query,
    Tamper,
    VerifyReport,
    load_public_key,
    open_store,
    public_key_path,
    record_hash,
    verify,
)
from verity.audit.export import iter_records
from verity.audit.sqlite import SQLiteStore

from .conftest import Backend, sample_events


def _fill(backend: Backend, signer: CheckpointSigner, count: int = 50) -> None:
    events = sample_events(count)
    with AuditLog(backend.open(), signer=signer, checkpoint_every=10) as log:
        for start in range(0, count, 10):
            log.append_many(events[start : start + 10])


def _verify(backend: Backend, key_path: Path, *, with_key: bool = True) -> VerifyReport:
    store = backend.open()
    try:
        key = load_public_key(public_key_path(key_path)) if with_key else None
        return verify(store, key)
    finally:
        store.close()


@pytest.fixture
def log50(backend: Backend, signer: CheckpointSigner) -> Backend:
    _fill(backend, signer)
    return backend


def _expect(report: VerifyReport, seq: int, *kinds: Tamper) -> None:
    assert not report.ok
    assert report.finding is not None
    assert (report.finding.seq, report.finding.kind) in [(seq, k) for k in kinds], report.finding


def test_intact_log_verifies_with_checkpoints(log50: Backend, key_path: Path) -> None:
    report = _verify(log50, key_path)
    assert report.ok
    assert report.finding is None
    assert (report.records, report.checkpoints, report.last_checkpoint_seq) == (50, 5, 50)
    assert report.unsigned_tail == 0
    assert report.signatures_checked


def test_empty_log_verifies(backend: Backend, key_path: Path) -> None:
    backend.open().close()
    report = _verify(backend, key_path)
    assert report.ok
    assert report.records == 0


def test_append_only_triggers_refuse_plain_sql(log50: Backend) -> None:
    with pytest.raises(Exception, match="append-only"):
        log50.raw("delete from audit_log where seq = 3", keep_triggers=True)


def test_deleted_record_is_missing(log50: Backend, key_path: Path) -> None:
    log50.raw("delete from audit_log where seq = 25")
    _expect(_verify(log50, key_path), 25, Tamper.MISSING)


def test_deleted_first_record_is_missing(log50: Backend, key_path: Path) -> None:
    log50.raw("delete from audit_log where seq = 1")
    _expect(_verify(log50, key_path), 1, Tamper.MISSING)


def test_edited_body_is_found(log50: Backend, key_path: Path) -> None:
    store = log50.open()
    body = store.query(Query(after_seq=16, limit=1))[0].body
    store.close()
    edited = body.replace(b'"message":"', b'"message":"nothing happened; ')
    assert edited != body
    log50.raw("update audit_log set body = ? where seq = 17", (edited,))
    _expect(_verify(log50, key_path), 17, Tamper.EDITED)


def test_edited_hash_column_is_found(log50: Backend, key_path: Path) -> None:
    log50.raw("update audit_log set hash = ? where seq = 12", (b"\x00" * 32,))
    _expect(_verify(log50, key_path), 12, Tamper.EDITED)


def test_edited_prev_hash_is_a_broken_link(log50: Backend, key_path: Path) -> None:
    log50.raw("update audit_log set prev_hash = ? where seq = 12", (b"\x01" * 32,))
    _expect(_verify(log50, key_path), 12, Tamper.BROKEN_LINK)


def test_reordered_records_are_found(log50: Backend, key_path: Path) -> None:
    log50.raw("update audit_log set seq = -30 where seq = 30")
    log50.raw("update audit_log set seq = 30 where seq = 31")
    log50.raw("update audit_log set seq = 31 where seq = -30")
    _expect(_verify(log50, key_path), 30, Tamper.BROKEN_LINK)


def test_inserted_record_breaks_the_next_link(log50: Backend, key_path: Path) -> None:
    store = log50.open()
    prev = store.query(Query(after_seq=24, limit=1))[0]
    store.close()
    log50.raw("update audit_log set seq = seq + 1000 where seq > 25")
    log50.raw("update audit_log set seq = seq - 999 where seq > 1000")
    forged = b'{"message":"nothing to see"}'
    digest = record_hash(prev.hash, 26, forged)
    log50.raw(
        "insert into audit_log (seq, prev_hash, hash, time_ms, class_uid, kind, user_uid,"
        " outcome, body) values (26, ?, ?, 0, 6003, 'decision', 'eve', 'allow', ?)",
        (prev.hash, digest, forged),
    )
    _expect(_verify(log50, key_path), 27, Tamper.BROKEN_LINK)


def test_rewritten_chain_contradicts_the_next_checkpoint(log50: Backend, key_path: Path) -> None:
    store = log50.open()
    records = store.query(Query(after_seq=32))
    store.close()
    prev = records[0].prev_hash
    for record in records:
        body = record.body.replace(b"alice", b"carol") if record.seq == 33 else record.body
        digest = record_hash(prev, record.seq, body)
        params = (prev, digest, body, record.seq)
        log50.raw("update audit_log set prev_hash = ?, hash = ?, body = ? where seq = ?", params)
        prev = digest
    report = _verify(log50, key_path)
    _expect(report, 40, Tamper.CHECKPOINT_MISMATCH)
    assert report.finding is not None
    assert "31..40" in report.finding.reason


def test_truncated_tail_beyond_last_checkpoint(log50: Backend, key_path: Path) -> None:
    log50.raw("delete from audit_log where seq > 44")
    _expect(_verify(log50, key_path), 45, Tamper.TRUNCATED)


def test_forged_checkpoint_signature(log50: Backend, key_path: Path) -> None:
    log50.raw("update audit_checkpoint set signature = ? where seq = 20", (b"\x07" * 64,))
    _expect(_verify(log50, key_path), 20, Tamper.BAD_SIGNATURE)


def test_checkpoint_signed_by_another_key(log50: Backend, key_path: Path) -> None:
    store = log50.open()
    record = store.query(Query(after_seq=24, limit=1))[0]
    store.close()
    cp = CheckpointSigner(Ed25519PrivateKey.generate()).sign(25, record.hash)
    log50.raw(
        "insert into audit_checkpoint (seq, hash, time_ms, key_id, signature) values (?,?,?,?,?)",
        (cp.seq, cp.hash, cp.time_ms, cp.key_id, cp.signature),
    )
    report = _verify(log50, key_path)
    _expect(report, 25, Tamper.BAD_SIGNATURE)
    assert report.finding is not None
    assert "unknown key" in report.finding.reason


def test_first_of_several_findings_is_reported(log50: Backend, key_path: Path) -> None:
    log50.raw("update audit_checkpoint set signature = ? where seq = 40", (b"\x07" * 64,))
    log50.raw("delete from audit_log where seq = 8")
    _expect(_verify(log50, key_path), 8, Tamper.MISSING)


def test_without_key_truncation_is_still_found(log50: Backend, key_path: Path) -> None:
    log50.raw("update audit_checkpoint set signature = ? where seq = 20", (b"\x07" * 64,))
    assert _verify(log50, key_path, with_key=False).ok  # signatures are not checked
    log50.raw("delete from audit_log where seq > 44")
    report = _verify(log50, key_path, with_key=False)
    assert not report.signatures_checked
    _expect(report, 45, Tamper.TRUNCATED)


def test_limit_unsigned_tail_is_reported_not_authenticated(log50: Backend, key_path: Path) -> None:
    """Records after the last checkpoint are chained but not signed: an attacker can append
    well-formed records there. verify says how many records are unsigned."""
    store = log50.open()
    head = store.head()
    store.close()
    assert head is not None
    body = b'{"message":"appended by an attacker"}'
    digest = record_hash(head.hash, 51, body)
    log50.raw(
        "insert into audit_log (seq, prev_hash, hash, time_ms, class_uid, kind, user_uid,"
        " outcome, body) values (51, ?, ?, 0, 6003, 'decision', 'eve', 'allow', ?)",
        (head.hash, digest, body),
        keep_triggers=True,
    )
    report = _verify(log50, key_path)
    assert report.ok
    assert report.unsigned_tail == 1


def test_limit_tail_removed_with_its_checkpoints_is_not_detected(
    log50: Backend, key_path: Path
) -> None:
    """Documented limit: cutting records *and* every checkpoint that covers them leaves a
    shorter log that verifies; only a checkpoint kept elsewhere (export) reveals it."""
    log50.raw("delete from audit_log where seq > 40")
    log50.raw("delete from audit_checkpoint where seq > 40")
    report = _verify(log50, key_path)
    assert report.ok
    assert report.records == 40


def test_sqlite_malformed_column_is_reported(tmp_path: Path, signer: CheckpointSigner) -> None:
    path = tmp_path / "a.db"
    backend = Backend("sqlite", f"sqlite:///{path}", None, lambda: SQLiteStore(path))
    _fill(backend, signer, 20)
    backend.raw("update audit_log set body = 'text, not bytes' where seq = 5")
    report = _verify(backend, tmp_path / "missing", with_key=False)
    _expect(report, 5, Tamper.MALFORMED)


def test_edited_query_column_cannot_fake_a_hit(log50: Backend) -> None:
    log50.raw("update audit_log set user_uid = 'mallory' where seq = 3")
    store = log50.open()
    try:
        assert store.query(Query(user="mallory"))  # the column says so ...
        assert list(iter_records(store, Query(user="mallory"))) == []  # ... the body does not
    finally:
        store.close()


def test_reader_does_not_create_a_log(tmp_path: Path) -> None:
    with pytest.raises(AuditStoreError, match="no audit log"):
        open_store(f"sqlite:///{tmp_path / 'none.db'}", create=False)


def test_record_hash_covers_seq() -> None:
    body = b"{}"
    assert record_hash(bytes(32), 1, body) != record_hash(bytes(32), 2, body)
    expected = hashlib.sha256(bytes(32) + (1).to_bytes(8, "big") + body).digest()
    assert record_hash(bytes(32), 1, body) == expected
