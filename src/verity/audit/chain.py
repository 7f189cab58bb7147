"""The hash chain, sans I/O: record hashes and a streaming verifier.

Record ``seq`` (1, 2, 3, ...) stores ``prev_hash`` and
``hash = SHA-256(prev_hash || seq as 8 bytes big-endian || canonical(event))``; the first
record's ``prev_hash`` is 32 zero bytes. Hashing ``seq`` too means a record cannot be
renumbered without breaking its own hash. ``ChainVerifier`` consumes rows in ``seq`` order
in batches and stops at the first bad one.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

GENESIS = bytes(32)
Row = tuple[int, bytes, bytes, bytes]
"""A stored record as the verifier reads it: ``(seq, prev_hash, hash, body)``."""


def record_hash(prev_hash: bytes, seq: int, body: bytes) -> bytes:
    """SHA-256(prev_hash || seq (8 bytes, big-endian) || body)."""
    return hashlib.sha256(prev_hash + seq.to_bytes(8, "big") + body).digest()


def chain_hashes(prev_hash: bytes, first_seq: int, bodies: Iterable[bytes]) -> list[bytes]:
    """The hashes of ``bodies`` appended after a record whose hash is ``prev_hash``."""
    hashes: list[bytes] = []
    for offset, body in enumerate(bodies):
        prev_hash = record_hash(prev_hash, first_seq + offset, body)
        hashes.append(prev_hash)
    return hashes


class Receipt(NamedTuple):
    """The acknowledgement of one durable event: its sequence number and hash."""

    seq: int
    hash: bytes


class Tamper(enum.Enum):
    """Why a record (or checkpoint) failed verification."""

    MISSING = "missing"  # a sequence number is absent: a record was deleted
    OUT_OF_ORDER = "out_of_order"  # a sequence number appears where another was due
    BROKEN_LINK = "broken_link"  # prev_hash is not the hash of the record before
    EDITED = "edited"  # the stored hash does not match the record's content
    MALFORMED = "malformed"  # a column has the wrong type or size
    CHECKPOINT_MISMATCH = "checkpoint_mismatch"  # a signed checkpoint names another hash
    BAD_SIGNATURE = "bad_signature"  # a checkpoint's signature does not verify
    TRUNCATED = "truncated"  # a checkpoint names a record beyond the end of the log


@dataclass(frozen=True, slots=True)
class Finding:
    """The first bad record: its ``seq``, the kind of damage, and an explanation."""

    seq: int
    kind: Tamper
    reason: str

    def __str__(self) -> str:
        return f"seq {self.seq}: {self.kind.value}: {self.reason}"


class ChainVerifier:
    """Checks rows fed in ``seq`` order against the chain and the signed checkpoints.

    ``checkpoints`` maps seq -> hash of the checkpoints whose signatures verified.
    """

    def __init__(
        self,
        checkpoints: Mapping[int, bytes] | None = None,
        *,
        next_seq: int = 1,
        prev_hash: bytes = GENESIS,
    ) -> None:
        """Start at the genesis, or (``next_seq``, ``prev_hash``) to check a tail only."""
        self.next_seq = next_seq
        self.prev_hash = prev_hash
        self.finding: Finding | None = None
        self._checkpoints = dict(checkpoints or {})

    @property
    def records(self) -> int:
        """The seq of the last record verified so far (0 before the first)."""
        return self.next_seq - 1

    def feed(self, rows: Sequence[Row]) -> bool:
        """Check a batch of rows; False (and ``finding`` set) at the first bad record."""
        if self.finding is not None:
            return False
        expected, prev, marks = self.next_seq, self.prev_hash, self._checkpoints
        sha256 = hashlib.sha256
        try:
            for seq, prev_hash, digest, body in rows:
                if seq != expected or prev_hash != prev:
                    break
                actual = sha256(prev + seq.to_bytes(8, "big") + body).digest()
                if actual != digest or (seq in marks and marks[seq] != actual):
                    break
                prev = actual
                expected += 1
            else:
                self.next_seq, self.prev_hash = expected, prev
                return True
        except (TypeError, ValueError, OverflowError, AttributeError):
            self.next_seq, self.prev_hash = expected, prev
            self.finding = Finding(expected, Tamper.MALFORMED, "a column has the wrong type")
            return False
        self.next_seq, self.prev_hash = expected, prev
        self.finding = explain((seq, prev_hash, digest, body), expected, prev, marks)
        return False

    def finish(self, last_checkpoint_seq: int) -> Finding | None:
        """After the last row: a checkpoint beyond the end means the tail was cut off."""
        if self.finding is None and last_checkpoint_seq > self.records:
            self.finding = Finding(
                self.next_seq,
                Tamper.TRUNCATED,
                f"a signed checkpoint covers seq {last_checkpoint_seq} but the log ends at "
                f"seq {self.records}: records were removed from the tail",
            )
        return self.finding


def explain(row: Row, expected: int, prev: bytes, marks: Mapping[int, bytes]) -> Finding:
    """Why ``row`` (the first row that failed) is bad, given the chain state before it."""
    seq, prev_hash, digest, body = row
    if seq != expected:
        if isinstance(seq, int) and seq > expected:
            gap = f"seq {expected}" + (f"..{seq - 1}" if seq - 1 > expected else "")
            return Finding(expected, Tamper.MISSING, f"{gap} missing: records were deleted")
        return Finding(expected, Tamper.OUT_OF_ORDER, f"found seq {seq!r} where {expected} is due")
    if prev_hash != prev:
        reason = "prev_hash does not match the record before: a record was inserted or removed"
        return Finding(seq, Tamper.BROKEN_LINK, reason)
    actual = record_hash(prev, seq, body)
    if actual != digest:
        return Finding(seq, Tamper.EDITED, "content does not match its hash: the record was edited")
    since = max((s for s in marks if s < seq), default=0)
    return Finding(
        seq,
        Tamper.CHECKPOINT_MISMATCH,
        f"the signed checkpoint names a different hash: records {since + 1}..{seq} were "
        "rewritten (with recomputed hashes)",
    )
