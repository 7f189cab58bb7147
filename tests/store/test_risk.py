"""RiskStore behaviour, identical on every backend."""

from __future__ import annotations

from typing import Any

import pytest

from verity.store import ConcurrentUpdateError, RiskSignal, ScoreFactor

T = 1_000_000.0
FACTORS = (ScoreFactor("auth.mfa", 20, "MFA at login"), ScoreFactor("net.new", -15, "new ASN"))


def test_signals_are_kept_in_time_order_once(risk: Any) -> None:
    late = RiskSignal("s1", "new_location", T + 2, 30, {"country": "FR"})
    early = RiskSignal("s1", "failed_login", T + 1, 10)
    risk.append(late)
    risk.append(early)
    risk.append(late)  # the same signal twice is kept once
    risk.append(RiskSignal("s2", "failed_login", T))
    assert risk.signals("s1") == [early, late]
    assert risk.signals("s1", since=T + 2) == [late]
    assert risk.signals("s1", limit=1) == [early]


def test_a_score_keeps_its_factors(risk: Any) -> None:
    assert risk.get_score("s1") is None
    stored = risk.set_score("s1", 65, FACTORS, now=T)
    assert stored == risk.get_score("s1")
    assert (stored.score, stored.factors, stored.version) == (65, FACTORS, 1)
    assert risk.set_score("s1", 70, (), now=T + 1).version == 2


def test_compare_and_set_refuses_a_stale_version(risk: Any) -> None:
    risk.set_score("s1", 50, FACTORS, now=T, expected_version=0)
    with pytest.raises(ConcurrentUpdateError) as lost:
        risk.set_score("s1", 10, FACTORS, now=T, expected_version=0)
    assert (lost.value.expected, lost.value.actual) == (0, 1)
    assert risk.set_score("s1", 40, FACTORS, now=T, expected_version=1).version == 2
    with pytest.raises(ConcurrentUpdateError):
        risk.set_score("s2", 40, FACTORS, now=T, expected_version=3)
    assert risk.get_score("s1").score == 40


def test_a_score_outside_0_to_100_is_refused(risk: Any) -> None:
    with pytest.raises(ValueError, match="between 0 and 100"):
        risk.set_score("s1", -1, (), now=T)
