"""One criterion, judged every way the engine can judge it, for the leaf-check tests.

``judge(criteria, request)`` compiles a one-rule policy around ``criteria`` and returns
whether it allows ``request``, after asserting that every path agrees: ``decide`` twice
(the second call finds warm caches, e.g. a time window's cached UTC offset), ``explain``
(the rule's match and each criterion's trace, which runs the check's own test rather
than the inlined expression ``decide`` splices in), the same criteria as a deny rule
in front of an open allow rule, and the criteria under ``not``.
"""

from __future__ import annotations

import json
from typing import Any

from verity.model import AccessRequest, Decision, Effect
from verity.policy import Engine, compile_policy, parse_policy
from verity.policy.checks import Trace

_ENGINES: dict[str, Engine] = {}


def engine(rules: list[dict[str, Any]]) -> Engine:
    """The compiled policy of ``rules`` (compiled once per distinct policy)."""
    key = json.dumps(rules, sort_keys=True)
    found = _ENGINES.get(key)
    if found is None:
        found = _ENGINES[key] = compile_policy(parse_policy({"rules": rules}))
    return found


def allow_rule(criteria: dict[str, Any]) -> Engine:
    return engine([{"name": "rule", "allow": criteria}])


def judge(criteria: dict[str, Any], request: AccessRequest) -> bool:
    """True when a rule allowing on ``criteria`` allows ``request`` (all paths agree)."""
    allow = allow_rule(criteria)
    first, second = allow.decide(request), allow.decide(request)
    allowed = first.effect is Effect.ALLOW
    assert second.effect is first.effect, "a second decision differs from the first"
    assert all(r.code != "internal_error" for r in (*first.reasons, *second.reasons))
    explanation = allow.explain(request)
    assert explanation.decision.effect is first.effect
    (rule,) = explanation.rules
    assert rule.matched is allowed, "explain's rule match differs from decide"
    passed = [trace.passed for trace in rule.criteria]
    assert all(passed) is allowed, f"explain's criteria {passed} differ from decide"

    deny = engine([{"name": "block", "deny": criteria}, {"name": "open", "allow": {}}])
    denied = deny.decide(request)
    assert denied.effect is (Effect.DENY if allowed else Effect.ALLOW)
    assert denied.rule == ("block" if allowed else "open")
    (block, _) = deny.explain(request).rules
    assert block.matched is allowed
    assert all(trace.passed for trace in block.criteria) is allowed

    negated = allow_rule({"not": criteria}).decide(request)
    assert negated.effect is (Effect.DENY if allowed else Effect.ALLOW)
    return allowed


def trace(criteria: dict[str, Any], request: AccessRequest) -> Trace:
    """The explain trace of the (single) criterion ``criteria`` for ``request``."""
    (rule,) = allow_rule(criteria).explain(request).rules
    (only,) = rule.criteria
    return only


def denial(criteria: dict[str, Any], request: AccessRequest) -> Decision:
    """The default deny of a rule allowing on ``criteria`` (asserted to deny)."""
    decision = allow_rule(criteria).decide(request)
    assert decision.effect is Effect.DENY
    return decision


def no_rule(closest: str) -> str:
    """The reason a person gets when no rule grants the request to anyone in their position
    (a criterion they cannot change failed): the closest rule's own words, kept for operators."""
    return (
        "no policy rule grants this resource to anyone in this caller's position"
        f" (closest rule 'rule': {closest})"
    )


NO_RULE_HINT = "if your work needs it, ask your administrator and quote the decision id"
