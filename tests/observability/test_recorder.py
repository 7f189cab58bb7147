"""``GatewayObserver.audit_decision`` and group commit: which decisions wait for their
durable commit (denies, the first allow of a subject on a route) and which are answered
at once and committed within the window (repeated allows), and that an unhealthy audit
log never acknowledges a repeated allow early."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from verity.audit import AuditLog, EncodedEvent, Query, Receipt
from verity.audit.sqlite import SQLiteStore
from verity.model import AccessRequest, Decision, Effect, HttpTarget, NetworkContext, Principal
from verity.observability.recorder import GatewayObserver, subject_key

pytestmark = pytest.mark.anyio
WINDOW = 0.05


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class GatedStore(SQLiteStore):
    """A SQLite audit store whose commits wait for ``gate`` and fail while ``broken``."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = threading.Event()
        self.gate.set()
        self.broken = False

    def append_batch(self, events: Sequence[EncodedEvent], *, sign: Any = None) -> list[Receipt]:
        if not self.gate.wait(10):
            raise TimeoutError("test gate never opened")
        if self.broken:
            raise OSError("disk on fire")
        return super().append_batch(events, sign=sign)


@pytest.fixture
def store(tmp_path: Path) -> GatedStore:
    return GatedStore(tmp_path / "audit.db")


@pytest.fixture
def audit(store: GatedStore) -> Iterator[AuditLog]:
    log = AuditLog(store, close_store=False)
    yield log
    store.gate.set()
    log.close()
    store.close()


def stored(tmp: GatedStore) -> list[str]:
    """The decision ids in the log (read through a second connection)."""
    reader = SQLiteStore(tmp.path, create=False)
    try:
        return [r.event()["unmapped"]["verity"]["decision"]["decision_id"]
                for r in reader.query(Query()) if r.event()["class_uid"] == 6003]  # fmt: skip
    finally:
        reader.close()


def request_for(
    user: str = "alice", *, session: str | None = "s-1", **claims: Any
) -> AccessRequest:
    principal = Principal(id=user, session_id=session, claims=claims)
    return AccessRequest(
        principal=principal,
        time=time.time(),
        http=HttpTarget(host="app.test", method="GET", path="/api/x"),
        network=NetworkContext(ip="203.0.113.9"),  # type: ignore[arg-type]
    )


_COUNT = iter(range(1, 10**9))


def decision(effect: Effect = Effect.ALLOW) -> Decision:
    return Decision(effect, "r", f"d-{next(_COUNT):06d}", "v1")


async def until(check: Any, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


async def is_blocked(call: asyncio.Task[bool]) -> bool:
    """Whether ``call`` is still waiting after a while (its commit is held at the gate)."""
    await asyncio.sleep(0.1)
    return not call.done()


def observer(audit: AuditLog, **options: Any) -> GatewayObserver:
    return GatewayObserver(audit=audit, allow_commit_window_seconds=WINDOW, **options)


async def test_a_deny_waits_for_its_durable_commit(audit: AuditLog, store: GatedStore) -> None:
    watch = observer(audit)
    deny = decision(Effect.DENY)
    await watch.audit_decision(request_for(), decision(), "app")  # the pair is allowed now
    store.gate.clear()
    call = asyncio.ensure_future(watch.audit_decision(request_for(), deny, "app"))
    assert await is_blocked(call)
    store.gate.set()
    assert await call
    assert deny.decision_id in stored(store)


async def test_the_first_allow_of_a_subject_and_route_waits(
    audit: AuditLog, store: GatedStore
) -> None:
    watch = observer(audit)
    store.gate.clear()
    first = decision()
    call = asyncio.ensure_future(watch.audit_decision(request_for(), first, "app"))
    assert await is_blocked(call)
    store.gate.set()
    assert await call
    assert first.decision_id in stored(store)


async def test_a_repeated_allow_is_answered_before_its_commit_and_logged_within_the_window(
    audit: AuditLog, store: GatedStore
) -> None:
    watch = observer(audit)
    assert await watch.audit_decision(request_for(), decision(), "app")
    store.gate.clear()  # the next commit cannot happen yet
    repeated = decision()
    started = time.monotonic()
    assert await watch.audit_decision(request_for(), repeated, "app")
    assert time.monotonic() - started < WINDOW  # answered at once ...
    assert repeated.decision_id not in stored(store)  # ... before its commit
    assert audit.stats.early == 1
    store.gate.set()
    await asyncio.sleep(WINDOW)
    await until(lambda: repeated.decision_id in stored(store), within=WINDOW * 4)


async def test_a_new_token_session_or_route_is_a_first_allow_again(
    audit: AuditLog, store: GatedStore
) -> None:
    watch = observer(audit)
    assert await watch.audit_decision(request_for(jti="t1", iat=1), decision(), "app")
    store.gate.clear()
    for other, route in (
        (request_for(jti="t2", iat=2), "app"),  # another token of alice
        (request_for(session="s-2", jti="t1", iat=1), "app"),  # another session
        (request_for("bob", jti="t1", iat=1), "app"),  # another subject
        (request_for(jti="t1", iat=1), "admin"),  # another route
    ):
        call = asyncio.ensure_future(watch.audit_decision(other, decision(), route))
        assert await is_blocked(call), (other.principal, route)
        store.gate.set()
        assert await call
        store.gate.clear()
    assert audit.stats.early == 0


async def test_audit_outage_does_not_let_repeated_allows_through_unaudited(
    audit: AuditLog, store: GatedStore
) -> None:
    """Once a commit has failed, a repeated allow is not acknowledged early: it waits for
    its own commit, which fails, so the gateway refuses it (503 under fail_closed)."""
    watch = observer(audit)
    assert watch.fail_closed
    assert await watch.audit_decision(request_for(), decision(), "app")
    store.broken = True
    # the outage starts: a deny finds it (its commit fails; a deny stays a deny)
    assert not await watch.audit_decision(request_for(), decision(Effect.DENY), "app")
    for _ in range(3):
        assert not await watch.audit_decision(request_for(), decision(), "app")
    assert audit.stats.early == 0
    assert watch.metrics.registry.get_sample_value("verity_audit_write_failures_total") == 4


async def test_the_first_failed_commit_ends_early_acknowledgement_and_its_loss_is_counted(
    audit: AuditLog, store: GatedStore
) -> None:
    """What a crash or an outage can lose: the repeated allows acknowledged before the
    first failed commit (within one window). They are counted; nothing later is lost."""
    watch = observer(audit)
    assert await watch.audit_decision(request_for(), decision(), "app")
    store.broken = True
    assert await watch.audit_decision(request_for(), decision(), "app")  # early; then lost
    await until(lambda: audit.stats.failures == 1)
    assert audit.stats.early_lost == 1
    assert not await watch.audit_decision(request_for(), decision(), "app")
    assert audit.stats.early_lost == 1


async def test_a_writer_behind_by_more_than_the_window_makes_repeated_allows_wait(
    audit: AuditLog, store: GatedStore
) -> None:
    watch = observer(audit)
    assert await watch.audit_decision(request_for(), decision(), "app")
    store.gate.clear()
    assert await watch.audit_decision(request_for(), decision(), "app")  # early: queued
    await asyncio.sleep(WINDOW * 1.5)  # its commit hangs at the gate beyond the window
    late = asyncio.ensure_future(watch.audit_decision(request_for(), decision(), "app"))
    assert await is_blocked(late)
    store.gate.set()
    assert await late
    assert audit.stats.early == 1


async def test_a_closed_or_dead_audit_log_refuses_repeated_allows(
    audit: AuditLog, store: GatedStore
) -> None:
    watch = observer(audit)
    assert await watch.audit_decision(request_for(), decision(), "app")
    audit.close()
    assert not await watch.audit_decision(request_for(), decision(), "app")
    assert audit.stats.early == 0


async def test_window_zero_makes_every_allow_wait_as_before(
    audit: AuditLog, store: GatedStore
) -> None:
    watch = GatewayObserver(audit=audit, allow_commit_window_seconds=0)
    assert await watch.audit_decision(request_for(), decision(), "app")
    store.gate.clear()
    call = asyncio.ensure_future(watch.audit_decision(request_for(), decision(), "app"))
    assert await is_blocked(call)
    store.gate.set()
    assert await call
    assert audit.stats.early == 0


async def test_the_first_allow_memory_is_bounded(audit: AuditLog, store: GatedStore) -> None:
    watch = observer(audit, allow_memory_entries=3)
    for user in ("u1", "u2", "u3", "u4", "u5"):
        assert await watch.audit_decision(request_for(user), decision(), "app")
    assert len(watch._allowed) == 3
    assert subject_key(request_for("u1").principal, "app") not in watch._allowed
    store.gate.clear()  # u1 was forgotten: its next allow is a first (durable) one again
    call = asyncio.ensure_future(watch.audit_decision(request_for("u1"), decision(), "app"))
    assert await is_blocked(call)
    store.gate.set()
    assert await call
    assert await watch.audit_decision(request_for("u5"), decision(), "app")
    assert audit.stats.early == 1


async def test_every_decision_is_still_its_own_event(audit: AuditLog, store: GatedStore) -> None:
    watch = observer(audit)
    decisions = [decision() for _ in range(20)] + [decision(Effect.DENY)]
    for made in decisions:
        assert await watch.audit_decision(request_for(), made, "app")
    await until(lambda: len(stored(store)) == len(decisions))
    assert stored(store) == [d.decision_id for d in decisions]
    assert audit.stats.early == 19
