"""Risk signals and trust scores in SQLite."""

from __future__ import annotations

from .._common import check_score, check_text, current
from ..errors import ConcurrentUpdateError
from ..records import (
    RiskSignal,
    ScoreFactor,
    TrustScore,
    dump_factors,
    dump_json,
    load_factors,
    load_json,
)
from .db import SqliteDatabase

_SCORE = "select subject, score, factors, updated, version from verity_trust_scores"


class SqliteRisk:
    """``RiskStore`` on a SQLite file."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    def append(self, signal: RiskSignal) -> None:
        """Store a signal (idempotent by id)."""
        check_text("subject", signal.subject)
        check_text("signal kind", signal.kind)
        with self._db.write() as conn:
            conn.execute(
                "insert into verity_risk_signals (id, subject, kind, at, severity, detail) "
                "values (?, ?, ?, ?, ?, ?) on conflict (id) do nothing",
                (signal.id, signal.subject, signal.kind, signal.at, signal.severity,
                 dump_json(signal.detail)),
            )  # fmt: skip

    def signals(self, subject: str, *, since: float = 0.0, limit: int = 100) -> list[RiskSignal]:
        """The subject's signals since ``since``, oldest first."""
        rows = self._db.query(
            "select subject, kind, at, severity, detail, id from verity_risk_signals "
            "where subject = ? and at >= ? order by at, id limit ?",
            (subject, since, limit),
        )
        return [RiskSignal(s, k, a, v, load_json(d), i) for s, k, a, v, d, i in rows]

    def get_score(self, subject: str) -> TrustScore | None:
        """The subject's current score."""
        row = self._db.query_one(_SCORE + " where subject = ?", (subject,))
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
        """Store a score, compare-and-set on ``expected_version`` if given."""
        check_text("subject", subject)
        check_score(score)
        at = current(now)
        with self._db.write() as conn:
            row = conn.execute(
                "select version from verity_trust_scores where subject = ?", (subject,)
            ).fetchone()
            version = 0 if row is None else int(row[0])
            if expected_version is not None and expected_version != version:
                raise ConcurrentUpdateError(subject, expected_version, version)
            conn.execute(
                "insert into verity_trust_scores (subject, score, factors, updated, version) "
                "values (?, ?, ?, ?, ?) on conflict (subject) do update set "
                "score = excluded.score, factors = excluded.factors, "
                "updated = excluded.updated, version = excluded.version",
                (subject, score, dump_factors(factors), at, version + 1),
            )
        return TrustScore(subject, score, tuple(factors), at, version + 1)
