"""Risk signals and trust scores in PostgreSQL (scores are compare-and-set)."""

from __future__ import annotations

from psycopg.types.json import Jsonb

from .._common import check_score, check_text, current
from ..errors import ConcurrentUpdateError
from ..records import RiskSignal, ScoreFactor, TrustScore, load_factors
from .db import Conn, PostgresDatabase

_SCORE = "select subject, score, factors, updated, version from verity_trust_scores"
_UPSERT = """insert into verity_trust_scores (subject, score, factors, updated, version)
values (%(subject)s, %(score)s, %(factors)s, %(updated)s, 1)
on conflict (subject) do update set score = excluded.score, factors = excluded.factors,
    updated = excluded.updated, version = verity_trust_scores.version + 1
returning version"""
_INSERT = """insert into verity_trust_scores (subject, score, factors, updated, version)
values (%(subject)s, %(score)s, %(factors)s, %(updated)s, 1)
on conflict (subject) do nothing returning version"""
_CAS = """update verity_trust_scores set score = %(score)s, factors = %(factors)s,
    updated = %(updated)s, version = version + 1
where subject = %(subject)s and version = %(expected)s returning version"""


class PostgresRisk:
    """``RiskStore`` on PostgreSQL."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    def append(self, signal: RiskSignal) -> None:
        """Store a signal (idempotent by id)."""
        check_text("subject", signal.subject)
        check_text("signal kind", signal.kind)
        with self._db.connection() as conn:
            conn.execute(
                "insert into verity_risk_signals (id, subject, kind, at, severity, detail) "
                "values (%s, %s, %s, %s, %s, %s) on conflict (id) do nothing",
                (signal.id, signal.subject, signal.kind, signal.at, signal.severity,
                 Jsonb(dict(signal.detail))),
            )  # fmt: skip

    def signals(self, subject: str, *, since: float = 0.0, limit: int = 100) -> list[RiskSignal]:
        """The subject's signals since ``since``, oldest first."""
        with self._db.connection() as conn:
            rows = conn.execute(
                "select subject, kind, at, severity, detail, id from verity_risk_signals "
                "where subject = %s and at >= %s order by at, id limit %s",
                (subject, since, limit),
            ).fetchall()
        return [RiskSignal(s, k, a, v, d, i) for s, k, a, v, d, i in rows]

    def get_score(self, subject: str) -> TrustScore | None:
        """The subject's current score."""
        with self._db.connection() as conn:
            row = conn.execute(_SCORE + " where subject = %s", (subject,)).fetchone()
        if row is None:
            return None
        return TrustScore(row[0], row[1], load_factors(row[2]), row[3], row[4])

    def set_score(
        self,
        subject: str,
        score: int,
        factors: tuple[ScoreFactor, ...],
        *,
        now: float | None = None,
        expected_version: int | None = None,
    ) -> TrustScore:
        """Store a score in one statement, compare-and-set on ``expected_version`` if given."""
        at = current(now)
        params = {
            "subject": check_text("subject", subject),
            "score": check_score(score),
            "factors": Jsonb([[f.code, f.delta, f.detail] for f in factors]),
            "updated": at,
            "expected": expected_version,
        }
        with self._db.connection() as conn:
            if expected_version is None:
                statement = _UPSERT
            else:
                statement = _INSERT if expected_version == 0 else _CAS
            row = conn.execute(statement, params).fetchone()
            if row is None:
                raise ConcurrentUpdateError(subject, expected_version or 0, _version(conn, subject))
        return TrustScore(subject, score, tuple(factors), at, int(row[0]))


def _version(conn: Conn, subject: str) -> int | None:
    row = conn.execute("select version from verity_trust_scores where subject = %s", (subject,))
    found = row.fetchone()
    return None if found is None else int(found[0])
