"""``verity policy check|test|explain`` for the issue-10 outcomes: load-time warnings
(namespaced claims split at '.', unusual CIDR spellings) and the ``authenticate``
outcome of a caller who is not signed in."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner, Result

from verity.cli import app

POLICY = """
rules:
  - name: admins
    resources: [{host: app.test}]
    allow:
      claims: {'https://example.com/roles': admin}
      ip: ['::ffff:10.0.0.0/104']
"""
ANONYMOUS = """
time: "2026-11-23T10:00:00+01:00"
http: {host: app.test, path: /}
network: {ip: 10.1.2.3}
"""
TESTS = """
defaults: {time: "2026-11-23T10:00:00+01:00", http: {host: app.test, path: /}}
tests:
  - name: anonymous callers are asked to sign in
    request: {network: {ip: 10.1.2.3}}  # no principal: not signed in
    expect: deny
    rule: null
    reason: authentication_required
  - name: a signed-in caller is refused for the claim
    request: {principal: {id: bob}}
    expect: deny
    reason: principal.claim
"""


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_policy_check_warns_about_a_namespaced_claim_that_cannot_match(tmp_path: Path) -> None:
    policy = write(tmp_path, "p.yaml", POLICY)
    result = invoke("policy", "check", policy)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"warning: {policy}: rules[0].allow.claims.https://example.com/roles: " in out
    assert "can never match" in out
    assert f"warning: {policy}: rules[0].allow.ip[0]: '::ffff:10.0.0.0/104' means 10.0.0.0/8" in out
    document = json.loads(invoke("policy", "check", policy, "--json").stdout)
    assert document["valid"] is True
    assert [w["path"] for w in document["warnings"]] == [
        "rules[0].allow.claims.https://example.com/roles",
        "rules[0].allow.ip[0]",
    ]


def test_policy_explain_shows_authentication_required_for_an_unauthenticated_request(
    tmp_path: Path,
) -> None:
    policy, request = write(tmp_path, "p.yaml", POLICY), write(tmp_path, "r.yaml", ANONYMOUS)
    result = invoke("policy", "explain", policy, "--request", request)
    assert result.exit_code == 0, result.output
    assert "Reason:      authentication_required: authentication required" in result.stdout
    assert "hint: sign in" in result.stdout
    assert "Obligation:  authenticate" in result.stdout
    document = json.loads(invoke("policy", "explain", policy, "-r", request, "--json").stdout)
    assert document["decision"]["obligations"] == [{"kind": "authenticate", "detail": "admins"}]


def test_policy_test_runner_reports_the_authenticate_outcome(tmp_path: Path) -> None:
    policy, tests = write(tmp_path, "p.yaml", POLICY), write(tmp_path, "t.yaml", TESTS)
    result = invoke("policy", "test", policy, tests)
    assert result.exit_code == 0, result.output
    assert "PASS: 2/2" in result.stdout


def test_explain_names_a_reason_that_would_change_the_answer(tmp_path: Path) -> None:
    from importlib import resources

    policy = str(resources.files("verity.demo") / "policy.yaml")
    request = tmp_path / "contractor-admin.yaml"
    request.write_text(
        'principal: {id: cora, roles: [contractor]}\ntime: "2026-11-23T10:00:00+01:00"\n'
        "http: {method: GET, host: 127.0.0.1, path: /admin/settings}\n"
    )
    result = CliRunner().invoke(app, ["policy", "explain", policy, "--request", str(request)],
                                env={"COLUMNS": "200"})  # fmt: skip
    assert "requires role admin (you have: contractor)" in result.stdout
    assert "requires role engineer" not in result.stdout
    assert "This is open to people with the role admin" in result.stdout  # the person's words
    as_json = CliRunner().invoke(
        app, ["policy", "explain", policy, "--request", str(request), "--json"]
    )
    reason = json.loads(as_json.stdout)["decision"]["reasons"][0]
    assert reason["remedies"] == [{"code": "principal.roles", "values": ["admin"]}]
