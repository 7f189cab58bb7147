"""A writer process for the multi-process and kill -9 tests (run as a script).

    python writer_proc.py URL SCHEMA|- KEY TAG COUNT THREADS

Appends COUNT events per thread (0 = until killed) and prints ``seq uid`` on stdout for
every acknowledged event, written with one ``os.write`` each so that a line is whole or
absent when the process is killed.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from verity.audit import AuditLog, CheckpointSigner, EventKind, UserRef, open_store, session_event


def main() -> None:
    url, schema, key, tag, count, threads = sys.argv[1:7]
    store = open_store(url, schema=None if schema == "-" else schema)
    log = AuditLog(store, signer=CheckpointSigner.from_file(key), checkpoint_every=50)
    per_thread = int(count)

    def produce(worker: int) -> None:
        n = 0
        while per_thread == 0 or n < per_thread:
            event = session_event(
                EventKind.DEVICE_STATE_CHANGED,
                user=UserRef(f"{tag}-{worker}"),
                resource=("device", f"{tag}-{worker}-{n}"),
                time=time.time(),
            )
            receipt = log.append(event)
            os.write(1, f"{receipt.seq} {event.uid}\n".encode())
            n += 1

    workers = [threading.Thread(target=produce, args=(i,)) for i in range(int(threads))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    log.close()


if __name__ == "__main__":
    main()
