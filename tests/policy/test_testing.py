"""The policy test runner: cases pass or fail on effect, rule and reason; defaults merge
under every request; a malformed test file names every problem by its key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from verity.errors import PolicyTestError
from verity.model import Effect
from verity.policy import Engine, compile_policy, load_policy
from verity.policy.testing import (
    TestSuite,
    deep_merge,
    load_test_file,
    parse_test_document,
    run_tests,
)

POLICY = """
access_levels:
  trusted_device: {device: {managed: true, disk_encrypted: true}}
rules:
  - name: no-kp
    deny: {regions: [KP]}
  - name: contractors-read-docs
    resources: [{host: wiki.internal, methods: [GET], paths: ["/docs/**"]}]
    allow: {roles: [contractor], mfa: true, levels: [trusted_device]}
"""

DEFAULTS: dict[str, Any] = {
    "time": "2026-11-23T10:00:00+01:00",
    "network": {"ip": "10.1.2.3", "region": "DE"},
    "device": {"id": "laptop", "managed": True, "disk_encrypted": True},
    "http": {"host": "wiki.internal", "path": "/docs/a"},
}
CONTRACTOR = {"id": "carol", "roles": ["contractor"], "mfa": True}


@pytest.fixture(scope="module")
def engine() -> Engine:
    return compile_policy(load_policy(POLICY))


def suite(*cases: dict[str, Any], defaults: dict[str, Any] | None = None) -> TestSuite:
    return parse_test_document(
        {"defaults": DEFAULTS if defaults is None else defaults, "tests": list(cases)},
        source="t.yaml",
    )


def case(name: str = "c", **fields: Any) -> dict[str, Any]:
    return {"name": name, "request": {"principal": CONTRACTOR}, "expect": "allow", **fields}


def problems(document: Any) -> dict[str, str]:
    with pytest.raises(PolicyTestError) as caught:
        parse_test_document(document, source="t.yaml")
    assert caught.value.source == "t.yaml"
    return {p.path: p.message for p in caught.value.problems}


# ---------------------------------------------------------------------------- running


def test_matching_expectations_pass(engine: Engine) -> None:
    report = run_tests(engine, suite(case(rule="contractors-read-docs")))
    assert report.ok
    assert (report.total, report.passed, report.failed) == (1, 1, 0)
    result = report.results[0]
    assert result.passed
    assert result.actual_effect is Effect.ALLOW
    assert result.actual_rule == "contractors-read-docs"
    assert result.failures == ()
    assert result.decision_id
    assert report.policy_version == engine.version


def test_wrong_effect_fails_with_expected_and_actual(engine: Engine) -> None:
    denied = case(request={"principal": CONTRACTOR, "device": {"disk_encrypted": False}})
    report = run_tests(engine, suite(denied))
    result = report.results[0]
    assert not report.ok
    assert report.failed == 1
    assert not result.passed
    assert result.expected_effect is Effect.ALLOW
    assert result.actual_effect is Effect.DENY
    assert result.actual_reason == "device.disk_encrypted"
    assert "disk is not encrypted" in result.actual_message
    assert result.actual_hint is not None
    assert "expected allow, got deny" in result.failures


def test_reason_code_is_compared(engine: Engine) -> None:
    request = {"principal": CONTRACTOR, "device": {"disk_encrypted": False}}
    good = case("good", request=request, expect="deny", reason="device.disk_encrypted")
    bad = case("bad", request=request, expect="deny", reason="auth.mfa")
    first, second = run_tests(engine, suite(good, bad)).results
    assert first.passed
    assert not second.passed
    assert second.expected_reason == "auth.mfa"
    assert second.failures == ("expected reason auth.mfa, got device.disk_encrypted",)


def test_rule_is_compared_and_null_means_default_deny(engine: Engine) -> None:
    no_mfa = {"principal": {**CONTRACTOR, "mfa": False}}
    default_deny = case("default", request=no_mfa, expect="deny", rule=None)
    wrong_rule = case("wrong", expect="allow", rule="no-kp")
    kp = {"principal": CONTRACTOR, "network": {"region": "KP"}}
    by_rule = case("by rule", request=kp, expect="deny", rule=None)
    results = run_tests(engine, suite(default_deny, wrong_rule, by_rule)).results
    assert [r.passed for r in results] == [True, False, False]
    assert results[1].failures == ("expected rule no-kp, got contractors-read-docs",)
    assert results[2].failures == ("expected rule (default deny), got no-kp",)


def test_rule_is_not_compared_when_absent(engine: Engine) -> None:
    kp = {"principal": CONTRACTOR, "network": {"region": "KP"}}
    report = run_tests(engine, suite(case(request=kp, expect="deny")))
    assert report.ok
    assert report.results[0].actual_rule == "no-kp"
    assert report.results[0].actual_reason == "rule.deny"


def test_results_keep_file_order(engine: Engine) -> None:
    names = [f"case {i}" for i in range(5)]
    report = run_tests(engine, suite(*(case(n) for n in names)))
    assert [r.name for r in report.results] == names


# ---------------------------------------------------------------------------- defaults


def test_defaults_deep_merge_under_each_request_and_the_case_wins() -> None:
    merged = deep_merge(
        {"network": {"ip": "10.1.2.3", "region": "DE"}, "roles": ["a"], "device": {"x": 1}},
        {"network": {"region": "FR"}, "roles": ["b"], "device": None},
    )
    assert merged == {"network": {"ip": "10.1.2.3", "region": "FR"}, "roles": ["b"], "device": None}


def test_defaults_fill_in_the_request(engine: Engine) -> None:
    parsed = suite(case(request={"principal": CONTRACTOR, "network": {"region": "FR"}}))
    request = parsed.cases[0].request
    assert request.network.region == "FR"
    assert str(request.network.ip) == "10.1.2.3"
    assert request.device is not None
    assert request.device.disk_encrypted
    assert request.http is not None
    assert request.http.host == "wiki.internal"


def test_null_in_a_case_removes_a_default(engine: Engine) -> None:
    no_device = case(request={"principal": CONTRACTOR, "device": None}, expect="deny")
    parsed = suite(no_device)
    assert parsed.cases[0].request.device is None
    assert run_tests(engine, parsed).results[0].actual_reason == "device.managed"


def test_defaults_are_optional() -> None:
    request = {"principal": CONTRACTOR, "time": 0}
    parsed = parse_test_document({"tests": [{"name": "a", "request": request, "expect": "deny"}]})
    assert parsed.cases[0].request.time == 0.0


# ---------------------------------------------------------------------------- malformed files


def test_unknown_keys_are_named_with_a_suggestion() -> None:
    found = problems(
        {"defaults": {}, "test": [], "tests": [{**case(), "expected": "allow", "reson": "x"}]}
    )
    assert "did you mean 'tests'" in found["test"]
    assert "did you mean 'expect'" in found["tests[0].expected"]
    assert "did you mean 'reason'" in found["tests[0].reson"]


def test_missing_name_and_expect_are_reported() -> None:
    found = problems({"tests": [{"request": {"time": 0}}, {"name": "", "expect": "maybe"}]})
    assert found["tests[0].name"].startswith("required")
    assert found["tests[0].expect"] == "required: allow or deny"
    assert found["tests[1].name"].startswith("required")
    assert "got 'maybe'" in found["tests[1].expect"]
    assert found["tests[1].request"].startswith("required")


def test_duplicate_test_names_are_reported() -> None:
    found = problems({"defaults": DEFAULTS, "tests": [case("same"), case("b"), case("same")]})
    assert found == {"tests[2].name": "duplicate test name 'same' (also tests[0])"}


def test_bad_request_fields_are_reported_with_their_key_path() -> None:
    principal = {"id": "carol", "mfa": "yes"}
    bad = case(request={"principal": principal, "trust_score": 101, "colour": "red"})
    found = problems({"defaults": DEFAULTS, "tests": [case("fine"), case("x"), case("y"), bad]})
    assert set(found) == {
        "tests[3].request.principal.mfa",
        "tests[3].request.trust_score",
        "tests[3].request.colour",
    }
    assert "boolean" in found["tests[3].request.principal.mfa"]


def test_a_missing_time_is_reported_on_the_case() -> None:
    found = problems({"tests": [case()]})
    assert found == {"tests[0].request.time": "Field required"}


def test_a_bad_default_is_reported_once_on_defaults() -> None:
    defaults = {**DEFAULTS, "network": {"ip": "not-an-ip"}}
    found = problems({"defaults": defaults, "tests": [case("a"), case("b")]})
    assert list(found) == ["defaults.network.ip"]


def test_rule_reason_and_description_types_are_checked() -> None:
    bad = case(rule=3, reason="", description=["x"])
    allow_with_reason = case("b", reason="auth.mfa")
    found = problems({"defaults": DEFAULTS, "tests": [bad, allow_with_reason]})
    assert set(found) == {
        "tests[0].rule",
        "tests[0].reason",
        "tests[0].description",
        "tests[1].reason",
    }
    assert "only a deny has a reason" in found["tests[1].reason"]


@pytest.mark.parametrize(
    ("document", "path"),
    [
        ([], ""),
        ({"tests": []}, "tests"),
        ({"tests": {"name": "a"}}, "tests"),
        ({"defaults": [1], "tests": [case()]}, "defaults"),
        ({"tests": ["not a case"]}, "tests[0]"),
        ({"tests": [{**case(), "request": "x"}]}, "tests[0].request"),
    ],
)
def test_wrong_shapes_are_reported(document: Any, path: str) -> None:
    assert path in problems(document)


def test_every_problem_of_a_file_is_reported_together() -> None:
    found = problems(
        {"tests": [{"name": "a"}, {"name": "a", "expect": "deny", "request": {"time": "noon"}}]}
    )
    assert {"tests[0].expect", "tests[0].request", "tests[1].name", "tests[1].request.time"} <= set(
        found
    )


# ---------------------------------------------------------------------------- files


def test_load_test_file_reads_yaml(tmp_path: Path, engine: Engine) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        'defaults: {time: "2026-11-23T10:00:00+01:00", http: {host: wiki.internal, path: /docs}}\n'
        "tests:\n"
        "  - name: no device\n"
        "    request: {principal: {id: carol, roles: [contractor], mfa: true}}\n"
        "    expect: deny\n"
        "    reason: device.managed\n",
        encoding="utf-8",
    )
    loaded = load_test_file(path)
    assert loaded.source == str(path)
    assert run_tests(engine, loaded).ok


def test_yaml_errors_and_duplicate_keys_are_problems(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("tests:\n  - name: a\n    name: b\n", encoding="utf-8")
    with pytest.raises(PolicyTestError) as caught:
        load_test_file(path)
    (problem,) = caught.value.problems
    assert "duplicate key 'name'" in problem.message
    assert problem.path.startswith("line 3")


def test_a_missing_file_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(PolicyTestError) as caught:
        load_test_file(tmp_path / "absent.yaml")
    assert "cannot read file" in caught.value.problems[0].message
