"""The hash chain without I/O: ``record_hash``, ``chain_hashes`` and ``ChainVerifier``.

Every tamper kind is produced by name from hand-built rows, with the exact record and
reason the verifier reports; rows are fed in several batches, as ``verify`` streams them.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import pytest

from verity.audit.chain import (
    GENESIS,
    ChainVerifier,
    Finding,
    Row,
    Tamper,
    chain_hashes,
    explain,
    record_hash,
)


def _rows(count: int, *, first_seq: int = 1, prev: bytes = GENESIS) -> list[Row]:
    """``count`` intact records after a record whose hash is ``prev``."""
    bodies = [b'{"n":%d}' % (first_seq + n) for n in range(count)]
    hashes = chain_hashes(prev, first_seq, bodies)
    prevs = [prev, *hashes[:-1]]
    return [(first_seq + n, prevs[n], hashes[n], bodies[n]) for n in range(count)]


def _relinked(rows: list[Any], *, start: int = 0) -> list[Row]:
    """``rows`` from index ``start`` on, each re-linked and re-hashed as an attacker who
    can write the table does (every column kept except ``prev_hash`` and ``hash``)."""
    out: list[Row] = list(rows[:start])
    prev = out[-1][2] if out else GENESIS
    for seq, _, _, body in rows[start:]:
        digest = record_hash(prev, seq, body)
        out.append((seq, prev, digest, body))
        prev = digest
    return out


def _feed(rows: list[Any], *, batch: int = 3, **kwargs: Any) -> ChainVerifier:
    verifier = ChainVerifier(**kwargs)
    for start in range(0, len(rows), batch):
        if not verifier.feed(rows[start : start + batch]):
            break
    return verifier


def _finding(rows: list[Any], **kwargs: Any) -> Finding:
    finding = _feed(rows, **kwargs).finding
    assert finding is not None
    return finding


def test_record_hash_is_sha256_of_prev_seq_big_endian_and_body() -> None:
    prev = bytes(range(32))
    expected = hashlib.sha256(prev + bytes([0, 0, 0, 0, 0, 0, 1, 2]) + b"{}").digest()
    assert record_hash(prev, 258, b"{}") == expected


def test_chain_hashes_link_each_record_to_the_one_before() -> None:
    first = record_hash(GENESIS, 7, b"a")
    assert chain_hashes(GENESIS, 7, [b"a", b"b"]) == [first, record_hash(first, 8, b"b")]
    assert chain_hashes(GENESIS, 1, []) == []


def test_tamper_kinds_keep_their_names() -> None:
    """The values are the ``kind`` of ``verity audit verify --json``: a stable interface."""
    assert {kind.name: kind.value for kind in Tamper} == {
        "MISSING": "missing",
        "OUT_OF_ORDER": "out_of_order",
        "BROKEN_LINK": "broken_link",
        "EDITED": "edited",
        "MALFORMED": "malformed",
        "CHECKPOINT_MISMATCH": "checkpoint_mismatch",
        "BAD_SIGNATURE": "bad_signature",
        "TRUNCATED": "truncated",
    }


def test_finding_str_names_seq_kind_and_reason() -> None:
    assert str(Finding(3, Tamper.EDITED, "why")) == "seq 3: edited: why"


def test_finding_cannot_be_altered() -> None:
    finding = Finding(3, Tamper.EDITED, "why")
    with pytest.raises(dataclasses.FrozenInstanceError):
        finding.kind = Tamper.MALFORMED  # type: ignore[misc]


def test_genesis_is_32_zero_bytes() -> None:
    """The first record's prev_hash in every existing log: changing it breaks them all."""
    assert GENESIS == b"\x00" * 32


def test_new_verifier_starts_at_the_genesis() -> None:
    verifier = ChainVerifier()
    assert (verifier.next_seq, verifier.prev_hash, verifier.records) == (1, GENESIS, 0)
    assert verifier.finding is None
    assert verifier.finish(0) is None


def test_intact_chain_verifies_across_batches() -> None:
    rows = _rows(10)
    verifier = _feed(rows, batch=3)
    assert verifier.finding is None
    assert (verifier.records, verifier.next_seq, verifier.prev_hash) == (10, 11, rows[-1][2])
    assert verifier.feed([]) is True
    assert verifier.records == 10
    assert verifier.finish(10) is None


def test_each_batch_continues_where_the_last_ended() -> None:
    rows = _rows(6)
    verifier = ChainVerifier()
    assert verifier.feed(rows[:2]) is True
    assert (verifier.next_seq, verifier.prev_hash) == (3, rows[1][2])
    assert verifier.feed(rows[2:]) is True
    assert verifier.records == 6


def test_tail_verifier_starts_after_a_given_record() -> None:
    rows = _rows(6)
    tail = ChainVerifier(next_seq=4, prev_hash=rows[2][2])
    assert tail.feed(rows[3:]) is True
    assert tail.records == 6
    assert ChainVerifier(next_seq=4, prev_hash=rows[2][2]).feed(rows) is False


def test_matching_checkpoints_verify() -> None:
    rows = _rows(9)
    verifier = _feed(rows, checkpoints={3: rows[2][2], 9: rows[8][2]})
    assert verifier.finding is None
    assert verifier.finish(9) is None


def test_deleted_record_is_missing() -> None:
    rows = _rows(6)
    finding = _finding(rows[:2] + rows[3:])
    assert finding == Finding(3, Tamper.MISSING, "seq 3 missing: records were deleted")


def test_two_deleted_records_are_missing_as_a_range() -> None:
    rows = _rows(6)
    finding = _finding(rows[:2] + rows[4:])
    assert finding == Finding(3, Tamper.MISSING, "seq 3..4 missing: records were deleted")


def test_deleted_records_are_missing_as_a_range() -> None:
    rows = _rows(8)
    finding = _finding(rows[:2] + rows[5:])
    assert finding == Finding(3, Tamper.MISSING, "seq 3..5 missing: records were deleted")


def test_deleted_record_with_the_next_relinked_is_missing() -> None:
    """The attacker deletes seq 3 and re-links seq 4 to seq 2 (hash recomputed): every link
    and hash checks out, only the sequence number gives the gap away."""
    rows = _rows(4)
    finding = _finding(_relinked(rows[:2] + rows[3:], start=2))
    assert (finding.seq, finding.kind) == (3, Tamper.MISSING)


def test_replayed_seq_is_out_of_order() -> None:
    """A record re-numbered to an earlier seq, correctly linked and hashed, is still
    refused: seq 2 where seq 3 is due."""
    rows = _rows(3)
    replayed = _relinked([*rows[:2], (2, b"", b"", rows[2][3])], start=2)
    finding = _finding(replayed)
    assert finding == Finding(3, Tamper.OUT_OF_ORDER, "found seq 2 where 3 is due")


def test_non_integer_seq_is_out_of_order() -> None:
    rows: list[Any] = _rows(3)
    rows[2] = ("3", *rows[2][1:])
    finding = _finding(rows)
    assert finding == Finding(3, Tamper.OUT_OF_ORDER, "found seq '3' where 3 is due")


def test_edited_prev_hash_is_a_broken_link() -> None:
    rows = _rows(4)
    rows[2] = (3, b"\x01" * 32, rows[2][2], rows[2][3])
    assert _finding(rows) == Finding(
        3,
        Tamper.BROKEN_LINK,
        "prev_hash does not match the record before: a record was inserted or removed",
    )


def test_edited_body_is_edited() -> None:
    rows = _rows(5)
    rows[3] = (4, rows[3][1], rows[3][2], b'{"n":"forged"}')
    finding = _finding(rows)
    assert finding == Finding(
        4, Tamper.EDITED, "content does not match its hash: the record was edited"
    )


def test_edited_hash_column_is_edited() -> None:
    rows = _rows(5)
    rows[4] = (5, rows[4][1], bytes(32), rows[4][3])
    assert _finding(rows) == Finding(
        5, Tamper.EDITED, "content does not match its hash: the record was edited"
    )


def test_rewritten_chain_contradicts_the_checkpoint() -> None:
    rows = _rows(9)
    marks = {3: rows[2][2], 6: rows[5][2], 9: rows[8][2]}
    forged = list(rows)
    forged[4] = (5, rows[4][1], rows[4][2], b'{"n":"forged"}')
    finding = _finding(_relinked(forged, start=4), checkpoints=marks)
    assert finding == Finding(
        6,
        Tamper.CHECKPOINT_MISMATCH,
        "the signed checkpoint names a different hash: records 4..6 were rewritten "
        "(with recomputed hashes)",
    )


def test_rewritten_chain_before_the_first_checkpoint_names_records_from_one() -> None:
    rows = _rows(4)
    forged = [(1, GENESIS, b"", b'{"n":"forged"}'), *rows[1:]]
    finding = _finding(_relinked(forged), checkpoints={3: rows[2][2]})
    assert (finding.seq, finding.kind) == (3, Tamper.CHECKPOINT_MISMATCH)
    assert "records 1..3 were rewritten" in finding.reason


@pytest.mark.parametrize("damage", ["text body", "short row", "not a row"])
def test_malformed_row_is_malformed(damage: str) -> None:
    """A wrong type (TypeError) or a missing column (ValueError) is a finding, not a crash."""
    rows: list[Any] = _rows(3)
    seq, prev, digest, _ = rows[2]
    rows[2] = {"text body": (seq, prev, digest, "text"), "short row": rows[2][:3]}.get(damage)
    verifier = ChainVerifier()
    assert verifier.feed(rows) is False
    assert verifier.finding == Finding(3, Tamper.MALFORMED, "a column has the wrong type")
    assert verifier.records == 2


def test_float_seq_is_malformed() -> None:
    rows: list[Any] = _rows(3)
    rows[2] = (3.0, *rows[2][1:])
    assert _finding(rows) == Finding(3, Tamper.MALFORMED, "a column has the wrong type")


def test_seq_beyond_eight_bytes_is_malformed() -> None:
    seq = 2**64
    row = (seq, GENESIS, bytes(32), b"{}")
    finding = _finding([row], next_seq=seq)
    assert (finding.seq, finding.kind) == (seq, Tamper.MALFORMED)


def test_state_after_a_finding_is_the_last_good_record() -> None:
    rows = _rows(8)
    rows[5] = (6, rows[5][1], bytes(32), rows[5][3])
    verifier = _feed(rows, batch=4)
    assert verifier.finding is not None
    assert (verifier.records, verifier.next_seq, verifier.prev_hash) == (5, 6, rows[4][2])


def test_first_finding_is_kept() -> None:
    rows = _rows(8)
    verifier = ChainVerifier({8: rows[7][2]})
    assert verifier.feed(rows[:2] + rows[3:5]) is False
    first = verifier.finding
    assert first is not None
    assert first.kind is Tamper.MISSING
    assert verifier.feed(rows[2:3]) is False  # the record "found" later changes nothing
    assert verifier.feed(rows[5:]) is False
    assert verifier.finding is first
    assert verifier.finish(8) is first  # not replaced by "truncated"
    assert verifier.records == 2


def test_checkpoint_beyond_the_end_is_truncated() -> None:
    verifier = _feed(_rows(5))
    assert verifier.finish(5) is None
    finding = verifier.finish(6)
    assert finding == Finding(
        6,
        Tamper.TRUNCATED,
        "a signed checkpoint covers seq 6 but the log ends at seq 5: records were removed "
        "from the tail",
    )
    assert verifier.finding is finding


def test_explain_names_each_kind() -> None:
    rows = _rows(3)
    _, prev, digest, body = rows[2]
    after = rows[1][2]
    assert explain((5, prev, digest, body), 3, after, {}).kind is Tamper.MISSING
    assert explain((2, prev, digest, body), 3, after, {}).kind is Tamper.OUT_OF_ORDER
    assert explain((3, bytes(32), digest, body), 3, after, {}).kind is Tamper.BROKEN_LINK
    assert explain((3, prev, bytes(32), body), 3, after, {}).kind is Tamper.EDITED
    finding = explain((3, prev, digest, body), 3, after, {1: b"", 3: bytes(32), 7: b""})
    assert (finding.kind, finding.seq) == (Tamper.CHECKPOINT_MISMATCH, 3)
    assert "records 2..3 were rewritten" in finding.reason
