"""Fixtures for the audit tests: both backends, a checkpoint key, sample events."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from verity.audit import (
    AuditEvent,
    AuditStore,
    CheckpointSigner,
    EventKind,
    UserRef,
    decision_event,
    generate_key,
    session_event,
)
from verity.audit.postgres import PostgresStore
from verity.audit.sqlite import SQLiteStore
from verity.model import (
    AccessRequest,
    Decision,
    Effect,
    HttpTarget,
    NetworkContext,
    Principal,
    Reason,
)

_TRIGGERS = {
    "sqlite": [
        f"drop trigger if exists {t}_no_{op}"
        for t in ("audit_log", "audit_checkpoint")
        for op in ("update", "delete")
    ],
    "postgres": [
        "drop trigger if exists audit_log_append_only on audit_log",
        "drop trigger if exists audit_checkpoint_append_only on audit_checkpoint",
    ],
}


@dataclass
class Backend:
    """One audit backend under test: how to open it and how an attacker edits it."""

    name: str
    url: str
    schema: str | None
    opener: Callable[[], AuditStore]

    def open(self) -> AuditStore:
        return self.opener()

    def raw(self, sql: str, params: tuple[Any, ...] = (), *, keep_triggers: bool = False) -> None:
        """Run SQL as an attacker with write access would (append-only triggers dropped)."""
        statements = ([] if keep_triggers else _TRIGGERS[self.name]) + [sql]
        if self.name == "sqlite":
            import sqlite3

            conn = sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None)
            try:
                for statement in statements:
                    conn.execute(statement, params if statement is sql else ())
            finally:
                conn.close()
            return
        import psycopg

        with psycopg.connect(self.url, options=f"-c search_path={self.schema}") as conn:
            for statement in statements:
                pg_sql = statement.replace("?", "%s")
                conn.execute(pg_sql, params if statement is sql else ())  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each test that takes ``backend`` runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "audit.db"
        return Backend("sqlite", f"sqlite:///{path}", None, lambda: SQLiteStore(path))
    dsn: str = request.getfixturevalue("postgres_dsn")
    schema: str = request.getfixturevalue("pg_schema")
    return Backend("postgres", dsn, schema, lambda: PostgresStore(dsn, schema=schema))


@pytest.fixture
def store(backend: Backend) -> Iterator[AuditStore]:
    opened = backend.open()
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def key_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "audit.key"
    generate_key(path)
    return path


@pytest.fixture(scope="session")
def signer(key_path: Path) -> CheckpointSigner:
    return CheckpointSigner.from_file(key_path)


def request_for(user: str, *, path: str = "/docs/a", method: str = "GET") -> AccessRequest:
    return AccessRequest(
        principal=Principal(id=user, email=f"{user}@example.com", session_id=f"s-{user}"),
        time=time.time(),
        http=HttpTarget(host="wiki.internal", method=method, path=path),
        network=NetworkContext(ip="::ffff:10.1.2.3", region="de"),
        trust_score=72,
    )


def decision_for(effect: Effect, n: int = 1) -> Decision:
    reasons = ()
    if effect is Effect.DENY:
        reason = Reason("device.disk_encrypted", "Disk not encrypted", "docs", "Turn on FileVault")
        reasons = (reason,)
    return Decision(effect, "docs", f"d-test-{n:06d}", "policyhash01", reasons)


def sample_events(count: int, *, users: tuple[str, ...] = ("alice", "bob")) -> list[AuditEvent]:
    """Decision events (alternating users and effects) with a login every tenth event."""
    events: list[AuditEvent] = []
    for n in range(count):
        user = users[n % len(users)]
        if n % 10 == 9:
            events.append(session_event(EventKind.LOGIN, user=UserRef(user), src_ip="10.0.0.9"))
            continue
        effect = Effect.DENY if n % 3 == 0 else Effect.ALLOW
        events.append(decision_event(request_for(user), decision_for(effect, n)))
    return events


def split_octet_counted(data: bytes) -> tuple[list[bytes], bytes]:
    """RFC 6587 octet-counted frames in ``data`` and the incomplete rest."""
    frames: list[bytes] = []
    while b" " in data:
        length, rest = data.split(b" ", 1)
        if not length.isdigit() or len(rest) < int(length):
            break
        frames.append(rest[: int(length)])
        data = rest[int(length) :]
    return frames, data
