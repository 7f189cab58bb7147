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

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import CelError
from ..ids import new_decision_id
from ..model import AccessRequest, Decision, Effect, Obligation, PrincipalKind, Reason
from . import ast, remedy
from .authn import for_anonymous, identity_deny_rules, identity_rules
from .checks import Check, Trace
from .compiler import PASSED, CompiledRule, Compiler, RuleShape
from .dispatch import ALLOWED, DENIED, DENY_ERROR
from .index import Group, RuleIndex, Slot
from .tables import CompiledTable, Outcome, compile_tables

ALLOW = Effect.ALLOW
ANONYMOUS = PrincipalKind.ANONYMOUS
_new = tuple.__new__  # builds a Decision without a Python-level __new__ call
_END = 1 << 62  # "after every table": no allow rule decided
_UNDECIDED = "Access could not be decided: a policy condition could not be evaluated."


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
        self.tables: tuple[CompiledTable, ...] = ()
        if policy.tables:  # otherwise decide() stays exactly the rules' path
            self.tables = compile_tables(policy, compiler)
            self.decide = self._decide_with_tables  # type: ignore[method-assign]

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
        """The outcomes of several groups, merged by policy order (``_collect``): the
        first deny rule in the policy decides, else the first allow rule; else the
        closest allow rule and the first that raised explain."""
        deny, deny_error, allow, closest, closest_at, failed = _collect(request, groups)
        if deny is not None:
            return self._for(request, self._denied_by(deny, request, cel_error=deny_error))
        if allow is not None:
            return _new(Decision, (ALLOW, allow.name, new_decision_id(), self.version, (), ()))
        return self._for(request, self._no_match(request, slot, closest, closest_at, failed))

    def _decide_with_tables(self, request: AccessRequest) -> Decision:
        """``decide`` for a policy with permission tables (see the module docstring): the
        index's groups merged by policy order as in ``_merged``, then the tables written
        before the first allow rule that allows (all of them if none does)."""
        try:
            slot = self._slot(request)
            merged = _collect(request, slot.probe(request))
            deny, deny_error, allow, closest, closest_at, failed = merged
            if deny is not None:  # a deny rule decides first
                return self._for(request, self._denied_by(deny, request, cel_error=deny_error))
            before = _END if allow is None else allow.index
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
            if allow is not None:
                return _new(Decision, (ALLOW, allow.name, new_decision_id(), self.version, (), ()))
            decision = self._table_denial(request, slot, closest, closest_at, failed, near)
            return self._for(request, decision)
        except Exception as exc:  # noqa: BLE001 - fail closed on anything
            return self._internal_error(exc)

    def _table_denial(
        self,
        request: AccessRequest,
        slot: Slot,
        closest: CompiledRule | None,
        closest_at: int,
        failed: tuple[CompiledRule, CelError] | None,
        outcome: Outcome | None,
    ) -> Decision:
        """Nothing allowed: explain with the table row or the allow rule that came closest
        (the row on a tie; the rule is the one a linear scan finds closest, as in
        ``_no_match``); then a row whose condition raised, like an allow rule's; then,
        when rows are about this resource type and action but not for the caller's roles
        (and no rule got past its first criterion), which roles would grant."""
        closest, closest_at = slot.closest(request, closest, closest_at)
        if outcome is not None and outcome.closest is not None and outcome.at >= closest_at:
            row = outcome.closest
            return self._default_deny(request, row.name, row.rule.shape, outcome.at)
        if (closest is not None and closest_at > 0) or failed is not None:
            return self._closest_deny(request, slot, closest, closest_at, failed)
        if outcome is not None and outcome.failed is not None:
            row, error = outcome.failed
            return self._evaluation_failed(row.name, row.rule.shape, error)
        tables = [t for t in self.tables if t.covers(request.resource.type, request.action)]
        if not tables and closest is not None:  # no row is about this request: the rule
            return self._closest_deny(request, slot, closest, closest_at, failed)
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
        return self._closest_deny(request, slot, closest, closest_at, failed)

    def _closest_deny(
        self,
        request: AccessRequest,
        slot: Slot,
        closest: CompiledRule | None,
        closest_at: int,
        failed: tuple[CompiledRule, CelError] | None,
    ) -> Decision:
        """Default deny explained by ``closest`` (already a linear scan's, see
        ``Slot.closest``): a rule written for this resource rather than a catch-all when
        none got past its first criterion; else the first allow rule that raised."""
        if closest is not None and closest_at == 0 and not closest.shape.specific:
            closest = slot.prefer_specific(request) or closest
        if closest is None and failed is not None:
            return self._evaluation_failed(failed[0].name, failed[0].shape, failed[1])
        if closest is None:
            return self._default_deny(request, None, None, closest_at)
        fixes = remedy.rule_fixes(closest.shape.checks, request)
        if not fixes:  # the person cannot satisfy it: a rule they can satisfy, if any
            found = remedy.alternative(slot.allows, request)
            if found is None:
                return self._nobody(request, closest, closest_at)
            closest, fixes = found
        return self._remedied(request, closest, fixes)

    def _remedied(
        self, request: AccessRequest, rule: CompiledRule, fixes: Sequence[remedy.Fix]
    ) -> Decision:
        """Default deny explained by ``rule``, whose failing criteria ``fixes`` the person
        can all satisfy: the reason names every one (``verity.policy.remedy``)."""
        shape = rule.shape
        code = fixes[0][1].code
        hint = remedy.hint_of(fixes, shape.hint)
        remedies = tuple(dict.fromkeys(fix for _, fix in fixes))
        if shape.message:
            reason = Reason(code, shape.message, rule.name, hint, remedies=remedies)
        else:
            reason = Reason(
                code, "", rule.name, hint, functools.partial(remedy.operator_message, fixes),
                request, summary=remedy.summary(fixes, request), remedies=remedies,
            )  # fmt: skip
        kinds = {check.obligation for check, _ in fixes}
        kind = kinds.pop() if len(kinds) == 1 else None
        obligations = (Obligation(kind, rule.name),) if kind is not None else ()
        return Decision(Effect.DENY, None, new_decision_id(), self.version, (reason,), obligations)

    def _nobody(self, request: AccessRequest, closest: CompiledRule, at: int) -> Decision:
        """Default deny that no change in the person's position would lift: said plainly;
        the operator's message keeps the closest rule's failing criterion."""
        target = _describe(request)
        failing = closest.shape.checks[at] if 0 <= at < len(closest.shape.checks) else None

        def render(request: AccessRequest) -> str:
            detail = "" if failing is None else f": {failing.failure_message(request)}"
            return (
                f"no policy rule grants {target} to anyone in this caller's position "
                f"(closest rule '{closest.name}'{detail})"
            )

        reason = Reason(
            remedy.NO_GRANT, "", closest.name, remedy.ASK_ADMIN, render, request,
            summary=remedy.nobody_summary(request, _person_target(request)),
        )  # fmt: skip
        return Decision(Effect.DENY, None, new_decision_id(), self.version, (reason,))

    def _denied_by(
        self, rule: CompiledRule, request: AccessRequest, cel_error: CelError | None = None
    ) -> Decision:
        if cel_error is not None:
            message = f"denied: policy rule '{rule.name}' could not be evaluated"
            reason = Reason("rule.error", message, rule.name, remedy.ASK_ADMIN, summary=_UNDECIDED)
        elif rule.rule.message:
            reason = Reason("rule.deny", rule.rule.message, rule.name, rule.rule.hint)
        else:
            reason = Reason(
                "rule.deny", "", rule.name, rule.rule.hint or remedy.ASK_ADMIN,
                _deny_message(rule), request,
                summary=remedy.deny_rule_summary(None, rule.rule.description),
            )  # fmt: skip
        return Decision(Effect.DENY, rule.name, new_decision_id(), self.version, (reason,))

    def _default_deny(
        self, request: AccessRequest, name: str | None, shape: RuleShape | None, at: int
    ) -> Decision:
        if name is None or shape is None:
            reason = Reason(
                "no_matching_rule",
                f"no policy rule grants access to {_describe(request)}",
                None,
                remedy.ASK_ADMIN,
                summary=remedy.nobody_summary(request, _person_target(request)),
            )
            return Decision(Effect.DENY, None, new_decision_id(), self.version, (reason,))
        failing = shape.checks[at]
        try:
            leaf = failing.leaf(request)
        except CelError as exc:
            return self._evaluation_failed(name, shape, exc)
        hint = shape.hint or leaf.hint
        fixes = remedy.fixes_of(failing, request)
        remedies = tuple(fix for _, fix in fixes or ())
        if shape.message:
            reason = Reason(leaf.code, shape.message, name, hint, remedies=remedies)
        else:
            summary = remedy.summary(fixes, request) if fixes else None
            reason = Reason(
                leaf.code, "", name, hint, failing.failure_message, request,
                summary=summary, remedies=remedies,
            )  # fmt: skip
        obligations = (Obligation(leaf.obligation, name),) if leaf.obligation else ()
        return Decision(Effect.DENY, None, new_decision_id(), self.version, (reason,), obligations)

    def _evaluation_failed(self, name: str, shape: RuleShape, error: CelError) -> Decision:
        """Default deny explained by an allow rule whose CEL condition raised an error."""
        message = f"a condition of rule '{name}' could not be evaluated: {error.message}"
        reason = Reason("rule.error", message, name, shape.hint or remedy.ASK_ADMIN,
                        summary=_UNDECIDED)  # fmt: skip
        return Decision(Effect.DENY, None, new_decision_id(), self.version, (reason,))

    def _internal_error(self, exc: Exception) -> Decision:
        reason = Reason(
            "internal_error",
            f"access denied: internal error while deciding ({type(exc).__name__})",
            hint="try again; if it keeps happening, tell your administrator the decision id",
            summary="Access could not be decided because of an internal error.",
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


_Collected = tuple[
    CompiledRule | None,  # the first deny rule (in policy order) that matched or raised
    CelError | None,  # its error, if it raised
    CompiledRule | None,  # the first allow rule that allowed
    CompiledRule | None,  # else the probed allow rule that came closest (furthest, first)
    int,  # the index of its first failing criterion (-1: none)
    tuple[CompiledRule, CelError] | None,  # the first probed allow rule that raised
]


def _collect(request: AccessRequest, groups: Sequence[Group]) -> _Collected:
    """The outcomes of the probed groups, merged by policy order."""
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
    return deny, deny_error, allow, closest, closest_at, failed


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


def _deny_message(rule: CompiledRule) -> Callable[[AccessRequest], str]:
    def render(request: AccessRequest) -> str:
        held = "; ".join(f"{c.expected()} (observed: {c.observed(request)})" for c in rule.checks)
        return f"denied by policy rule '{rule.name}'" + (f": {held}" if held else "")

    return render


def _person_target(request: AccessRequest) -> str:
    """What was asked for, in a person's words."""
    if request.http is not None:
        return f"access to {request.http.path}"
    if request.resource.type is not None:
        return f"{request.action or 'access'} on this {request.resource.type}"
    return "access to this resource"


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
