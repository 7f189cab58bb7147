"""``verity policy check|test|explain`` and ``verity version``: exit codes 0/1/2, JSON
shapes, human output that names the reason, problems as ``FILE: key.path: message``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from verity.cli import app

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
COMPANY = str(EXAMPLES / "policies" / "company.yaml")
COMPANY_TESTS = str(EXAMPLES / "policies" / "company.tests.yaml")
RBAC_TABLE = str(EXAMPLES / "policies" / "rbac-table.yaml")
RBAC_TABLE_TESTS = str(EXAMPLES / "policies" / "rbac-table.tests.yaml")
CONTRACTOR_WIKI = str(EXAMPLES / "requests" / "contractor-wiki.yaml")

POLICY = """
rules:
  - name: no-kp
    deny: {regions: [KP]}
  - name: docs
    resources: [{host: wiki.internal, paths: ["/docs/**"]}]
    allow:
      roles: [contractor]
      mfa: true
      any: [{regions: [DE]}, {min_trust: 90}]
"""
REQUEST = """
principal: {id: carol, roles: [contractor], mfa: false}
time: "2026-11-23T10:00:00+01:00"
http: {host: wiki.internal, path: /docs/a}
network: {region: DE}
"""
TESTS = """
defaults: {time: "2026-11-23T10:00:00+01:00", http: {host: wiki.internal, path: /docs/a}}
tests:
  - name: contractor with mfa reads docs
    request: {principal: {id: carol, roles: [contractor], mfa: true}, network: {region: DE}}
    expect: allow
    rule: docs
  - name: contractor without mfa
    request: {principal: {id: carol, roles: [contractor]}, network: {region: DE}}
    expect: deny
    reason: auth.mfa
"""


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def as_json(result: Result) -> Any:
    return json.loads(result.stdout)


# ---------------------------------------------------------------------------- check


def test_check_accepts_the_example_policy() -> None:
    result = invoke("policy", "check", COMPANY)
    assert result.exit_code == 0, result.output
    assert "valid" in result.stdout
    assert COMPANY in result.stdout


def test_check_json_describes_a_valid_policy() -> None:
    result = invoke("policy", "check", COMPANY, "--json")
    assert result.exit_code == 0
    document = as_json(result)
    assert document["valid"] is True
    assert document["problems"] == []
    assert document["rules"] >= 10
    assert document["access_levels"] == 3
    assert len(document["version"]) == 64


def test_check_lists_every_problem_as_file_key_path_message(tmp_path: Path) -> None:
    bad = write(
        tmp_path,
        "bad.yaml",
        "rules:\n  - name: a\n    allow: {mfa: yes, regions: [D]}\n  - name: b\n    alow: {}\n",
    )
    result = invoke("policy", "check", bad)
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert f"{bad}: rules[0].allow.mfa: expected true or false, got 'yes'" in lines
    assert any(line.startswith(f"{bad}: rules[0].allow.regions[0]: ") for line in lines)
    assert any(line.startswith(f"{bad}: rules[1].alow: unknown rule key") for line in lines)
    assert "Traceback" not in result.output


def test_check_json_lists_problems(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.yaml", "rules:\n  - name: a\n    allow: {mfa: yes}\n")
    result = invoke("policy", "check", bad, "--json")
    assert result.exit_code == 1
    document = as_json(result)
    assert document["valid"] is False
    assert document["problems"] == [
        {"path": "rules[0].allow.mfa", "message": "expected true or false, got 'yes'"}
    ]


def test_check_reports_yaml_errors_and_missing_files(tmp_path: Path) -> None:
    broken = write(tmp_path, "broken.yaml", "rules: [\n")
    assert invoke("policy", "check", broken).exit_code == 1
    missing = invoke("policy", "check", str(tmp_path / "absent.yaml"))
    assert missing.exit_code == 1
    assert "cannot read file" in missing.stderr
    assert "Traceback" not in missing.output


def test_markup_in_input_is_printed_verbatim(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.yaml", "rules:\n  - name: a\n    allow: {'[bold]x': 1}\n")
    result = invoke("policy", "check", bad)
    assert result.exit_code == 1
    assert "rules[0].allow.[bold]x: unknown criterion '[bold]x'" in result.stderr


# ---------------------------------------------------------------------------- test


def test_the_example_policy_passes_its_test_file_in_full() -> None:
    result = invoke("policy", "test", COMPANY, COMPANY_TESTS)
    assert result.exit_code == 0, result.output
    assert "FAIL" not in result.stdout
    total = result.stdout.count("PASS: ") - 1
    assert total >= 25
    assert result.stdout.rstrip().endswith(f"PASS: {total}/{total}")


def test_the_permission_table_example_passes_its_tests() -> None:
    """The table reads its rows from a CSV next to the policy, wherever the CLI runs."""
    result = invoke("policy", "test", RBAC_TABLE, RBAC_TABLE_TESTS)
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip().endswith("PASS: 8/8")


def test_the_example_tests_cover_every_rule_and_the_important_reasons() -> None:
    document = as_json(invoke("policy", "test", COMPANY, COMPANY_TESTS, "--json"))
    assert document["ok"] is True
    rules = {r["actual"]["rule"] for r in document["results"]}
    reasons = {r["expected"]["reason"] for r in document["results"]}
    policy = as_json(invoke("policy", "check", COMPANY, "--json"))
    assert len(rules - {None}) == policy["rules"]
    assert {
        "device.disk_encrypted",
        "time.window",
        "network.region",
        "auth.mfa",
        "jit.grant",
        "principal.groups",
        "no_matching_rule",  # nothing in the caller's position would help (an owner check)
        "rule.deny",
    } <= reasons


def test_passing_tests_print_pass_per_case_and_exit_0(tmp_path: Path) -> None:
    policy, tests = write(tmp_path, "p.yaml", POLICY), write(tmp_path, "t.yaml", TESTS)
    result = invoke("policy", "test", policy, tests)
    assert result.exit_code == 0, result.output
    assert "PASS: contractor with mfa reads docs" in result.stdout
    assert "PASS: contractor without mfa" in result.stdout
    assert result.stdout.rstrip().endswith("PASS: 2/2")


def test_a_failing_case_shows_expected_actual_and_reason_and_exits_1(tmp_path: Path) -> None:
    policy = write(tmp_path, "p.yaml", POLICY)
    tests = write(tmp_path, "t.yaml", TESTS.replace("reason: auth.mfa", "reason: network.ip"))
    result = invoke("policy", "test", policy, tests)
    assert result.exit_code == 1
    out = result.stdout
    assert "FAIL: contractor without mfa" in out
    assert "expected: deny, reason network.ip" in out
    assert "actual:   deny, rule (default deny), reason auth.mfa" in out
    assert "multi-factor authentication is required" in out
    assert "expected reason network.ip, got auth.mfa" in out
    assert out.rstrip().endswith("PASS: 1/2, FAIL: 1/2")


def test_verbose_shows_decisions_of_passing_cases(tmp_path: Path) -> None:
    policy, tests = write(tmp_path, "p.yaml", POLICY), write(tmp_path, "t.yaml", TESTS)
    result = invoke("policy", "test", policy, tests, "--verbose")
    assert result.exit_code == 0
    assert "actual:   allow, rule docs" in result.stdout
    assert "decision: " in result.stdout


def test_test_json_shape(tmp_path: Path) -> None:
    policy = write(tmp_path, "p.yaml", POLICY)
    tests = write(tmp_path, "t.yaml", TESTS.replace("expect: allow", "expect: deny"))
    result = invoke("policy", "test", policy, tests, "--json")
    assert result.exit_code == 1
    document = as_json(result)
    assert (document["total"], document["passed"], document["failed"]) == (2, 1, 1)
    assert document["ok"] is False
    first = document["results"][0]
    assert first["passed"] is False
    assert first["expected"] == {
        "effect": "deny",
        "rule": "docs",
        "check_rule": True,
        "reason": None,
    }
    assert first["actual"]["effect"] == "allow"
    assert first["actual"]["rule"] == "docs"
    assert first["failures"] == ["expected deny, got allow"]
    assert first["decision_id"]


def test_a_malformed_test_file_exits_1_with_key_paths(tmp_path: Path) -> None:
    policy = write(tmp_path, "p.yaml", POLICY)
    tests = write(
        tmp_path, "t.yaml", "tests:\n  - name: a\n    request: {time: 0, principal: {mfa: 1}}\n"
    )
    result = invoke("policy", "test", policy, tests)
    assert result.exit_code == 1
    assert f"{tests}: tests[0].expect: required: allow or deny" in result.stderr
    assert f"{tests}: tests[0].request.principal.mfa: " in result.stderr
    assert f"{tests}: tests[0].request.principal.id: " in result.stderr
    assert "Traceback" not in result.output


def test_an_invalid_policy_stops_the_tests(tmp_path: Path) -> None:
    policy = write(tmp_path, "p.yaml", "rules: [{name: a, allow: {mfa: 1}}]\n")
    tests = write(tmp_path, "t.yaml", TESTS)
    result = invoke("policy", "test", policy, tests, "--json")
    assert result.exit_code == 1
    error = json.loads(result.stderr)["error"]
    assert error["type"] == "PolicyLoadError"
    assert error["source"] == policy
    assert error["problems"][0]["path"] == "rules[0].allow.mfa"


# ---------------------------------------------------------------------------- explain


def test_explain_the_make_run_request_names_the_reason() -> None:
    result = invoke("policy", "explain", COMPANY, "--request", CONTRACTOR_WIKI)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "DENY" in out
    assert "device.disk_encrypted" in out
    assert "device disk is not encrypted" in out
    assert "hint: enable disk encryption" in out
    assert "rule contractors-read-docs (allow, rules[3].allow) - not matched" in out
    assert "device.disk_encrypted" in out


def test_explain_tables_list_every_criterion_with_nesting(tmp_path: Path) -> None:
    policy, request = write(tmp_path, "p.yaml", POLICY), write(tmp_path, "r.yaml", REQUEST)
    result = invoke("policy", "explain", policy, "--request", request)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    row = next(line for line in lines if line.strip().startswith("mfa "))
    assert "FAIL" in row
    assert "multi-factor sign-in" in row
    assert "no MFA" in row
    nested = next(line for line in lines if "└ any[0].regions" in line)
    assert "pass" in nested
    assert "Reason:      auth.mfa: multi-factor authentication is required" in result.stdout
    assert "Obligation:  step_up_mfa" in result.stdout


def test_explain_json_shape(tmp_path: Path) -> None:
    policy, request = write(tmp_path, "p.yaml", POLICY), write(tmp_path, "r.yaml", REQUEST)
    result = invoke("policy", "explain", policy, "-r", request, "--json")
    assert result.exit_code == 0
    document = as_json(result)
    decision = document["decision"]
    assert decision["effect"] == "deny"
    assert decision["allowed"] is False
    assert decision["rule"] is None
    assert decision["reasons"][0]["code"] == "auth.mfa"
    assert decision["reasons"][0]["rule"] == "docs"
    assert decision["obligations"] == [{"kind": "step_up_mfa", "detail": "docs"}]
    names = [rule["name"] for rule in document["rules"]]
    assert names == ["no-kp", "docs"]
    docs = document["rules"][1]
    assert docs["applicable"] is True
    assert docs["matched"] is False
    by_path = {c["path"]: c for c in docs["criteria"]}
    assert by_path["rules[1].allow.mfa"]["passed"] is False
    any_block = by_path["rules[1].allow.any"]
    assert any_block["passed"] is True
    assert any_block["children"][0]["children"][0]["path"] == "rules[1].allow.any[0].regions"


def test_explain_all_rules_includes_rules_that_do_not_apply(tmp_path: Path) -> None:
    policy = write(tmp_path, "p.yaml", POLICY)
    request = write(tmp_path, "r.yaml", REQUEST.replace("wiki.internal", "other.internal"))
    narrow = as_json(invoke("policy", "explain", policy, "-r", request, "--json"))
    assert [r["name"] for r in narrow["rules"]] == ["no-kp"]
    assert narrow["decision"]["reasons"][0]["code"] == "no_matching_rule"
    wide = invoke("policy", "explain", policy, "-r", request, "--all-rules")
    assert wide.exit_code == 0
    assert "rule docs (allow, rules[1].allow) - not applicable" in wide.stdout


def test_explain_an_allow_exits_0(tmp_path: Path) -> None:
    policy = write(tmp_path, "p.yaml", POLICY)
    request = write(tmp_path, "r.yaml", REQUEST.replace("mfa: false", "mfa: true"))
    result = invoke("policy", "explain", policy, "--request", request)
    assert result.exit_code == 0
    assert "ALLOW" in result.stdout
    assert "Rule:        docs" in result.stdout


def test_explain_a_malformed_request_exits_1_with_key_paths(tmp_path: Path) -> None:
    policy = write(tmp_path, "p.yaml", POLICY)
    request = write(tmp_path, "r.yaml", "principal: {id: x, mfa: maybe}\nhttp: {}\n")
    result = invoke("policy", "explain", policy, "--request", request)
    assert result.exit_code == 1
    assert f"{request}: principal.mfa: " in result.stderr
    assert f"{request}: time: Field required" in result.stderr
    assert f"{request}: http.host: Field required" in result.stderr
    assert "Traceback" not in result.output


def test_explain_with_an_invalid_policy_exits_1(tmp_path: Path) -> None:
    policy = write(tmp_path, "p.yaml", "rules: [{name: a, allow: {when: 'principal.'}}]\n")
    request = write(tmp_path, "r.yaml", REQUEST)
    result = invoke("policy", "explain", policy, "--request", request)
    assert result.exit_code == 1
    assert f"{policy}: rules[0].allow.when: invalid CEL" in result.stderr


# ---------------------------------------------------------------------------- usage, version


@pytest.mark.parametrize(
    "args",
    [
        ["policy", "explain", COMPANY],  # --request is required
        ["policy", "test", COMPANY],
        ["policy", "check"],
        ["policy", "check", COMPANY, "--bogus"],
        ["policy", "frobnicate"],
        ["policy"],
    ],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = invoke(*args)
    assert result.exit_code == 2
    assert "Usage" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "args",
    [[], ["policy"], ["policy", "check"], ["policy", "test"], ["policy", "explain"], ["version"]],
)
def test_every_command_has_help(args: list[str]) -> None:
    result = invoke(*args, "--help")
    assert result.exit_code == 0
    assert "Usage" in result.stdout


def test_version() -> None:
    human = invoke("version")
    assert human.exit_code == 0
    assert human.stdout.startswith("verity ")
    document = as_json(invoke("version", "--json"))
    assert document["name"] == "verity"
    assert document["version"] == human.stdout.split()[1]
