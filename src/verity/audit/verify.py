"""``verify(store, public_key)``: check the whole log, name the first bad record.

Order of work: every checkpoint signature is checked first (a checkpoint that fails is
itself a finding and is not trusted); then every record is streamed in ``seq`` order
through the ``ChainVerifier``, which also compares each signed checkpoint with the hash
it names; finally a signed checkpoint beyond the last record means the tail was cut off.
Of all findings, the one with the lowest ``seq`` is reported.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .chain import ChainVerifier, Finding, Tamper
from .keys import Checkpoint, key_id, verify_checkpoint
from .store import AuditStore

PublicKeys = Ed25519PublicKey | Sequence[Ed25519PublicKey]
Progress = Callable[[int], None]

BATCH_SIZE = 20_000
"""Rows read per batch: bounds memory, never changes a result (tests lower it)."""


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of ``verify``: ``ok`` and, when not, the first bad record."""

    ok: bool
    records: int
    checkpoints: int
    last_checkpoint_seq: int
    unsigned_tail: int
    signatures_checked: bool
    finding: Finding | None
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """The report as plain data (``verity audit verify --json``)."""
        bad = self.finding
        return {
            "ok": self.ok,
            "records": self.records,
            "checkpoints": self.checkpoints,
            "last_checkpoint_seq": self.last_checkpoint_seq,
            "unsigned_tail": self.unsigned_tail,
            "signatures_checked": self.signatures_checked,
            "first_bad": None
            if bad is None
            else {"seq": bad.seq, "kind": bad.kind.value, "reason": bad.reason},
            "seconds": round(self.seconds, 3),
        }


def _keys_by_id(public_key: PublicKeys | None) -> dict[str, Ed25519PublicKey] | None:
    if public_key is None:
        return None
    keys = [public_key] if isinstance(public_key, Ed25519PublicKey) else list(public_key)
    return {key_id(key): key for key in keys}


def check_signatures(
    checkpoints: Iterable[Checkpoint], keys: dict[str, Ed25519PublicKey] | None
) -> tuple[dict[int, bytes], list[Finding]]:
    """Split checkpoints into trusted ``{seq: hash}`` and findings for bad signatures.

    With ``keys`` None, signatures are not checked and every checkpoint is taken as is."""
    trusted: dict[int, bytes] = {}
    findings: list[Finding] = []
    for cp in checkpoints:
        key = None if keys is None else keys.get(cp.key_id)
        if keys is not None and (key is None or not verify_checkpoint(cp, key)):
            why = "unknown key" if key is None else "invalid signature"
            reason = f"checkpoint (key {cp.key_id}): {why}: forged or altered"
            findings.append(Finding(cp.seq, Tamper.BAD_SIGNATURE, reason))
            continue
        trusted[cp.seq] = cp.hash
    return trusted, findings


def verify(
    store: AuditStore,
    public_key: PublicKeys | None = None,
    *,
    progress: Progress | None = None,
    batch_size: int = BATCH_SIZE,
) -> VerifyReport:
    """Verify the chain and the checkpoints of ``store``.

    ``public_key`` may be several keys (rotation; each checkpoint names its key id).
    Without a key the chain and the checkpoint hashes are checked but not the
    signatures (``signatures_checked`` is False). ``progress`` receives the last verified
    seq after every batch.
    """
    started = time.perf_counter()
    checkpoints = store.checkpoints()
    trusted, findings = check_signatures(checkpoints, _keys_by_id(public_key))
    verifier = ChainVerifier(trusted)
    for rows in store.iter_rows(batch_size=batch_size):
        ok = verifier.feed(rows)
        if progress is not None:
            progress(verifier.records)
        if not ok:
            break
    last_checkpoint = max(trusted, default=0)
    chain_finding = verifier.finish(last_checkpoint)
    if chain_finding is not None:
        findings.append(chain_finding)
    first = min(findings, key=lambda f: f.seq) if findings else None
    return VerifyReport(
        ok=first is None,
        records=verifier.records,
        checkpoints=len(checkpoints),
        last_checkpoint_seq=last_checkpoint,
        unsigned_tail=max(0, verifier.records - last_checkpoint),
        signatures_checked=public_key is not None,
        finding=first,
        seconds=time.perf_counter() - started,
    )


def verify_tail(
    store: AuditStore, public_key: Ed25519PublicKey, *, batch_size: int = BATCH_SIZE
) -> Finding | None:
    """Verify the records after the last validly signed checkpoint (what a writer does on
    open before it signs them), or every record when no checkpoint verifies under
    ``public_key``. None when they are intact."""
    trusted, _ = check_signatures(store.checkpoints(), _keys_by_id(public_key))
    if not trusted:
        verifier = ChainVerifier()
        for rows in store.iter_rows(batch_size=batch_size):
            if not verifier.feed(rows):
                break
        return verifier.finding  # no checkpoint that the end of the log could fall short of
    last = max(trusted)
    batches = store.iter_rows(after_seq=last - 1, batch_size=batch_size)
    first = next(batches, [])
    if not first or first[0][0] != last:
        reason = "the record signed by the last checkpoint is gone: the tail was cut off"
        return Finding(last, Tamper.TRUNCATED, reason)
    verifier = ChainVerifier({last: trusted[last]}, next_seq=last, prev_hash=first[0][1])
    for rows in itertools.chain([first], batches):
        if not verifier.feed(rows):
            break
    return verifier.finish(last)
