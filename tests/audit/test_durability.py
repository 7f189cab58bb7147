"""kill -9 durability: writer processes appending from several threads are killed with
SIGKILL at random moments, round after round; afterwards every acknowledged event is in
the log, at the seq its receipt named, and the whole log verifies.
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from verity.audit import AuditLog, CheckpointSigner, load_public_key, public_key_path, verify
from verity.audit.export import iter_records

from .conftest import Backend

WRITER = Path(__file__).with_name("writer_proc.py")
ROUNDS = 4
WRITERS_PER_ROUND = 2


def _run_round(backend: Backend, key_path: Path, round_no: int, rng: random.Random) -> list[str]:
    """Start writers, let them acknowledge events, SIGKILL them; return the ack lines."""
    args = [sys.executable, str(WRITER), backend.url, backend.schema or "-", str(key_path)]
    procs = [
        subprocess.Popen([*args, f"r{round_no}w{i}", "0", "4"], stdout=subprocess.PIPE)  # noqa: S603
        for i in range(WRITERS_PER_ROUND)
    ]
    output = {proc.pid: b"" for proc in procs}
    started = time.monotonic()
    kill_at = None
    while True:
        ready, _, _ = select.select([p.stdout for p in procs], [], [], 0.05)
        for proc in procs:
            if proc.stdout in ready:
                output[proc.pid] += os.read(proc.stdout.fileno(), 65536)  # type: ignore[union-attr]
        if kill_at is None and all(output.values()):  # every writer is acknowledging
            kill_at = time.monotonic() + rng.uniform(0.05, 0.6)
        if (kill_at is not None and time.monotonic() >= kill_at) or time.monotonic() - started > 20:
            break
    for proc in procs:
        os.kill(proc.pid, signal.SIGKILL)
    for proc in procs:
        proc.wait(timeout=10)
        output[proc.pid] += proc.stdout.read()  # type: ignore[union-attr]
        proc.stdout.close()  # type: ignore[union-attr]
    assert all(proc.returncode == -signal.SIGKILL for proc in procs)
    # a line cut by the kill was never fully written, so it is ignored
    return [line for data in output.values() for line in data.decode().split("\n")[:-1]]


def test_no_acknowledged_event_is_lost_under_kill_9(
    backend: Backend, key_path: Path, signer: CheckpointSigner
) -> None:
    rng = random.Random(5)  # noqa: S311 - kill timing, not cryptography
    acknowledged: dict[int, str] = {}
    for round_no in range(ROUNDS):
        for line in _run_round(backend, key_path, round_no, rng):
            seq, uid = line.split()
            assert int(seq) not in acknowledged, "two receipts for one seq: the chain forked"
            acknowledged[int(seq)] = uid
    assert len(acknowledged) > ROUNDS * WRITERS_PER_ROUND

    store = backend.open()
    stored = {r.seq: r.event()["metadata"]["uid"] for r in iter_records(store)}
    report = verify(store, load_public_key(public_key_path(key_path)))
    store.close()
    lost = {seq for seq, uid in acknowledged.items() if stored.get(seq) != uid}
    assert not lost, f"acknowledged events missing after kill -9: {sorted(lost)[:10]}"
    assert report.ok, report.finding
    assert report.records == len(stored) >= len(acknowledged)

    with AuditLog(backend.open(), signer=signer) as log:  # recovery signs the unsigned tail
        assert log.store.checkpoints()[-1].seq == report.records
