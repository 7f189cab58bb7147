"""The audit store protocol, the values it exchanges, and ``open_store(url)``.

A store keeps records ``(seq, prev_hash, hash, time_ms, class_uid, kind, user_uid,
outcome, body)`` and signed checkpoints. It is append-only: ``append_batch`` extends the
chain atomically, under a lock that serialises every writer of the same log (threads
and processes), and returns only once the batch is durable. The columns beside ``body``
serve queries; they are derived from the body and never trusted over it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable

from .chain import GENESIS, Receipt, Row
from .keys import Checkpoint
from .schema import AuditEvent

SignFn = Callable[[int, bytes], Checkpoint]
"""Signs the chain head: ``(seq, hash) -> Checkpoint``."""


class EncodedEvent(NamedTuple):
    """An event ready to store: canonical body plus the query columns."""

    body: bytes
    time_ms: int
    class_uid: int
    kind: str
    user: str | None
    outcome: str

    @classmethod
    def of(cls, event: AuditEvent) -> EncodedEvent:
        """Encode an event (canonical OCSF JSON)."""
        return cls(event.encode(), *event.index_fields())


class StoredRecord(NamedTuple):
    """A record read back: chain fields and the canonical OCSF body."""

    seq: int
    prev_hash: bytes
    hash: bytes
    body: bytes

    def event(self) -> dict[str, Any]:
        """The OCSF document."""
        document: dict[str, Any] = json.loads(self.body)
        return document


@dataclass(frozen=True, slots=True, kw_only=True)
class Query:
    """Filters for ``AuditStore.query``; every field is optional (``None`` = any)."""

    user: str | None = None
    person: str | None = None
    """A user id or e-mail address (matched against each body, not a column: a scan)."""
    outcome: str | None = None
    kind: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    after_seq: int = 0
    limit: int | None = None
    newest_first: bool = False

    def where(self, placeholder: str) -> tuple[str, list[object]]:
        """The SQL condition and parameters (``placeholder`` is ``?`` or ``%s``)."""
        clauses = ["seq > " + placeholder]
        params: list[object] = [self.after_seq]
        columns = (
            ("user_uid = ", self.user),
            ("outcome = ", self.outcome),
            ("kind = ", self.kind),
            ("time_ms >= ", self.since_ms),
            ("time_ms <= ", self.until_ms),
        )
        for column, value in columns:
            if value is not None:
                clauses.append(column + placeholder)
                params.append(value)
        return " and ".join(clauses), params

    def _is_person(self, who: dict[str, Any]) -> bool:
        email = who.get("email_addr")
        person = self.person or ""
        return who.get("uid") == person or (
            isinstance(email, str) and email.casefold() == person.casefold()
        )

    def matches(self, document: dict[str, Any]) -> bool:
        """Re-check a hit against its body (a column edited to fake a hit is ignored)."""
        verity = document.get("unmapped", {}).get("verity", {})
        decision = verity.get("decision") or {}
        outcome = decision.get("effect") or str(document.get("status", "")).lower()
        who = document.get("user") or document.get("actor", {}).get("user") or {}
        time_ms = document.get("time", 0)
        return (
            (self.user is None or who.get("uid") == self.user)
            and (self.person is None or self._is_person(who))
            and (self.outcome is None or outcome == self.outcome)
            and (self.kind is None or verity.get("kind") == self.kind)
            and (self.since_ms is None or time_ms >= self.since_ms)
            and (self.until_ms is None or time_ms <= self.until_ms)
        )


@runtime_checkable
class AuditStore(Protocol):
    """Where the audit chain lives (SQLite, PostgreSQL, ...)."""

    @property
    def url(self) -> str:
        """The store's URL with any password masked."""
        ...

    def append_batch(
        self, events: Sequence[EncodedEvent], *, sign: SignFn | None = None
    ) -> list[Receipt]:
        """Append ``events`` after the current head in one durable transaction; with
        ``sign``, also store a checkpoint of the new head in the same transaction."""
        ...

    def write_checkpoint(self, sign: SignFn) -> Checkpoint | None:
        """Sign and store a checkpoint of the current head (None if the log is empty or
        the head already has one)."""
        ...

    def head(self) -> Receipt | None:
        """The last record's seq and hash (None when empty)."""
        ...

    def count(self) -> int:
        """The number of records."""
        ...

    def iter_rows(self, *, after_seq: int = 0, batch_size: int = 20_000) -> Iterator[list[Row]]:
        """Every record after ``after_seq`` in ``seq`` order, in batches (streamed)."""
        ...

    def checkpoints(self) -> list[Checkpoint]:
        """Every checkpoint, in ``seq`` order."""
        ...

    def query(self, query: Query) -> list[StoredRecord]:
        """Records matching ``query`` (by their columns), in seq order or newest first."""
        ...

    def probe(self) -> None:
        """One small durable write outside the chain, under the lock an append takes:
        returns once the store is writable again, raises ``AuditStoreError`` if not
        (the writer's health check, see ``AuditLog.health``)."""
        ...

    def close(self) -> None:
        """Release connections; the store cannot be used afterwards."""
        ...


RecordRow = tuple[int, bytes, bytes, int, int, str, str | None, str, bytes]
"""A row to insert: seq, prev_hash, hash, time_ms, class_uid, kind, user_uid, outcome, body."""

COLUMNS = "seq, prev_hash, hash, time_ms, class_uid, kind, user_uid, outcome, body"
CHECKPOINT_COLUMNS = "seq, hash, time_ms, key_id, signature"


def chain_rows(head: Receipt | None, events: Sequence[EncodedEvent]) -> list[RecordRow]:
    """The rows that extend the chain after ``head`` with ``events`` (hashes computed)."""
    seq, prev = (head.seq, head.hash) if head is not None else (0, GENESIS)
    sha256 = hashlib.sha256
    rows: list[RecordRow] = []
    for body, time_ms, class_uid, kind, user, outcome in events:
        seq += 1
        digest = sha256(prev + seq.to_bytes(8, "big") + body).digest()
        rows.append((seq, prev, digest, time_ms, class_uid, kind, user, outcome, body))
        prev = digest
    return rows


def checkpoint_of(row: Sequence[Any]) -> Checkpoint:
    """A Checkpoint from a ``CHECKPOINT_COLUMNS`` row."""
    seq, digest, time_ms, kid, signature = row
    return Checkpoint(int(seq), bytes(digest), int(time_ms), str(kid), bytes(signature))
