"""``verify`` and ``verify_tail`` on a SQLite log: every batch is read, signatures decide
which checkpoints are trusted, and a writer never signs on top of a tampered log.

Logs are built with small batch sizes so that multi-batch streaming is exercised on a few
dozen records; the attacker edits the database directly (append-only triggers dropped).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from verity.audit import AuditLog, AuditTamperedError, CheckpointSigner, EncodedEvent
from verity.audit.chain import Finding, Row, Tamper, record_hash
from verity.audit.keys import Checkpoint
from verity.audit.sqlite import SQLiteStore
from verity.audit.verify import VerifyReport, check_signatures, verify, verify_tail

from .conftest import Backend

VERIFY_MODULE = importlib.import_module(
    "verity.audit.verify"
)  # ``verity.audit.verify`` is the function
OTHER = CheckpointSigner(Ed25519PrivateKey.generate())


def _events(count: int) -> list[EncodedEvent]:
    return [
        EncodedEvent(b'{"message":"event %d"}' % n, 0, 6003, "decision", "alice", "allow")
        for n in range(count)
    ]


def _log(tmp_path: Path, signer: CheckpointSigner | None, *batches: int) -> Backend:
    """A log of ``sum(batches)`` records; with ``signer``, a checkpoint after each batch."""
    path = tmp_path / "audit.db"
    store = SQLiteStore(path)
    try:
        for count in batches:
            store.append_batch(_events(count), sign=None if signer is None else signer.sign)
    finally:
        store.close()
    return Backend("sqlite", f"sqlite:///{path}", None, lambda: SQLiteStore(path))


def _verify(log: Backend, key: object = None, **kwargs: object) -> VerifyReport:
    store = log.open()
    try:
        return verify(store, key, **kwargs)  # type: ignore[arg-type]
    finally:
        store.close()


def _tail(log: Backend, signer: CheckpointSigner, batch_size: int = 4) -> Finding | None:
    store = log.open()
    try:
        return verify_tail(store, signer.public_key, batch_size=batch_size)
    finally:
        store.close()


def _insert_checkpoint(log: Backend, cp: Checkpoint) -> None:
    log.raw(
        "insert into audit_checkpoint (seq, hash, time_ms, key_id, signature) values (?,?,?,?,?)",
        (cp.seq, cp.hash, cp.time_ms, cp.key_id, cp.signature),
    )


def _head_hash(log: Backend, seq: int) -> bytes:
    store = log.open()
    try:
        rows = [row for batch in store.iter_rows(after_seq=seq - 1) for row in batch]
    finally:
        store.close()
    return rows[0][2]


def _edit_body(log: Backend, seq: int) -> None:
    log.raw("update audit_log set body = ? where seq = ?", (b'{"message":"forged"}', seq))


def _rewrite_from(log: Backend, seq: int) -> None:
    """Edit record ``seq`` and recompute every hash after it: a chain that links."""
    store = log.open()
    try:
        rows = [row for batch in store.iter_rows(after_seq=seq - 1) for row in batch]
    finally:
        store.close()
    prev = rows[0][1]
    for n, _, _, stored in rows:
        body = b'{"message":"forged"}' if n == seq else stored
        digest = record_hash(prev, n, body)
        params = (prev, digest, body, n)
        log.raw("update audit_log set prev_hash = ?, hash = ?, body = ? where seq = ?", params)
        prev = digest


def test_verify_reads_every_batch(tmp_path: Path, signer: CheckpointSigner) -> None:
    log = _log(tmp_path, signer, 10, 10)
    log = _log(tmp_path, None, 5)  # five unsigned records after the checkpoint at 20
    seen: list[int] = []
    report = _verify(log, signer.public_key, batch_size=4, progress=seen.append)
    assert seen == [4, 8, 12, 16, 20, 24, 25]
    assert report.ok
    assert report.finding is None
    assert (report.records, report.checkpoints, report.last_checkpoint_seq) == (25, 2, 20)
    assert report.unsigned_tail == 5
    assert report.signatures_checked


def test_tamper_in_a_later_batch_is_found(tmp_path: Path) -> None:
    log = _log(tmp_path, None, 25)
    assert _verify(log, batch_size=4).ok
    _edit_body(log, 23)
    seen: list[int] = []
    report = _verify(log, batch_size=4, progress=seen.append)
    assert seen == [4, 8, 12, 16, 20, 22]  # stops at the batch holding the bad record
    assert not report.ok
    assert report.finding is not None
    assert (report.finding.seq, report.finding.kind) == (23, Tamper.EDITED)
    assert report.records == 22
    assert (report.unsigned_tail, report.last_checkpoint_seq) == (22, 0)
    assert not report.signatures_checked


def test_malformed_record_is_reported_after_the_records_before_it(tmp_path: Path) -> None:
    log = _log(tmp_path, None, 9)
    log.raw("update audit_log set body = 'text, not bytes' where seq = 6")
    seen: list[int] = []
    report = _verify(log, batch_size=4, progress=seen.append)
    assert report.finding == Finding(6, Tamper.MALFORMED, "a column has the wrong type")
    assert (report.records, seen) == (5, [4, 5])


def test_checkpoint_at_the_head_leaves_no_unsigned_tail(
    tmp_path: Path, signer: CheckpointSigner
) -> None:
    report = _verify(_log(tmp_path, signer, 3, 4), signer.public_key, batch_size=2)
    assert report.ok
    assert (report.records, report.last_checkpoint_seq, report.unsigned_tail) == (7, 7, 0)


def test_report_times_the_verification(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = _log(tmp_path, None, 3)
    clock = iter([100.0, 102.5])

    class _Time:
        @staticmethod
        def perf_counter() -> float:
            return next(clock)

    monkeypatch.setattr(VERIFY_MODULE, "time", _Time)
    assert _verify(log).seconds == 2.5


def test_keys_by_keyword_batch_size_and_progress_by_keyword_only(
    tmp_path: Path, signer: CheckpointSigner
) -> None:
    log = _log(tmp_path, signer, 3)
    store = log.open()
    try:
        assert verify(store=store, public_key=signer.public_key).ok
        assert verify_tail(store=store, public_key=signer.public_key) is None
        with pytest.raises(TypeError):
            verify(store, signer.public_key, print)  # type: ignore[misc]
        with pytest.raises(TypeError):
            verify_tail(store, signer.public_key, 4)  # type: ignore[misc]
    finally:
        store.close()


def test_report_cannot_be_altered() -> None:
    report = VerifyReport(False, 6, 2, 5, 1, True, None, 1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.ok = True  # type: ignore[misc]


def test_report_as_json() -> None:
    finding = Finding(7, Tamper.MISSING, "seq 7 missing: records were deleted")
    report = VerifyReport(False, 6, 2, 5, 1, True, finding, 1.23456)
    assert report.to_json() == {
        "ok": False,
        "records": 6,
        "checkpoints": 2,
        "last_checkpoint_seq": 5,
        "unsigned_tail": 1,
        "signatures_checked": True,
        "first_bad": {"seq": 7, "kind": "missing", "reason": "seq 7 missing: records were deleted"},
        "seconds": 1.235,
    }
    intact = VerifyReport(True, 6, 2, 6, 0, False, None, 0.0004)
    assert intact.to_json()["first_bad"] is None
    assert intact.to_json()["seconds"] == 0.0


def test_forged_checkpoint_beyond_the_end_is_not_trusted(
    tmp_path: Path, signer: CheckpointSigner
) -> None:
    """A forged checkpoint is a bad signature; it does not count as the last checkpoint
    (no "truncated" finding, no shorter unsigned tail)."""
    log = _log(tmp_path, signer, 10, 10)
    log = _log(tmp_path, None, 5)
    _insert_checkpoint(log, OTHER.sign(30, bytes(32)))
    report = _verify(log, signer.public_key, batch_size=4)
    assert report.finding == Finding(
        30, Tamper.BAD_SIGNATURE, f"checkpoint (key {OTHER.key_id}): unknown key: forged or altered"
    )
    assert (report.checkpoints, report.last_checkpoint_seq, report.unsigned_tail) == (3, 20, 5)
    unchecked = _verify(log, batch_size=4)  # without a key, every checkpoint is taken as is
    assert unchecked.finding is not None
    assert (unchecked.finding.seq, unchecked.finding.kind) == (26, Tamper.TRUNCATED)
    assert (unchecked.last_checkpoint_seq, unchecked.unsigned_tail) == (30, 0)


def test_altered_checkpoint_signature_is_invalid(tmp_path: Path, signer: CheckpointSigner) -> None:
    log = _log(tmp_path, signer, 4, 4)
    log.raw("update audit_checkpoint set time_ms = time_ms + 1 where seq = 4")
    report = _verify(log, signer.public_key)
    assert report.finding == Finding(
        4,
        Tamper.BAD_SIGNATURE,
        f"checkpoint (key {signer.key_id}): invalid signature: forged or altered",
    )
    assert report.last_checkpoint_seq == 8


def test_rotated_keys_verify_each_checkpoint_by_its_key_id(
    tmp_path: Path, signer: CheckpointSigner
) -> None:
    log = _log(tmp_path, OTHER, 4)
    log = _log(tmp_path, signer, 4)
    assert _verify(log, [OTHER.public_key, signer.public_key]).ok
    assert _verify(log, (signer.public_key, OTHER.public_key)).ok
    report = _verify(log, signer.public_key)
    assert report.finding is not None
    assert (report.finding.seq, report.finding.kind) == (4, Tamper.BAD_SIGNATURE)
    assert "unknown key" in report.finding.reason


def test_check_signatures_without_keys_trusts_every_checkpoint(signer: CheckpointSigner) -> None:
    good, forged = signer.sign(3, b"a" * 32), OTHER.sign(5, b"b" * 32)
    assert check_signatures([good, forged], None) == ({3: b"a" * 32, 5: b"b" * 32}, [])
    trusted, findings = check_signatures([good, forged], {signer.key_id: signer.public_key})
    assert trusted == {3: b"a" * 32}
    assert [(f.seq, f.kind) for f in findings] == [(5, Tamper.BAD_SIGNATURE)]


@pytest.mark.parametrize("bad_checkpoint", [4, 12])
def test_lowest_finding_is_reported(
    tmp_path: Path, signer: CheckpointSigner, bad_checkpoint: int
) -> None:
    log = _log(tmp_path, signer, 4, 4, 4)
    log.raw("update audit_checkpoint set signature = ? where seq = ?", (bytes(64), bad_checkpoint))
    log.raw("delete from audit_log where seq = 6")
    report = _verify(log, signer.public_key)
    assert report.finding is not None
    expected = (4, Tamper.BAD_SIGNATURE) if bad_checkpoint == 4 else (6, Tamper.MISSING)
    assert (report.finding.seq, report.finding.kind) == expected


# verify_tail: what a writer checks on open before it signs the unsigned tail


def _checkpoints(log: Backend) -> list[Checkpoint]:
    store = log.open()
    try:
        return store.checkpoints()
    finally:
        store.close()


def _open_writer_fails(log: Backend, signer: CheckpointSigner, seq: int) -> None:
    """Opening a writer refuses the log at ``seq`` and signs nothing."""
    before = _checkpoints(log)
    with pytest.raises(AuditTamperedError) as info:
        AuditLog(log.open(), signer=signer)
    assert info.value.seq == seq
    assert _checkpoints(log) == before


TAMPER = {
    "deleted": ("delete from audit_log where seq = 6", (), Tamper.MISSING),
    "edited body": ("update audit_log set body = ? where seq = 6", (b"{}",), Tamper.EDITED),
    "edited hash": ("update audit_log set hash = ? where seq = 6", (bytes(32),), Tamper.EDITED),
    "edited link": (
        "update audit_log set prev_hash = ? where seq = 6",
        (bytes(32),),
        Tamper.BROKEN_LINK,
    ),
    "text body": ("update audit_log set body = 'text' where seq = 6", (), Tamper.MALFORMED),
}


@pytest.mark.parametrize("damage", sorted(TAMPER))
def test_writer_does_not_sign_a_tampered_log_with_no_checkpoint_yet(
    tmp_path: Path, signer: CheckpointSigner, damage: str
) -> None:
    log = _log(tmp_path, None, 13)
    assert _tail(log, signer) is None
    sql, params, kind = TAMPER[damage]
    log.raw(sql, params)
    finding = _tail(log, signer)
    assert finding is not None
    assert (finding.seq, finding.kind) == (6, kind)
    _open_writer_fails(log, signer, 6)


@pytest.mark.parametrize("damage", sorted(TAMPER))
def test_writer_does_not_sign_a_tampered_tail_after_a_checkpoint(
    tmp_path: Path, signer: CheckpointSigner, damage: str
) -> None:
    log = _log(tmp_path, signer, 2)
    log = _log(tmp_path, None, 11)
    sql, params, kind = TAMPER[damage]
    log.raw(sql, params)
    finding = _tail(log, signer)
    assert finding is not None
    assert (finding.seq, finding.kind) == (6, kind)
    _open_writer_fails(log, signer, 6)


def test_tail_check_without_checkpoint_reads_every_batch(
    tmp_path: Path, signer: CheckpointSigner
) -> None:
    log = _log(tmp_path, None, 25)
    assert _tail(log, signer) is None
    _edit_body(log, 23)
    assert _tail(log, signer) == Finding(
        23, Tamper.EDITED, "content does not match its hash: the record was edited"
    )


def test_tail_check_after_a_checkpoint_reads_every_batch(
    tmp_path: Path, signer: CheckpointSigner
) -> None:
    log = _log(tmp_path, signer, 3)
    log = _log(tmp_path, None, 22)
    assert _tail(log, signer) is None
    _edit_body(log, 23)
    finding = _tail(log, signer)
    assert finding is not None
    assert (finding.seq, finding.kind) == (23, Tamper.EDITED)


class _CountingStore(SQLiteStore):
    """Counts the batches read."""

    batches = 0

    def iter_rows(self, *, after_seq: int = 0, batch_size: int = 20_000) -> Iterator[list[Row]]:
        for rows in super().iter_rows(after_seq=after_seq, batch_size=batch_size):
            self.batches += 1
            yield rows


@pytest.mark.parametrize("signed", [0, 3])
def test_tail_check_stops_reading_at_the_first_bad_batch(
    tmp_path: Path, signer: CheckpointSigner, signed: int
) -> None:
    log = _log(tmp_path, signer, signed) if signed else _log(tmp_path, None)
    log = _log(tmp_path, None, 25 - signed)
    _edit_body(log, 9)
    store = _CountingStore(tmp_path / "audit.db")
    try:
        finding = verify_tail(store, signer.public_key, batch_size=4)
    finally:
        store.close()
    assert finding is not None
    assert (finding.seq, finding.kind) == (9, Tamper.EDITED)
    assert store.batches == (3 if signed == 0 else 2)  # 1-4, 5-8, 9-12 or 3-6, 7-10


def test_tail_check_of_an_intact_log_signed_at_its_head(
    tmp_path: Path, signer: CheckpointSigner
) -> None:
    log = _log(tmp_path, signer, 3, 4)
    assert _tail(log, signer) is None
    assert _tail(log, signer, batch_size=1) is None
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _tail(_log(empty, None), signer) is None


@pytest.mark.parametrize("forger", ["invalid signature", "another key"])
def test_forged_checkpoint_cannot_anchor_tail_check(
    tmp_path: Path, signer: CheckpointSigner, forger: str
) -> None:
    """An attacker edits record 2 and adds a checkpoint of the head: were it trusted, the
    tail check would start at the head and the writer would sign the edited log."""
    log = _log(tmp_path, None, 9)
    _edit_body(log, 2)
    head = _head_hash(log, 9)
    forged = OTHER.sign(9, head)
    if forger == "invalid signature":
        forged = Checkpoint(9, head, forged.time_ms, signer.key_id, forged.signature)
    _insert_checkpoint(log, forged)
    finding = _tail(log, signer)
    assert finding is not None
    assert (finding.seq, finding.kind) == (2, Tamper.EDITED)
    _open_writer_fails(log, signer, 2)


def test_forged_checkpoint_cannot_move_the_anchor_past_a_genuine_one(
    tmp_path: Path, signer: CheckpointSigner
) -> None:
    log = _log(tmp_path, signer, 4)
    log = _log(tmp_path, None, 6)
    _edit_body(log, 7)
    _insert_checkpoint(log, OTHER.sign(10, _head_hash(log, 10)))
    finding = _tail(log, signer)
    assert finding is not None
    assert (finding.seq, finding.kind) == (7, Tamper.EDITED)


def test_tail_check_compares_the_anchor_with_its_checkpoint(
    tmp_path: Path, signer: CheckpointSigner
) -> None:
    """Records up to the last checkpoint rewritten with recomputed hashes: the record the
    checkpoint signs no longer has the signed hash."""
    log = _log(tmp_path, signer, 4, 4)
    log = _log(tmp_path, None, 3)
    _rewrite_from(log, 6)
    finding = _tail(log, signer)
    assert finding is not None
    assert (finding.seq, finding.kind) == (8, Tamper.CHECKPOINT_MISMATCH)


@pytest.mark.parametrize(
    "sql", ["delete from audit_log where seq >= 8", "delete from audit_log where seq = 8"]
)
def test_tail_check_finds_the_signed_record_gone(
    tmp_path: Path, signer: CheckpointSigner, sql: str
) -> None:
    log = _log(tmp_path, signer, 4, 4)
    log = _log(tmp_path, None, 3)
    log.raw(sql)
    assert _tail(log, signer) == Finding(
        8,
        Tamper.TRUNCATED,
        "the record signed by the last checkpoint is gone: the tail was cut off",
    )
    _open_writer_fails(log, signer, 8)
