"""SQLite helpers shared by the stores and the audit log (no other Verity imports)."""

from __future__ import annotations

import sqlite3
import time


def enable_wal(conn: sqlite3.Connection, timeout: float) -> str:
    """Switch ``conn``'s database to WAL, retrying while another connection holds the lock.

    Changing the journal mode of a new file needs an exclusive lock, and SQLite may answer
    "database is locked" at once, without calling the busy handler, when several
    connections or processes open the same fresh file together. Returns the mode in force.
    """
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            row = conn.execute("pragma journal_mode=wal").fetchone()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        else:
            return str(row[0]).lower() if row else ""
