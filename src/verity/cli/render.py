"""Output of the CLI: Rich for people, one JSON document for scripts; errors on stderr.

Everything taken from input files (paths, messages, names) is printed as ``Text``, never
as Rich markup, so a ``[bold]`` in a policy or a key path like ``rules[0]`` prints as is.
"""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.text import Text

from ..errors import (
    ConfigError,
    PolicyLoadError,
    PolicyTestError,
    Problem,
    RequestError,
    VerityError,
)
from ..policy import Engine
from ..policy.testing import CaseResult, TestReport
from ..segmentation.errors import ManifestError

JsonDoc = dict[str, Any]
_ProblemErrors = (ConfigError, PolicyLoadError, PolicyTestError, RequestError, ManifestError)


def stdout() -> Console:
    """A console on standard output (created per call, so redirection is honoured)."""
    return Console(highlight=False)


def stderr() -> Console:
    """A console on standard error."""
    return Console(stderr=True, highlight=False)


def print_json(document: JsonDoc, *, err: bool = False) -> None:
    """Print ``document`` as indented JSON, without colour or wrapping."""
    typer.echo(json.dumps(document, indent=2, ensure_ascii=False), err=err)


def line(console: Console, *parts: str | tuple[str, str] | Text) -> None:
    """Print one unwrapped line of plain strings and (text, style) pairs."""
    console.print(Text.assemble(*parts), soft_wrap=True)


def problems_json(problems: tuple[Problem, ...] | list[Problem]) -> list[JsonDoc]:
    return [{"path": p.path, "message": p.message} for p in problems]


def error_json(exc: VerityError) -> JsonDoc:
    """An error as a JSON document: type, message, and for document errors the problems."""
    body: JsonDoc = {"type": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, _ProblemErrors):
        body.update(kind=exc.kind, source=exc.source, problems=problems_json(exc.problems))
    return {"error": body}


def print_error(exc: VerityError, *, as_json: bool) -> None:
    """Print an error on stderr: every problem as ``FILE: key.path: message``."""
    if as_json:
        print_json(error_json(exc), err=True)
        return
    console = stderr()
    if not isinstance(exc, _ProblemErrors):
        line(console, ("error: ", "bold red"), str(exc))
        return
    count = len(exc.problems)
    noun = "problem" if count == 1 else "problems"
    line(console, ("error: ", "bold red"), f"invalid {exc.kind} {exc.source} ({count} {noun})")
    for problem in exc.problems:
        line(console, f"{exc.source}: {problem}")


def print_check(
    source: str, engine: Engine | None, exc: PolicyLoadError | None, *, as_json: bool
) -> None:
    """The result of ``verity policy check``: valid (with a summary) or every problem."""
    problems = exc.problems if exc is not None else ()
    if as_json:
        document: JsonDoc = {"file": source, "valid": exc is None}
        if engine is not None:
            document.update(
                version=engine.version,
                rules=len(engine.rules),
                access_levels=len(engine.policy.access_levels),
            )
        document["problems"] = problems_json(problems)
        warnings = engine.policy.warnings if engine is not None else ()
        document["warnings"] = problems_json(warnings)
        print_json(document)
        return
    if exc is not None:
        print_error(exc, as_json=False)
        return
    if engine is not None:
        summary = (
            f" ({len(engine.rules)} rules, {len(engine.policy.access_levels)} access levels,"
            f" version {engine.version[:12]})"
        )
        line(stdout(), ("valid", "bold green"), f": {source}{summary}")
        for warning in engine.policy.warnings:
            line(stdout(), ("warning", "bold yellow"), f": {source}: {warning}")


def _rule(rule: str | None) -> str:
    return "(default deny)" if rule is None else rule


def _expected(result: CaseResult) -> str:
    text = result.expected_effect.value
    if result.check_rule:
        text += f", rule {_rule(result.expected_rule)}"
    if result.expected_reason is not None:
        text += f", reason {result.expected_reason}"
    return text


def _actual(result: CaseResult) -> str:
    text = f"{result.actual_effect.value}, rule {_rule(result.actual_rule)}"
    if result.actual_reason is not None:
        text += f", reason {result.actual_reason}"
    return text


def _details(console: Console, result: CaseResult, *, verbose: bool) -> None:
    pad = "    "
    if not result.passed:
        line(console, pad, ("expected: ", "bold"), _expected(result))
    line(console, pad, ("actual:   ", "bold"), _actual(result))
    if result.actual_message:
        line(console, pad, ("reason:   ", "bold"), result.actual_message)
    if result.actual_hint:
        line(console, pad, ("hint:     ", "bold"), result.actual_hint)
    for failure in result.failures:
        line(console, pad, ("mismatch: ", "bold red"), failure)
    if verbose:
        line(console, pad, ("decision: ", "bold"), result.decision_id)


def report_json(report: TestReport, *, policy: str) -> JsonDoc:
    """A test report as JSON: totals and one entry per case."""
    return {
        "policy": policy,
        "tests": report.source,
        "policy_version": report.policy_version,
        "ok": report.ok,
        "total": report.total,
        "passed": report.passed,
        "failed": report.failed,
        "results": [_result_json(r) for r in report.results],
    }


def _result_json(result: CaseResult) -> JsonDoc:
    return {
        "name": result.name,
        "passed": result.passed,
        "expected": {
            "effect": result.expected_effect.value,
            "rule": result.expected_rule,
            "check_rule": result.check_rule,
            "reason": result.expected_reason,
        },
        "actual": {
            "effect": result.actual_effect.value,
            "rule": result.actual_rule,
            "reason": result.actual_reason,
            "message": result.actual_message,
            "hint": result.actual_hint,
        },
        "decision_id": result.decision_id,
        "failures": list(result.failures),
    }


def summary(report: TestReport) -> str:
    """The last line of ``verity policy test`` (``PASS: 25/25``)."""
    text = f"PASS: {report.passed}/{report.total}"
    return text + (f", FAIL: {report.failed}/{report.total}" if report.failed else "")


def print_report(report: TestReport, *, policy: str, as_json: bool, verbose: bool) -> None:
    """PASS/FAIL per case (failures with expected vs actual and the reason), then totals."""
    if as_json:
        print_json(report_json(report, policy=policy))
        return
    console = stdout()
    line(console, (f"{report.source}", "bold"), f" (policy {policy}):")
    for result in report.results:
        mark = ("PASS", "green") if result.passed else ("FAIL", "bold red")
        line(console, mark, f": {result.name}")
        if verbose or not result.passed:
            _details(console, result, verbose=verbose)
    line(console, "-" * 80)
    line(console, (summary(report), "bold green" if report.ok else "bold red"))
