"""The ``authenticate`` outcome: a deny that signing in could change tells the caller so.

A request without a principal (anonymous) that is denied because no allow rule matched,
or by a deny rule whose criteria read identity facts (who the caller is, how they signed
in), is not "forbidden": nobody knows yet who is asking. Its decision leads with the
reason ``authentication_required`` (hint: sign in; the original reason follows, for
explanations) and carries the ``authenticate`` obligation, so every enforcement point
answers 401 / sends the caller to sign in, and a caller that is signed in gets the normal
403. A deny rule about the request alone (network, device, time, HTTP) stays a deny:
signing in would not change it. A rule that could not be evaluated (``rule.error``) is
an ``authenticate`` outcome only when it reads identity facts (an anonymous caller has
none to read, e.g. ``principal.claims.dept``); otherwise errors (``internal_error``,
``rule.error``) stay as they are. This runs only on the deny path.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..model import Decision, Effect, Obligation, ObligationKind, Reason
from . import ast

AUTHENTICATION_REQUIRED = "authentication_required"
_IDENTITY_NODES = (
    ast.Authenticated, ast.Users, ast.Services, ast.Groups, ast.Roles, ast.Claim,
    ast.Mfa, ast.AuthMethods, ast.MaxAge, ast.JitGrant,
)  # fmt: skip
_KEPT = frozenset({"internal_error", "rule.error"})


def needs_identity(node: ast.Node, levels: Mapping[str, ast.All]) -> bool:
    """True when ``node`` reads a fact about the caller's identity or sign-in."""
    if isinstance(node, _IDENTITY_NODES):
        return True
    if isinstance(node, ast.Relation):
        return "principal" in (node.left[0], node.right[0])
    if isinstance(node, ast.Cel):
        return "principal" in node.expression
    if isinstance(node, ast.LevelRef):
        level = levels.get(node.name)
        return level is not None and needs_identity(level, levels)
    if isinstance(node, ast.All | ast.AnyOf):
        return any(needs_identity(child, levels) for child in node.children)
    if isinstance(node, ast.Not):
        return needs_identity(node.child, levels)
    return False


def identity_deny_rules(policy: ast.Policy) -> frozenset[str]:
    """The deny rules whose outcome for an anonymous caller depends on identity facts."""
    return frozenset(
        rule.name
        for rule in policy.rules
        if rule.effect is Effect.DENY and needs_identity(rule.condition, policy.access_levels)
    )


def identity_rules(policy: ast.Policy) -> frozenset[str]:
    """Every rule (allow or deny) whose condition reads identity facts."""
    return frozenset(
        rule.name for rule in policy.rules if needs_identity(rule.condition, policy.access_levels)
    )


def for_anonymous(
    decision: Decision,
    identity_denies: frozenset[str],
    identity_readers: frozenset[str] = frozenset(),
) -> Decision:
    """``decision`` (a deny for an anonymous caller) as an ``authenticate`` outcome when
    signing in could change it; otherwise unchanged. ``identity_readers``: the rules
    that read identity facts (``identity_rules``), for ``rule.error``."""
    first = decision.reasons[0] if decision.reasons else None
    if first is None:
        return decision
    if first.code == "rule.error":
        if first.rule not in identity_readers:
            return decision
    elif first.code in _KEPT or (
        decision.rule is not None and decision.rule not in identity_denies
    ):
        return decision
    rule = decision.rule or first.rule
    reason = Reason(
        AUTHENTICATION_REQUIRED, "authentication required: you are not signed in", rule, "sign in"
    )
    return Decision(
        Effect.DENY,
        decision.rule,
        decision.decision_id,
        decision.policy_version,
        (reason, *decision.reasons),
        (Obligation(ObligationKind.AUTHENTICATE, rule or ""),),
    )
