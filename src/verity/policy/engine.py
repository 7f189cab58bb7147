"""The policy decision point: ``Engine.decide(request) -> Decision``, pure and fail-closed.

Deny overrides allow: a deny rule whose criteria all hold decides first; otherwise the
first allow rule (in policy order) whose criteria all hold allows; otherwise the request
is denied by default, with the reason taken from the allow rule that came closest.
Permission tables (``verity.policy.tables``) are allows in policy order like rules: a
deny rule overrides a row that grants, and when both a table row and an allow rule
grant, the one written first in the policy decides (its name is the decision's rule). A
policy without tables is decided exactly as before (``decide`` is not wrapped). A
deny of an anonymous caller that signing in could change is an ``authenticate`` outcome
(``verity.policy.authn``). Any unexpected exception denies with reason
``internal_error``. No I/O happens here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import CelError
from ..ids import new_decision_id
from ..model import AccessRequest, Decision, Effect, Obligation, PrincipalKind, Reason
from . import ast
from .authn import for_anonymous, identity_deny_rules, identity_rules
from .checks import Check, Trace
from .compiler import PASSED, CompiledRule, Compiler, RuleShape
from .dispatch import ALLOWED, DENIED, DENY_ERROR, NO_MATCH
from .index import NAMES, RuleIndex
from .tables import CompiledTable, Outcome, compile_tables

ALLOW = Effect.ALLOW
ANONYMOUS = PrincipalKind.ANONYMOUS
_new = tuple.__new__  # builds a Decision without a Python-level __new__ call
_END = 1 << 62  # "after every table": no allow rule decided


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
        self, policy: ast.Policy, rules: Sequence[CompiledRule], compiler: Compiler
    ) -> None:
        self.policy = policy
        self._compiler = compiler
        self.version = policy.version
        self.rules = tuple(rules)
        self._index = RuleIndex(self.rules)
        self._candidates = self._index.candidates
        self._identity_denies = identity_deny_rules(policy)
        self._identity_readers = identity_rules(policy)
        self.tables: tuple[CompiledTable, ...] = ()
        if policy.tables:  # otherwise decide() stays exactly the rules' path
            self.tables = compile_tables(policy, compiler)
            self._positions = {rule.name: rule.index for rule in self.rules}
            self.decide = self._decide_with_tables  # type: ignore[method-assign]

    def decide(self, request: AccessRequest) -> Decision:
        """Decide one request. Never raises: an internal failure is a deny."""
        try:
            candidates = self._candidates(request)
            kind, i, closest_at, detail = candidates[0](request)
            if kind == ALLOWED:  # the rule names sit in the candidates tuple itself
                name = candidates[NAMES + i]
                return _new(Decision, (ALLOW, name, new_decision_id(), self.version, (), ()))
            return self._not_allowed(request, candidates, kind, i, closest_at, detail)
        except Exception as exc:  # noqa: BLE001 - fail closed on anything
            return self._internal_error(exc)

    def _decide_with_tables(self, request: AccessRequest) -> Decision:
        """``decide`` for a policy with permission tables (see the module docstring)."""
        try:
            candidates = self._candidates(request)
            kind, i, closest_at, detail = candidates[0](request)
            if kind in (DENIED, DENY_ERROR):  # a deny rule decides first
                return self._not_allowed(request, candidates, kind, i, closest_at, detail)
            before = self._positions[candidates[NAMES + i]] if kind == ALLOWED else _END
            near: Outcome | None = None
            for table in self.tables:
                if table.position > before:  # an allow rule above this table allows
                    break
                outcome = table.evaluate(request)
                name = outcome.granted
                if name is not None:
                    return _new(Decision, (ALLOW, name, new_decision_id(), self.version, (), ()))
                if near is None or (outcome.closest is not None and outcome.at > near.at):
                    near = outcome
            if kind == ALLOWED:
                name = candidates[NAMES + i]
                return _new(Decision, (ALLOW, name, new_decision_id(), self.version, (), ()))
            decision = self._table_denial(request, candidates, i, closest_at, detail, near)
            if request.principal.kind is ANONYMOUS:
                decision = for_anonymous(decision, self._identity_denies, self._identity_readers)
        except Exception as exc:  # noqa: BLE001 - fail closed on anything
            return self._internal_error(exc)
        return decision

    def _table_denial(
        self,
        request: AccessRequest,
        candidates: tuple[Any, ...],
        i: int,
        closest_at: int,
        detail: Any,
        outcome: Outcome | None,
    ) -> Decision:
        """Nothing allowed: explain with the table row or the allow rule that came closest
        (the row on a tie); then a row whose condition raised, like an allow rule's; then,
        when rows are about this resource type and action but not for the caller's roles
        (and no rule got past its first criterion), which roles would grant."""
        if outcome is not None and outcome.closest is not None and outcome.at >= closest_at:
            row = outcome.closest
            return self._default_deny(request, row.name, row.rule.shape, outcome.at)
        if (i >= 0 and closest_at > 0) or detail is not None:
            return self._denial(request, candidates, NO_MATCH, i, closest_at, detail)
        if outcome is not None and outcome.failed is not None:
            row, error = outcome.failed
            return self._evaluation_failed(row.name, row.rule.shape, error)
        tables = [t for t in self.tables if t.covers(request.resource.type, request.action)]
        if not tables and i >= 0:  # no row is about this request: the rule that came closest
            return self._denial(request, candidates, NO_MATCH, i, closest_at, detail)
        table = tables[0] if tables else self.tables[0]
        reason = Reason(
            "no_matching_rule",
            "",
            None,
            "request access from an administrator",
            table.no_grant_message,
            request,
        )
        return Decision(Effect.DENY, None, new_decision_id(), self.version, (reason,))

    def _not_allowed(
        self,
        request: AccessRequest,
        candidates: tuple[Any, ...],
        kind: int,
        i: int,
        closest_at: int,
        detail: Any,
    ) -> Decision:
        decision = self._denial(request, candidates, kind, i, closest_at, detail)
        if request.principal.kind is ANONYMOUS:
            return for_anonymous(decision, self._identity_denies, self._identity_readers)
        return decision

    def _denial(
        self,
        request: AccessRequest,
        candidates: tuple[Any, ...],
        kind: int,
        i: int,
        closest_at: int,
        detail: Any,
    ) -> Decision:
        deny_rules: Sequence[CompiledRule] = candidates[1]
        if kind == DENIED:
            return self._denied_by(deny_rules[i], request)
        if kind == DENY_ERROR:
            return self._denied_by(deny_rules[i], request, cel_error=detail)
        functions: Sequence[Callable[[AccessRequest], int]] = candidates[2]
        shapes: Sequence[RuleShape] = candidates[3]
        closest, failed = i, detail
        if closest >= 0 and closest_at == 0 and not shapes[closest].specific:
            closest = _prefer_specific(request, functions, shapes, closest)
        if closest < 0 and failed is not None:
            at = failed[0]
            return self._evaluation_failed(candidates[NAMES + at], shapes[at], failed[1])
        if closest < 0:
            return self._default_deny(request, None, None, closest_at)
        return self._default_deny(request, candidates[NAMES + closest], shapes[closest], closest_at)

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
        tables = list(self.tables)
        for rule in self.rules:
            while tables and tables[0].position <= rule.index:
                explained += _explain_table(tables.pop(0), request, all_rules)
            applicable = bool(rule.targets(request))
            if not applicable and not all_rules:
                continue
            checks = self._compiler.checks(rule.rule.condition)
            explained.append(_explain_rule(rule, checks, request, applicable))
        for table in tables:
            explained += _explain_table(table, request, all_rules)
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


def _explain_table(
    table: CompiledTable, request: AccessRequest, all_rows: bool
) -> list[RuleExplanation]:
    """The table's rows for the request (see ``CompiledTable.explain``) as rule
    explanations: a row is applicable when its type and actions cover the request; the
    role is its first criterion, then the row's conditions."""
    out = []
    for item in table.explain(request, all_rows=all_rows):
        traces: list[Trace] = [item.role]
        error: str | None = None
        for check in item.checks:
            try:
                traces.append(check.trace(request))
            except CelError as exc:
                error = exc.message
                traces.append(
                    Trace(check.node.path, check.code, False, check.expected(), "(error)",
                          error=exc.message)
                )  # fmt: skip
        matched = False
        if item.applicable and item.role.passed and error is None:
            try:
                matched = item.compiled.rule.evaluate(request) == PASSED
            except CelError as exc:
                error = exc.message
        out.append(
            RuleExplanation(
                item.compiled.name,
                Effect.ALLOW,
                item.applicable,
                matched,
                tuple(traces),
                error,
                index=table.position,
                path=item.row.where,
                description=table.table.description,
            )
        )
    return out


def _prefer_specific(
    request: AccessRequest,
    functions: Sequence[Callable[[AccessRequest], int]],
    shapes: Sequence[RuleShape],
    closest: int,
) -> int:
    """When no rule got past its first criterion, explain with a rule written for this
    resource rather than a catch-all (deny path only)."""
    for i, shape in enumerate(shapes):
        if shape.specific:
            try:
                if functions[i](request) == 0:
                    return i
            except CelError:
                continue
    return closest


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
