"""Code run in child processes by the concurrency tests (importable by ``spawn``)."""

from __future__ import annotations

from typing import Any

from verity.store import SessionStore, postgres, sqlite


def open_sessions(backend: str, target: dict[str, str]) -> tuple[SessionStore, Any]:
    """A session store on the test's database, opened by this process."""
    if backend == "sqlite":
        sdb = sqlite.SqliteDatabase(target["path"])
        return sqlite.SqliteSessions(sdb), sdb
    pdb = postgres.PostgresDatabase(target["dsn"], schema=target["schema"], max_size=2)
    return postgres.PostgresSessions(pdb), pdb


def touch_then_rotate(
    backend: str, target: dict[str, str], worker: int, touches: int, barrier: Any, results: Any
) -> None:
    """Touch session ``s1`` ``touches`` times, then race the other workers to rotate it."""
    store, db = open_sessions(backend, target)
    try:
        barrier.wait()
        for i in range(touches):
            store.touch("s1", now=1_000_001.0 + worker * 100 + i, data={f"w{worker}": i})
        barrier.wait()
        won = store.rotate("s1", f"s1-by-{worker}", now=1_001_000.0, expires=1_005_000.0)
        results.put((worker, won is not None))
    finally:
        db.close()
