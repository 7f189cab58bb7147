"""Just-in-time grants in SQLite."""

from __future__ import annotations

import sqlite3

from .._common import check_text, current, new_grant
from ..errors import GrantNotFoundError, GrantStateError, SelfApprovalError
from ..records import Grant, GrantStatus, grant_from_row, same_principal
from .db import SqliteDatabase

_SELECT = (
    "select id, principal, name, reason, duration, requested_at, status, approver, "
    "decided_at, starts, expires from verity_grants"
)


class SqliteGrants:
    """``GrantStore`` on a SQLite file."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    def request(
        self,
        principal: str,
        name: str,
        *,
        duration: float,
        reason: str = "",
        now: float | None = None,
    ) -> Grant:
        """File a pending request."""
        grant = new_grant(principal, name, duration=duration, reason=reason, now=now)
        with self._db.write() as conn:
            conn.execute(
                "insert into verity_grants (id, principal, name, reason, duration, requested_at, "
                "status, approver, decided_at, starts, expires) values (?,?,?,?,?,?,?,?,?,?,?)",
                (grant.id, grant.principal, grant.name, grant.reason, grant.duration,
                 grant.requested_at, grant.status.value, None, None, None, None),
            )  # fmt: skip
        return grant

    def approve(self, grant_id: str, *, approver: str, now: float | None = None) -> Grant:
        """Approve a pending grant (never by its requester)."""
        return self._decide(grant_id, approver, current(now), GrantStatus.APPROVED)

    def deny(self, grant_id: str, *, approver: str, now: float | None = None) -> Grant:
        """Deny a pending grant (never by its requester)."""
        return self._decide(grant_id, approver, current(now), GrantStatus.DENIED)

    def _decide(self, grant_id: str, approver: str, at: float, status: GrantStatus) -> Grant:
        check_text("approver", approver)
        with self._db.write() as conn:
            row = conn.execute(_SELECT + " where id = ?", (grant_id,)).fetchone()
            if row is None:
                raise GrantNotFoundError(grant_id)
            grant = grant_from_row(row)
            if same_principal(grant.principal, approver):
                raise SelfApprovalError(grant_id, approver)
            if grant.status is not GrantStatus.PENDING:
                raise GrantStateError(grant_id, grant.status.value)
            approved = status is GrantStatus.APPROVED
            starts = at if approved else None
            expires = at + grant.duration if approved else None
            try:
                conn.execute(
                    "update verity_grants set status = ?, approver = ?, decided_at = ?, "
                    "starts = ?, expires = ? where id = ? and status = 'pending'",
                    (status.value, approver, at, starts, expires, grant_id),
                )
            except sqlite3.IntegrityError:
                raise SelfApprovalError(grant_id, approver) from None
            row = conn.execute(_SELECT + " where id = ?", (grant_id,)).fetchone()
        return grant_from_row(row)

    def get(self, grant_id: str) -> Grant | None:
        """The grant, or ``None``."""
        row = self._db.query_one(_SELECT + " where id = ?", (grant_id,))
        return None if row is None else grant_from_row(row)

    def active(self, principal: str, *, at: float | None = None) -> list[Grant]:
        """The principal's grants in force at ``at``."""
        t = current(at)
        rows = self._db.query(
            _SELECT + " where principal = ? and status in ('approved', 'expired') "
            "and starts <= ? and expires > ? order by expires, id",
            (principal, t, t),
        )
        return [grant_from_row(row) for row in rows]

    def expire(self, *, now: float | None = None) -> int:
        """Mark ended approved grants as expired."""
        with self._db.write() as conn:
            return conn.execute(
                "update verity_grants set status = 'expired' "
                "where status = 'approved' and expires <= ?",
                (current(now),),
            ).rowcount
