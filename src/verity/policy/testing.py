"""The policy test runner (``verity policy test``), like ``opa test`` for Verity policies.

A test file (YAML or JSON)::

    defaults: {time: "2026-11-23T10:00:00+01:00", network: {ip: 10.1.2.3, region: DE}}
    tests:
      - name: contractor reads docs from a trusted laptop
        request: {...}         # the schema of verity.request_io.RequestDoc
        expect: allow          # allow | deny
        rule: contractors-read-docs    # optional: the deciding rule (null: default deny)
        reason: device.disk_encrypted  # optional: the code of the primary reason

``defaults`` is deep-merged under every request: mappings merge key by key, the case
wins, and any other value (lists, ``null``) replaces the default (``device: null``
means "no device"). A case may carry a ``description`` (ignored). The whole file is
validated before anything runs (``load_test_file`` raises one ``PolicyTestError`` naming
every problem by key path); ``run_tests`` is pure.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .. import yamlio
from ..errors import PolicyTestError, Problem
from ..model import AccessRequest, Effect
from ..request_io import RequestDoc, problems_of
from .engine import Engine

_TOP_KEYS = ("defaults", "tests")
_CASE_KEYS = ("name", "description", "request", "expect", "rule", "reason")
_EFFECTS = {effect.value: effect for effect in Effect}


@dataclass(frozen=True, slots=True, kw_only=True)
class TestCase:
    """One validated case. ``rule`` is compared only if ``check_rule`` (it was given);
    then ``None`` expects a default deny (no deciding rule)."""

    __test__ = False  # not a pytest test class

    name: str
    request: AccessRequest
    expect: Effect
    rule: str | None = None
    check_rule: bool = False
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TestSuite:
    """The validated cases of one test file, in file order."""

    __test__ = False

    source: str
    cases: tuple[TestCase, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseResult:
    """What a case expected, what the engine decided and why; ``failures`` says each
    mismatch in words (empty when the case passed)."""

    name: str
    passed: bool
    expected_effect: Effect
    expected_rule: str | None
    check_rule: bool
    expected_reason: str | None
    actual_effect: Effect
    actual_rule: str | None
    actual_reason: str | None
    actual_message: str
    actual_hint: str | None
    decision_id: str
    failures: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class TestReport:
    """Every case's result, in file order, with the policy version that decided."""

    __test__ = False

    source: str
    policy_version: str
    results: tuple[CaseResult, ...]

    @property
    def total(self) -> int:
        return len(self.results)

    @property
    def passed(self) -> int:
        return sum(1 for r in self.results if r.passed)

    @property
    def failed(self) -> int:
        return self.total - self.passed

    @property
    def ok(self) -> bool:
        """True when every case passed (an empty report is not ok)."""
        return self.total > 0 and self.failed == 0


def load_test_file(path: str | Path) -> TestSuite:
    """Read and validate a test file; raises ``PolicyTestError`` naming every problem."""
    source = str(path)
    try:
        document = yamlio.load_file(path)
    except yamlio.YamlProblem as exc:
        raise PolicyTestError(source, [exc.problem]) from None
    return parse_test_document(document, source=source)


def parse_test_document(document: Any, *, source: str = "<tests>") -> TestSuite:
    """Validate an already parsed test document (see the module docstring for its shape)."""
    problems: list[Problem] = []
    if not isinstance(document, dict):
        raise PolicyTestError(source, [Problem("", "a test file is a mapping with 'tests'")])
    problems.extend(
        _unknown("", k, _TOP_KEYS, "top-level key") for k in document if k not in _TOP_KEYS
    )
    defaults = document.get("defaults") or {}
    if not isinstance(defaults, dict):
        problems.append(Problem("defaults", "expected a mapping (request fields shared by cases)"))
        defaults = {}
    raw = document.get("tests")
    cases: list[TestCase] = []
    if not isinstance(raw, list) or not raw:
        problems.append(Problem("tests", "required: a non-empty list of test cases"))
    else:
        cases = _cases(raw, defaults, problems)
    if problems:
        # First-seen order; a bad default is reported once, not once per case.
        raise PolicyTestError(source, list(dict.fromkeys(problems)))
    return TestSuite(source=source, cases=tuple(cases))


def _cases(raw: list[Any], defaults: dict[str, Any], problems: list[Problem]) -> list[TestCase]:
    cases: list[TestCase] = []
    seen: dict[str, int] = {}
    for i, body in enumerate(raw):
        case = _case(body, f"tests[{i}]", defaults, problems)
        name = body.get("name") if isinstance(body, dict) else None
        if isinstance(name, str) and seen.setdefault(name, i) != i:
            message = f"duplicate test name {name!r} (also tests[{seen[name]}])"
            problems.append(Problem(f"tests[{i}].name", message))
        if case is not None:
            cases.append(case)
    return cases


def _case(
    body: Any, path: str, defaults: dict[str, Any], problems: list[Problem]
) -> TestCase | None:
    if not isinstance(body, dict):
        problems.append(Problem(path, "a test case is a mapping with name, request and expect"))
        return None
    before = len(problems)
    problems.extend(
        _unknown(path, k, _CASE_KEYS, "test case key") for k in body if k not in _CASE_KEYS
    )
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append(Problem(f"{path}.name", "required: a non-empty string"))
    expect = _EFFECTS.get(body["expect"]) if isinstance(body.get("expect"), str) else None
    if expect is None:
        got = f", got {body['expect']!r}" if "expect" in body else ""
        problems.append(Problem(f"{path}.expect", f"required: allow or deny{got}"))
    rule = body.get("rule")
    if rule is not None and (not isinstance(rule, str) or not rule):
        problems.append(Problem(f"{path}.rule", "expected a rule name, or null for default deny"))
    reason = body.get("reason")
    if "reason" in body and (not isinstance(reason, str) or not reason):
        problems.append(Problem(f"{path}.reason", "expected a reason code such as auth.mfa"))
    elif reason is not None and expect is Effect.ALLOW:
        problems.append(Problem(f"{path}.reason", "only a deny has a reason; remove it"))
    if not isinstance(body.get("description", ""), str):
        problems.append(Problem(f"{path}.description", "expected a string"))
    request = _request(body, f"{path}.request", defaults, problems)
    if len(problems) != before or request is None or expect is None:
        return None
    return TestCase(
        name=str(name),
        request=request,
        expect=expect,
        rule=rule,
        check_rule="rule" in body,
        reason=reason,
    )


def _request(
    body: dict[str, Any], path: str, defaults: dict[str, Any], problems: list[Problem]
) -> AccessRequest | None:
    own = body.get("request")
    if not isinstance(own, dict):
        problems.append(Problem(path, "required: a mapping (the access request)"))
        return None
    merged = deep_merge(defaults, own)
    try:
        return RequestDoc.model_validate(merged).to_request()
    except ValidationError as exc:
        located = zip(exc.errors(), problems_of(exc), strict=True)
        for error, problem in located:
            from_defaults = not _present(own, error["loc"]) and _present(defaults, error["loc"])
            where = "defaults" if from_defaults else path
            problems.append(Problem(f"{where}.{problem.path}".rstrip("."), problem.message))
        return None


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``: nested mappings merge, every other value replaces."""
    out = dict(base)
    for key, value in override.items():
        below = out.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            out[key] = deep_merge(below, value)
        else:
            out[key] = value
    return out


def _present(document: Any, loc: tuple[int | str, ...]) -> bool:
    """Whether ``loc`` leads to a value in ``document`` (key paths of pydantic errors)."""
    for key in loc:
        inside = isinstance(document, list) and isinstance(key, int) and 0 <= key < len(document)
        if not (inside or (isinstance(document, dict) and key in document)):
            return False
        document = document[key]
    return True


def _unknown(path: str, key: object, known: tuple[str, ...], what: str) -> Problem:
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    where = f"{path}.{key}" if path else str(key)
    return Problem(where, f"unknown {what} {str(key)!r}{hint} (known: {', '.join(known)})")


def run_tests(engine: Engine, suite: TestSuite) -> TestReport:
    """Decide every case with ``engine`` and compare with what the case expects."""
    results = tuple(run_case(engine, case) for case in suite.cases)
    return TestReport(source=suite.source, policy_version=engine.version, results=results)


def run_case(engine: Engine, case: TestCase) -> CaseResult:
    """Decide one case and compare effect, deciding rule and primary reason code."""
    decision = engine.decide(case.request)
    primary = decision.reasons[0] if decision.reasons else None
    actual_reason = primary.code if primary is not None else None
    failures: list[str] = []
    if decision.effect is not case.expect:
        failures.append(f"expected {case.expect.value}, got {decision.effect.value}")
    if case.check_rule and decision.rule != case.rule:
        failures.append(f"expected rule {_rule_text(case.rule)}, got {_rule_text(decision.rule)}")
    if case.reason is not None and actual_reason != case.reason:
        failures.append(f"expected reason {case.reason}, got {actual_reason or '(none)'}")
    return CaseResult(
        name=case.name,
        passed=not failures,
        expected_effect=case.expect,
        expected_rule=case.rule,
        check_rule=case.check_rule,
        expected_reason=case.reason,
        actual_effect=decision.effect,
        actual_rule=decision.rule,
        actual_reason=actual_reason,
        actual_message=decision.reason,
        actual_hint=primary.hint if primary is not None else None,
        decision_id=decision.decision_id,
        failures=tuple(failures),
    )


def _rule_text(rule: str | None) -> str:
    return rule or "(default deny)"


__all__ = [
    "CaseResult",
    "TestCase",
    "TestReport",
    "TestSuite",
    "deep_merge",
    "load_test_file",
    "parse_test_document",
    "run_case",
    "run_tests",
]
