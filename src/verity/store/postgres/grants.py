"""Just-in-time grants in PostgreSQL (decisions lock the grant row)."""

from __future__ import annotations

import psycopg

from .._common import check_text, current, new_grant
from ..errors import GrantNotFoundError, GrantStateError, SelfApprovalError
from ..records import Grant, GrantStatus, grant_from_row, same_principal
from .db import PostgresDatabase

_SELECT = (
    "select id, principal, name, reason, duration, requested_at, status, approver, "
    "decided_at, starts, expires from verity_grants"
)
_DECIDE = """update verity_grants set status = %s, approver = %s, decided_at = %s,
    starts = %s, expires = %s
where id = %s and status = 'pending'
returning id, principal, name, reason, duration, requested_at, status, approver, decided_at,
    starts, expires"""


class PostgresGrants:
    """``GrantStore`` on PostgreSQL."""

    def __init__(self, db: PostgresDatabase) -> None:
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
        with self._db.connection() as conn:
            conn.execute(
                "insert into verity_grants (id, principal, name, reason, duration, "
                "requested_at, status) values (%s, %s, %s, %s, %s, %s, %s)",
                (grant.id, grant.principal, grant.name, grant.reason, grant.duration,
                 grant.requested_at, grant.status.value),
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
        try:
            with self._db.transaction() as conn:
                row = conn.execute(_SELECT + " where id = %s for update", (grant_id,)).fetchone()
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
                params = (status.value, approver, at, starts, expires, grant_id)
                decided = conn.execute(_DECIDE, params).fetchone()
        except psycopg.errors.CheckViolation:
            raise SelfApprovalError(grant_id, approver) from None
        if decided is None:  # pragma: no cover - the row is locked and was pending
            raise GrantStateError(grant_id, "changed")
        return grant_from_row(decided)

    def get(self, grant_id: str) -> Grant | None:
        """The grant, or ``None``."""
        with self._db.connection() as conn:
            row = conn.execute(_SELECT + " where id = %s", (grant_id,)).fetchone()
        return None if row is None else grant_from_row(row)

    def active(self, principal: str, *, at: float | None = None) -> list[Grant]:
        """The principal's grants in force at ``at``."""
        t = current(at)
        with self._db.connection() as conn:
            rows = conn.execute(
                _SELECT + " where principal = %s and status in ('approved', 'expired') "
                "and starts <= %s and expires > %s order by expires, id",
                (principal, t, t),
            ).fetchall()
        return [grant_from_row(row) for row in rows]

    def expire(self, *, now: float | None = None) -> int:
        """Mark ended approved grants as expired."""
        with self._db.connection() as conn:
            return conn.execute(
                "update verity_grants set status = 'expired' "
                "where status = 'approved' and expires <= %s",
                (current(now),),
            ).rowcount
