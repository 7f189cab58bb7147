"""Reading the log out: paged iteration, ``tail --follow``, and JSON lines export.

A JSON line is the stored OCSF event with ``metadata.sequence`` set to the record's seq.
With ``chain=True`` each line instead carries the exact stored bytes and the chain
fields, ``{"event": <canonical event>, "hash": hex, "prev_hash": hex, "seq": n}``, so a
SIEM can recompute every hash on its side.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import BinaryIO

import orjson

from .store import AuditStore, Query, StoredRecord


def iter_records(
    store: AuditStore, query: Query | None = None, *, page: int = 5_000
) -> Iterator[StoredRecord]:
    """Every record matching ``query`` (re-checked against its body), oldest first, read
    in pages so that memory stays flat."""
    base = query or Query()
    remaining = base.limit
    after = base.after_seq
    while remaining is None or remaining > 0:
        size = page if remaining is None else min(page, remaining)
        records = store.query(replace(base, after_seq=after, limit=size, newest_first=False))
        for record in records:
            if base.matches(record.event()):
                if remaining is not None:
                    remaining -= 1
                yield record
        if len(records) < size:
            return
        after = records[-1].seq


def last_records(store: AuditStore, count: int, query: Query | None = None) -> list[StoredRecord]:
    """The last ``count`` records matching ``query``, oldest first."""
    base = replace(query or Query(), limit=count, newest_first=True)
    records = [r for r in store.query(base) if base.matches(r.event())]
    return records[::-1]


def follow(
    store: AuditStore,
    *,
    after_seq: int,
    query: Query | None = None,
    poll_seconds: float = 0.5,
    stop: Callable[[], bool] = lambda: False,
) -> Iterator[StoredRecord]:
    """Records appended after ``after_seq`` as they arrive (polling) until ``stop()``."""
    base = query or Query()
    while not stop():
        seen = False
        for record in iter_records(store, replace(base, after_seq=after_seq)):
            after_seq, seen = record.seq, True
            yield record
        if not seen:
            time.sleep(poll_seconds)


def jsonl_line(record: StoredRecord, *, chain: bool = False) -> bytes:
    """One JSON line (with its newline) for ``record``."""
    if chain:
        head = b'{"event":' + record.body
        tail = {"hash": record.hash.hex(), "prev_hash": record.prev_hash.hex(), "seq": record.seq}
        return head + b"," + orjson.dumps(tail, option=orjson.OPT_SORT_KEYS)[1:] + b"\n"
    event = record.event()
    event.setdefault("metadata", {})["sequence"] = record.seq
    return orjson.dumps(event, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)


def export_jsonl(
    store: AuditStore, out: BinaryIO, *, query: Query | None = None, chain: bool = False
) -> int:
    """Write matching records to ``out`` as JSON lines; returns how many."""
    count = 0
    for record in iter_records(store, query):
        out.write(jsonl_line(record, chain=chain))
        count += 1
    out.flush()
    return count
