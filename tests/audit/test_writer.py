"""Group commit: one valid chain from many threads, processes and coroutines; every
acknowledged event is stored; checkpoints at intervals and on close; failures surface."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from verity.audit import (
    AuditClosedError,
    AuditLog,
    AuditTamperedError,
    AuditWriteError,
    CheckpointSigner,
    EncodedEvent,
    Query,
    Receipt,
    load_public_key,
    public_key_path,
    verify,
)
from verity.audit.keys import Checkpoint
from verity.audit.sqlite import SQLiteStore

from .conftest import Backend, sample_events

WRITER = Path(__file__).with_name("writer_proc.py")


def _verify_ok(backend: Backend, key_path: Path, records: int) -> None:
    store = backend.open()
    try:
        report = verify(store, load_public_key(public_key_path(key_path)))
    finally:
        store.close()
    assert report.ok, report.finding
    assert report.records == records


def test_threads_keep_one_chain(backend: Backend, signer: CheckpointSigner, key_path: Path) -> None:
    receipts: list[Receipt] = []
    events = sample_events(100)
    with AuditLog(backend.open(), signer=signer, checkpoint_every=64) as log:

        def produce() -> None:
            for event in events:
                receipts.append(log.append(event))

        threads = [threading.Thread(target=produce) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert log.stats.batches < 800  # events were grouped into fewer commits
    assert sorted(r.seq for r in receipts) == list(range(1, 801))
    _verify_ok(backend, key_path, 800)


def test_processes_keep_one_chain(backend: Backend, key_path: Path) -> None:
    schema = backend.schema or "-"
    args = [sys.executable, str(WRITER), backend.url, schema, str(key_path)]
    procs = [
        subprocess.Popen([*args, f"p{i}", "60", "3"], stdout=subprocess.PIPE, text=True)  # noqa: S603
        for i in range(3)
    ]
    outputs = [proc.communicate(timeout=60)[0] for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    seqs = sorted(int(line.split()[0]) for out in outputs for line in out.splitlines())
    assert seqs == list(range(1, 541))
    _verify_ok(backend, key_path, 540)


def test_async_producers(backend: Backend, signer: CheckpointSigner, key_path: Path) -> None:
    events = sample_events(300)

    async def main(log: AuditLog) -> list[Receipt]:
        return await asyncio.gather(*(log.append_async(e) for e in events))

    with AuditLog(backend.open(), signer=signer) as log:
        receipts = asyncio.run(main(log))
    assert sorted(r.seq for r in receipts) == list(range(1, 301))
    _verify_ok(backend, key_path, 300)


def test_receipt_matches_the_stored_record(backend: Backend, signer: CheckpointSigner) -> None:
    event = sample_events(1)[0]
    with AuditLog(backend.open(), signer=signer) as log:
        receipt = log.append(event)
        assert log.store.head() == receipt
    store = backend.open()
    record = store.query(Query())[0]
    store.close()
    assert (record.seq, record.hash, record.body) == (1, receipt.hash, event.encode())


def test_close_signs_the_tail(backend: Backend, signer: CheckpointSigner) -> None:
    with AuditLog(backend.open(), signer=signer, checkpoint_every=1000) as log:
        log.append_many(sample_events(7))
    store = backend.open()
    assert [cp.seq for cp in store.checkpoints()] == [7]
    store.close()


def test_timer_signs_an_idle_tail(backend: Backend, signer: CheckpointSigner) -> None:
    with AuditLog(backend.open(), signer=signer, checkpoint_seconds=0.05) as log:
        log.append(sample_events(1)[0])
        deadline = time.monotonic() + 5
        while not log.store.checkpoints() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [cp.seq for cp in log.store.checkpoints()] == [1]


def test_open_verifies_and_signs_an_unsigned_tail(
    backend: Backend, signer: CheckpointSigner
) -> None:
    with AuditLog(backend.open()) as log:  # no signer: e.g. a writer killed before close
        log.append_many(sample_events(5))
    with AuditLog(backend.open(), signer=signer) as log:
        assert [cp.seq for cp in log.store.checkpoints()] == [5]


def test_open_refuses_to_sign_a_tampered_tail(backend: Backend, signer: CheckpointSigner) -> None:
    with AuditLog(backend.open(), signer=signer, checkpoint_every=3) as log:
        log.append_many(sample_events(3))
        log.append_many(sample_events(1))
    with AuditLog(backend.open()) as log:
        log.append_many(sample_events(2))  # unsigned records 5..6
    backend.raw("update audit_log set hash = ? where seq = 5", (b"\x00" * 32,))
    with pytest.raises(AuditTamperedError) as info:
        AuditLog(backend.open(), signer=signer)
    assert info.value.seq == 5


def test_append_after_close_is_refused(tmp_path: Path) -> None:
    log = AuditLog(SQLiteStore(tmp_path / "a.db"))
    log.close()
    with pytest.raises(AuditClosedError):
        log.append(sample_events(1)[0])


class _BrokenStore(SQLiteStore):
    def append_batch(self, events: Sequence[EncodedEvent], *, sign: object = None) -> list[Receipt]:
        raise OSError("disk on fire")


def test_a_failed_commit_is_not_acknowledged(tmp_path: Path) -> None:
    with AuditLog(_BrokenStore(tmp_path / "a.db")) as log:
        with pytest.raises(AuditWriteError, match="disk on fire"):
            log.append(sample_events(1)[0])
        assert log.stats.failures == 1


def test_checkpoint_signature_verifies(signer: CheckpointSigner, key_path: Path) -> None:
    from verity.audit.keys import verify_checkpoint

    cp = signer.sign(3, b"\x01" * 32, 1_700_000_000_000)
    public = load_public_key(public_key_path(key_path))
    assert verify_checkpoint(cp, public)
    moved = Checkpoint(4, cp.hash, cp.time_ms, cp.key_id, cp.signature)
    assert not verify_checkpoint(moved, public)


class _NoCheckpointStore(SQLiteStore):
    failing = False

    def write_checkpoint(self, sign: Any) -> Checkpoint | None:
        if self.failing:
            raise OSError("checkpoint table locked")
        return super().write_checkpoint(sign)


def test_failing_timed_checkpoint_retries_at_the_interval(
    tmp_path: Path, signer: CheckpointSigner
) -> None:
    store = _NoCheckpointStore(tmp_path / "a.db")
    log = AuditLog(store, signer=signer, checkpoint_seconds=0.1, close_store=False)
    store.failing = True
    log.append(sample_events(1)[0])  # appended, acknowledged; its checkpoint keeps failing
    time.sleep(0.45)
    failures = log.stats.failures
    log.close()
    store.close()
    assert 2 <= failures <= 6  # retried about every 0.1 s, not in a busy loop


class _CrashingLog(AuditLog):
    def _sign_for(self, count: int) -> Any:
        raise RuntimeError("writer bug")


def test_a_crashed_writer_fails_waiting_producers_instead_of_hanging(tmp_path: Path) -> None:
    log = _CrashingLog(SQLiteStore(tmp_path / "a.db"))
    with pytest.raises(AuditWriteError, match="writer bug"):
        log.append(sample_events(1)[0], timeout=10)
    with pytest.raises(AuditClosedError, match="writer bug"):
        log.append(sample_events(1)[0], timeout=10)
    log.close()


# --- append_soon: acknowledged before the commit, only while the log keeps up ------------


def _stored(path: Path) -> int:
    reader = SQLiteStore(path, create=False)
    try:
        return reader.count()
    finally:
        reader.close()


def test_append_soon_returns_at_once_and_the_writer_commits_it(tmp_path: Path) -> None:
    with AuditLog(SQLiteStore(tmp_path / "a.db")) as log:
        assert log.append_soon(sample_events(1)[0], within=0.05)
        deadline = time.monotonic() + 5
        while _stored(tmp_path / "a.db") < 1:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        assert (log.stats.early, log.stats.early_lost) == (1, 0)


def test_append_soon_refuses_a_zero_window_and_queues_nothing(tmp_path: Path) -> None:
    with AuditLog(SQLiteStore(tmp_path / "a.db")) as log:
        assert not log.append_soon(sample_events(1)[0], within=0)
        assert log.pending == 0
        assert log.stats.early == 0


def test_append_soon_refuses_after_a_failed_commit(tmp_path: Path) -> None:
    with AuditLog(_BrokenStore(tmp_path / "a.db")) as log:
        with pytest.raises(AuditWriteError):
            log.append(sample_events(1)[0])
        assert not log.append_soon(sample_events(1)[0], within=10)
        assert log.pending == 0


def test_append_soon_refuses_on_a_closed_or_crashed_writer(tmp_path: Path) -> None:
    log = AuditLog(SQLiteStore(tmp_path / "a.db"))
    log.close()
    assert not log.append_soon(sample_events(1)[0], within=10)
    crashed = _CrashingLog(SQLiteStore(tmp_path / "b.db"))
    with pytest.raises(AuditWriteError):
        crashed.append(sample_events(1)[0], timeout=10)
    assert not crashed.append_soon(sample_events(1)[0], within=10)
    crashed.close()


class _GatedStore(SQLiteStore):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = threading.Event()
        self.broken = False

    def append_batch(self, events: Sequence[EncodedEvent], *, sign: Any = None) -> list[Receipt]:
        self.gate.wait(10)
        if self.broken:
            raise OSError("disk on fire")
        return super().append_batch(events, sign=sign)


def test_append_soon_refuses_once_the_oldest_uncommitted_event_is_older_than_the_window(
    tmp_path: Path,
) -> None:
    store = _GatedStore(tmp_path / "a.db")
    with AuditLog(store) as log:
        assert log.append_soon(sample_events(1)[0], within=0.05)  # its commit hangs
        time.sleep(0.08)
        assert not log.append_soon(sample_events(1)[0], within=0.05)
        assert log.append_soon(sample_events(1)[0], within=1.0)  # a wider window: still in
        store.gate.set()


def test_a_failed_commit_counts_the_early_events_it_lost(tmp_path: Path) -> None:
    store = _GatedStore(tmp_path / "a.db")
    store.broken = True
    with AuditLog(store) as log:
        assert log.append_soon(sample_events(1)[0], within=1.0)
        assert log.append_soon(sample_events(1)[0], within=1.0)
        store.gate.set()
        deadline = time.monotonic() + 5
        while log.stats.failures < 1:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        assert log.stats.early_lost >= 1
        assert not log.append_soon(sample_events(1)[0], within=1.0)


def test_early_events_are_held_and_committed_together_within_half_the_window(
    tmp_path: Path,
) -> None:
    with AuditLog(SQLiteStore(tmp_path / "a.db")) as log:
        started = time.monotonic()
        for event in sample_events(20):
            assert log.append_soon(event, within=0.4)
        deadline = started + 5
        while _stored(tmp_path / "a.db") < 20:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert time.monotonic() - started >= 0.15  # held for about half the window
        assert log.stats.batches == 1  # one commit for the 20 repeated allows


def test_a_waiting_append_ends_the_hold_of_early_events_at_once(tmp_path: Path) -> None:
    with AuditLog(SQLiteStore(tmp_path / "a.db")) as log:
        first, durable = sample_events(2)
        assert log.append_soon(first, within=10.0)  # would be held for 5 s
        time.sleep(0.05)  # the writer is holding the batch now
        started = time.monotonic()
        log.append(durable, timeout=5)  # a deny (say): durable before it returns
        assert time.monotonic() - started < 2.0
        assert _stored(tmp_path / "a.db") == 2


def test_a_waiting_async_append_ends_the_hold_of_early_events_at_once(tmp_path: Path) -> None:
    async def main(log: AuditLog, event: Any) -> float:
        started = time.monotonic()
        await log.append_async(event)
        return time.monotonic() - started

    with AuditLog(SQLiteStore(tmp_path / "a.db")) as log:
        first, durable = sample_events(2)
        assert log.append_soon(first, within=10.0)
        time.sleep(0.05)
        assert asyncio.run(main(log, durable)) < 2.0
        assert _stored(tmp_path / "a.db") == 2
