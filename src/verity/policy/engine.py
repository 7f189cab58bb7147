"""The policy decision point: ``Engine.decide(request) -> Decision``, pure and fail-closed.

Deny overrides allow: a deny rule whose criteria all hold decides first; otherwise the
first allow rule (in policy order) whose criteria all hold allows; otherwise the request
is denied by default, with the reason taken from the allow rule that came closest. A
deny of an anonymous caller that signing in could change is an ``authenticate`` outcome
(``verity.policy.authn``). Any unexpected exception denies with reason
``internal_error``. No I/O happens here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import CelError
from ..ids import new_decision_id
from ..model import AccessRequest, Decision, Effect, Obligation, PrincipalKind, Reason
from . import ast
from .authn import for_anonymous, identity_deny_rules, identity_rules
from .checks import Check, Trace
from .compiler import PASSED, CompiledRule, Compiler, RuleShape
from .dispatch import ALLOWED, DENIED, DENY_ERROR
from .index import Group, RuleIndex, Slot

ALLOW = Effect.ALLOW
ANONYMOUS = PrincipalKind.ANONYMOUS
_new = tuple.__new__  # builds a Decision without a Python-level __new__ call


@dataclass(frozen=True, slots=True)
class RuleExplanation:
    """How one rule saw the request: applicable or not, and every criterion's outcome."""

    name: str
    effect: Effect
    applicable: bool
    matched: bool
    criteria: tuple[Trace, ...]
    error: str | None = None
    index: int = 0
    path: str = ""
    description: str = ""


@dataclass(frozen=True, slots=True)
class Explanation:
    """The decision for a request and how every rule considered saw it."""

    decision: Decision
    rules: tuple[RuleExplanation, ...]


class Engine:
    """A compiled policy. Build it with ``verity.policy.compile_policy``."""

    def __init__(
        self,
        policy: ast.Policy,
        rules: Sequence[CompiledRule],
        compiler: Compiler,
        *,
        linear: bool = False,
    ) -> None:
        self.policy = policy
        self._compiler = compiler
        self.version = policy.version
        self.rules = tuple(rules)
        self._index = RuleIndex(self.rules, dict(policy.access_levels), linear=linear)
        self._slot = self._index.slot
        self._identity_denies = identity_deny_rules(policy)
        self._identity_readers = identity_rules(policy)

    def decide(self, request: AccessRequest) -> Decision:
        """Decide one request. Never raises: an internal failure is a deny."""
        try:
            slot = self._slot(request)
            groups = slot.probe(request)
            if len(groups) == 1:  # the usual case: one group, its outcome is the answer
                group = groups[0]
                kind, i, closest_at, detail = (group.run or group.build())(request)
                if kind == ALLOWED:
                    name = group.allows[i][0].name
                    return _new(Decision, (ALLOW, name, new_decision_id(), self.version, (), ()))
                if kind == DENIED:
                    decision = self._denied_by(group.denies[i][0], request)
                elif kind == DENY_ERROR:
                    decision = self._denied_by(group.denies[i][0], request, cel_error=detail)
                else:
                    closest = None if i < 0 else group.allows[i][0]
                    failed = None if detail is None else (group.allows[detail[0]][0], detail[1])
                    decision = self._no_match(request, slot, closest, closest_at, failed)
                return self._for(request, decision)
            return self._merged(request, slot, groups)
        except Exception as exc:  # noqa: BLE001 - fail closed on anything
            return self._internal_error(exc)

    def candidates(self, request: AccessRequest) -> frozenset[int]:
        """The indexes of the rules that the index lets ``request`` evaluate (every rule
        that can match it is among them); for tests and diagnostics."""
        groups = self._slot(request).probe(request)
        return frozenset(rule.index for g in groups for rule, _ in (*g.denies, *g.allows))

    def _merged(self, request: AccessRequest, slot: Slot, groups: Sequence[Group]) -> Decision:
        """The outcomes of several groups, merged by policy order: the first deny rule
        (matched or raising) in the policy decides, else the first allow rule; else the
        closest allow rule (furthest, then first) and the first that raised explain."""
        deny: CompiledRule | None = None
        deny_error: CelError | None = None
        allow: CompiledRule | None = None
        closest: CompiledRule | None = None
        closest_at = -1
        failed: tuple[CompiledRule, CelError] | None = None
        for group in groups:
            kind, i, at, detail = (group.run or group.build())(request)
            if kind in (DENIED, DENY_ERROR):
                rule = group.denies[i][0]
                if deny is None or rule.index < deny.index:
                    deny, deny_error = rule, detail if kind == DENY_ERROR else None
            elif kind == ALLOWED:
                rule = group.allows[i][0]
                if allow is None or rule.index < allow.index:
                    allow = rule
            else:
                if i >= 0:
                    rule = group.allows[i][0]
                    if at > closest_at or (
                        at == closest_at and (closest is None or rule.index < closest.index)
                    ):
                        closest, closest_at = rule, at
                if detail is not None:
                    rule = group.allows[detail[0]][0]
                    if failed is None or rule.index < failed[0].index:
                        failed = (rule, detail[1])
        if deny is not None:
            return self._for(request, self._denied_by(deny, request, cel_error=deny_error))
        if allow is not None:
            return _new(Decision, (ALLOW, allow.name, new_decision_id(), self.version, (), ()))
        return self._for(request, self._no_match(request, slot, closest, closest_at, failed))

    def _for(self, request: AccessRequest, decision: Decision) -> Decision:
        if request.principal.kind is ANONYMOUS:
            return for_anonymous(decision, self._identity_denies, self._identity_readers)
        return decision

    def _no_match(
        self,
        request: AccessRequest,
        slot: Slot,
        closest: CompiledRule | None,
        closest_at: int,
        failed: tuple[CompiledRule, CelError] | None,
    ) -> Decision:
        """Default deny, explained by the allow rule a linear scan finds closest."""
        closest, closest_at = slot.closest(request, closest, closest_at)
        if closest is not None and closest_at == 0 and not closest.shape.specific:
            closest = slot.prefer_specific(request) or closest
        if closest is None and failed is not None:
            return self._evaluation_failed(failed[0].name, failed[0].shape, failed[1])
        if closest is None:
            return self._default_deny(request, None, None, closest_at)
        return self._default_deny(request, closest.name, closest.shape, closest_at)

    def _denied_by(
        self, rule: CompiledRule, request: AccessRequest, cel_error: CelError | None = None
    ) -> Decision:
        if cel_error is not None:
            message = f"denied: policy rule '{rule.name}' could not be evaluated"
            reason = Reason("rule.error", message, rule.name)
        elif rule.rule.message:
            reason = Reason("rule.deny", rule.rule.message, rule.name, rule.rule.hint)
        else:
            reason = Reason(
                "rule.deny", "", rule.name, rule.rule.hint, _deny_message(rule), request
            )
        return Decision(Effect.DENY, rule.name, new_decision_id(), self.version, (reason,))

    def _default_deny(
        self, request: AccessRequest, name: str | None, shape: RuleShape | None, at: int
    ) -> Decision:
        if name is None or shape is None:
            reason = Reason(
                "no_matching_rule",
                f"no policy rule grants access to {_describe(request)}",
                None,
                "request access from an administrator",
            )
            return Decision(Effect.DENY, None, new_decision_id(), self.version, (reason,))
        failing = shape.checks[at]
        try:
            leaf = failing.leaf(request)
        except CelError as exc:
            return self._evaluation_failed(name, shape, exc)
        hint = shape.hint or leaf.hint
        if shape.message:
            reason = Reason(leaf.code, shape.message, name, hint)
        else:
            reason = Reason(leaf.code, "", name, hint, failing.failure_message, request)
        obligations = (Obligation(leaf.obligation, name),) if leaf.obligation else ()
        return Decision(Effect.DENY, None, new_decision_id(), self.version, (reason,), obligations)

    def _evaluation_failed(self, name: str, shape: RuleShape, error: CelError) -> Decision:
        """Default deny explained by an allow rule whose CEL condition raised an error."""
        message = f"a condition of rule '{name}' could not be evaluated: {error.message}"
        reason = Reason("rule.error", message, name, shape.hint)
        return Decision(Effect.DENY, None, new_decision_id(), self.version, (reason,))

    def _internal_error(self, exc: Exception) -> Decision:
        reason = Reason(
            "internal_error", f"access denied: internal error while deciding ({type(exc).__name__})"
        )
        return Decision(Effect.DENY, None, new_decision_id(), self.version, (reason,))

    def explain(self, request: AccessRequest, *, all_rules: bool = False) -> Explanation:
        """The decision plus every rule considered and each criterion's outcome.

        Only rules whose resources cover the request are listed unless ``all_rules``.
        """
        decision = self.decide(request)
        explained = []
        for rule in self.rules:
            applicable = bool(rule.targets(request))
            if not applicable and not all_rules:
                continue
            checks = self._compiler.checks(rule.rule.condition)
            explained.append(_explain_rule(rule, checks, request, applicable))
        return Explanation(decision, tuple(explained))


def _explain_rule(
    rule: CompiledRule, checks: Sequence[Check], request: AccessRequest, applicable: bool
) -> RuleExplanation:
    traces: list[Trace] = []
    error: str | None = None
    for check in checks:
        try:
            traces.append(check.trace(request))
        except CelError as exc:
            error = exc.message
            traces.append(
                Trace(
                    check.node.path,
                    check.code,
                    False,
                    check.expected(),
                    "(error)",
                    error=exc.message,
                )
            )
    try:
        matched = applicable and rule.evaluate(request) == PASSED
    except CelError as exc:
        matched, error = rule.effect is Effect.DENY, exc.message
    return RuleExplanation(
        rule.name,
        rule.effect,
        applicable,
        matched,
        tuple(traces),
        error,
        index=rule.index,
        path=rule.rule.path,
        description=rule.rule.description,
    )


def _deny_message(rule: CompiledRule) -> Callable[[AccessRequest], str]:
    def render(request: AccessRequest) -> str:
        held = "; ".join(f"{c.expected()} (observed: {c.observed(request)})" for c in rule.checks)
        return f"denied by policy rule '{rule.name}'" + (f": {held}" if held else "")

    return render


def _describe(request: AccessRequest) -> str:
    parts = []
    if request.http is not None:
        parts.append(f"{request.http.method} {request.http.host}{request.http.path}")
    if request.resource.type is not None:
        parts.append(
            f"{request.action or 'access'} on {request.resource.type}"
            + (f" {request.resource.id}" if request.resource.id else "")
        )
    elif request.action:
        parts.append(f"action {request.action}")
    return " / ".join(parts) or "this resource"


__all__ = ["Engine", "Explanation", "RuleExplanation"]
