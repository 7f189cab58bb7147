"""``verity policy explain`` output: the decision, then one table per rule of every
criterion (key path, pass/fail, expected, observed), nested criteria indented."""

from __future__ import annotations

import re

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..model import Decision, Effect
from ..policy import Explanation, RuleExplanation
from ..policy.checks import Trace
from .render import JsonDoc, line, print_json, stdout

_CONDITION = re.compile(r"^(rules\[\d+\]\.(?:allow|deny))(?:\.|$)")


def decision_json(decision: Decision) -> JsonDoc:
    """A decision as JSON (the reasons' messages are rendered here)."""
    return {
        "effect": decision.effect.value,
        "allowed": decision.allowed,
        "rule": decision.rule,
        "decision_id": decision.decision_id,
        "policy_version": decision.policy_version,
        "reasons": [
            {
                "code": r.code,
                "message": r.message,
                "rule": r.rule,
                "hint": r.hint,
                "summary": r.summary,
                "remedies": [{"code": m.code, "values": list(m.values)} for m in r.remedies],
            }
            for r in decision.reasons
        ],
        "obligations": [{"kind": o.kind.value, "detail": o.detail} for o in decision.obligations],
    }


def trace_json(trace: Trace) -> JsonDoc:
    """One criterion's outcome, with its nested criteria."""
    return {
        "path": trace.path,
        "code": trace.code,
        "passed": trace.passed,
        "expected": trace.expected,
        "observed": trace.observed,
        "error": trace.error,
        "children": [trace_json(child) for child in trace.children],
    }


def rule_json(rule: RuleExplanation) -> JsonDoc:
    return {
        "name": rule.name,
        "effect": rule.effect.value,
        "applicable": rule.applicable,
        "matched": rule.matched,
        "error": rule.error,
        "criteria": [trace_json(t) for t in rule.criteria],
    }


def explanation_json(explanation: Explanation, *, policy: str) -> JsonDoc:
    """The whole explanation as one JSON document."""
    return {
        "policy": policy,
        "decision": decision_json(explanation.decision),
        "rules": [rule_json(r) for r in explanation.rules],
    }


def print_explanation(explanation: Explanation, *, policy: str, as_json: bool) -> None:
    """Print the decision and a criteria table per rule (or the JSON document)."""
    if as_json:
        print_json(explanation_json(explanation, policy=policy))
        return
    console = stdout()
    print_decision(console, explanation.decision, policy=policy)
    for rule in explanation.rules:
        console.print()
        line(console, rule_title(rule))
        console.print(rule_table(rule))
    if not explanation.rules:
        console.print()
        line(console, ("no rule's resources cover this request", "dim"))


def print_decision(console: Console, decision: Decision, *, policy: str) -> None:
    """Effect, deciding rule, decision id, reasons with hints, obligations."""
    allowed = decision.effect is Effect.ALLOW
    effect = ("ALLOW", "bold green") if allowed else ("DENY", "bold red")
    line(console, ("Decision:    ", "bold"), effect)
    line(console, ("Rule:        ", "bold"), decision.rule or "(none: default deny)")
    line(console, ("Decision id: ", "bold"), decision.decision_id)
    line(console, ("Policy:      ", "bold"), f"{policy} (version {decision.policy_version[:12]})")
    for reason in decision.reasons:
        line(console, ("Reason:      ", "bold"), (reason.code, "yellow"), f": {reason.message}")
        if reason.rule and reason.rule != decision.rule:
            line(console, "             ", ("explained by rule: ", "dim"), reason.rule)
        if reason.summary != reason.message:
            line(console, "             ", ("shown to the person: ", "dim"), reason.summary)
        if reason.hint:
            line(console, "             ", ("hint: ", "cyan"), reason.hint)
    for obligation in decision.obligations:
        detail = f" ({obligation.detail})" if obligation.detail else ""
        line(console, ("Obligation:  ", "bold"), obligation.kind.value, detail)


def _status(rule: RuleExplanation) -> str:
    if not rule.applicable:
        return "not applicable: its resources do not cover this request"
    if rule.effect is Effect.DENY:
        return "matched: denies" if rule.matched else "not matched"
    return "matched: allows" if rule.matched else "not matched"


def _scope(rule: RuleExplanation) -> str:
    """The key path of the rule's condition (``rules[3].allow``), from its criteria."""
    for trace in rule.criteria:
        match = _CONDITION.match(trace.path)
        if match:
            return match.group(1)
    return ""


def rule_title(rule: RuleExplanation) -> Text:
    """``rule NAME (EFFECT, rules[i].EFFECT) - STATUS``."""
    scope = _scope(rule)
    where = f", {scope}" if scope else ""
    return Text.assemble(
        ("rule ", "bold"), (rule.name, "bold"), f" ({rule.effect.value}{where}) - {_status(rule)}"
    )


def rule_table(rule: RuleExplanation) -> Table:
    """A table of every criterion of ``rule``; children of all/any/not/levels indented.

    Key paths are shown relative to the rule's condition (``rules[3].allow``, see the
    title) and, below an access level, relative to ``access_levels.NAME``; ``--json``
    gives every full key path.
    """
    rows: list[_Row] = []
    scope = _scope(rule)
    for trace in rule.criteria:
        _add_rows(rows, trace, depth=0, scope=scope, parent="")
    if not rule.criteria:
        rows.append((Text("(no criteria)", "dim"), Text("pass", "green"), Text("anything"), Text()))
    widest = max(len(row[0]) for row in rows)
    table = Table(box=box.SIMPLE_HEAD, expand=False)
    table.add_column("Criterion", no_wrap=widest <= 36, overflow="fold")
    table.add_column("Result", no_wrap=True)
    table.add_column("Expected", overflow="fold")
    table.add_column("Observed", overflow="fold")
    for row in rows:
        table.add_row(*row)
    if rule.error:
        table.caption = Text(f"evaluation error: {rule.error}", "red")
    return table


_Row = tuple[Text, Text, Text, Text]
_COMBINED = {
    "all": "all of the criteria below",
    "any": "one of the criteria below",
    "not": "the criteria below must not hold",
}


def _add_rows(rows: list[_Row], trace: Trace, *, depth: int, scope: str, parent: str) -> None:
    if trace.code == "all" and (trace.path == parent or len(trace.children) == 1):
        # The block under `not:`, or a one-criterion block of `any:`: show its children.
        for child in trace.children:
            _add_rows(rows, child, depth=depth, scope=scope, parent=trace.path)
        return
    path = trace.path.removeprefix(f"{scope}.") if scope else trace.path
    result = Text("pass", "green") if trace.passed else Text("FAIL", "bold red")
    expected = _COMBINED.get(trace.code, trace.expected)
    observed = trace.observed if trace.error is None else f"{trace.observed} {trace.error}"
    indent = "  " * depth + ("└ " if depth else "")
    rows.append((Text(indent + path), result, Text(expected), Text(observed)))
    if trace.code.startswith("level."):
        scope = "access_levels." + trace.code.removeprefix("level.")
    for child in trace.children:
        _add_rows(rows, child, depth=depth + 1, scope=scope, parent=trace.path)
