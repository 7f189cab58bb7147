"""Permission tables: RBAC as data, decided by lookups, in policy order with the rules."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verity.errors import PolicyLoadError
from verity.model import AccessRequest, Effect, ObligationKind
from verity.policy import LivePolicy, compile_policy, load_policy, load_policy_file, parse_policy

MONDAY_10_BERLIN = datetime.fromisoformat("2026-11-23T10:00:00+01:00").timestamp()
SATURDAY_10_BERLIN = datetime.fromisoformat("2026-11-28T10:00:00+01:00").timestamp()

POLICY = """
rules:
  - name: no-sanctioned-regions
    deny: {regions: [KP]}
  - name: grants
    description: who may do what
    table:
      allow: {mfa: true}
      roles:
        contractor: {time: {days: mon-fri, hours: "08:00-18:00", tz: Europe/Berlin}}
      rows:
        - {role: engineer, type: wiki-page, actions: [read, write]}
        - {role: contractor, type: wiki-page, actions: [read]}
        - {role: finance, type: invoice, actions: [read, approve]}
  - name: owner-may-read
    resources: [{actions: [read]}]
    allow: {relations: ["resource.owner == principal.id"]}
"""


def request(
    *roles: str,
    action: str = "read",
    kind: str = "wiki-page",
    mfa: bool = True,
    when: float = MONDAY_10_BERLIN,
    region: str = "DE",
    owner: str = "bob",
    user: str = "carol",
) -> AccessRequest:
    return AccessRequest.from_dict(
        {
            "principal": {"id": user, "roles": list(roles), "mfa": mfa},
            "time": when,
            "action": action,
            "resource": {"type": kind, "id": "r1", "attributes": {"owner": owner}},
            "network": {"ip": "10.0.0.1", "region": region},
        }
    )


@pytest.fixture(scope="module")
def engine() -> Any:
    return compile_policy(load_policy(POLICY))


def test_a_row_grants_and_the_decision_names_table_and_row(engine: Any) -> None:
    decision = engine.decide(request("contractor"))
    assert decision.allowed
    assert decision.rule == "grants[contractor,wiki-page]"
    assert engine.decide(request("engineer", action="write")).rule == "grants[engineer,wiki-page]"


def test_no_row_for_the_action_explains_who_could(engine: Any) -> None:
    decision = engine.decide(request("contractor", action="write"))
    assert not decision.allowed
    assert decision.rule is None
    assert decision.reasons[0].code == "no_matching_rule"
    assert decision.reason == (
        "role engineer grants write on wiki-page (table 'grants'); you have roles: contractor"
    )
    other = engine.decide(request("intern"))
    assert other.reason == (
        "roles engineer, contractor grant read on wiki-page (table 'grants'); "
        "you have roles: intern"
    )
    nobody = engine.decide(request(kind="printer", action="delete"))
    assert nobody.reason == (
        "no role in table 'grants' grants delete on printer; you have roles: none"
    )
    # no row is about printers, and a rule applies: the rule explains
    assert engine.decide(request(kind="printer")).reasons[0].rule == "owner-may-read"


def test_per_role_condition_applies_to_that_role_only(engine: Any) -> None:
    weekend = engine.decide(request("contractor", when=SATURDAY_10_BERLIN))
    assert not weekend.allowed
    assert weekend.reasons[0].rule == "grants[contractor,wiki-page]"
    assert weekend.reasons[0].code.startswith("time")
    assert engine.decide(request("engineer", when=SATURDAY_10_BERLIN)).allowed


def test_table_condition_failure_carries_its_obligation(engine: Any) -> None:
    decision = engine.decide(request("engineer", mfa=False))
    assert not decision.allowed
    assert decision.reasons[0].rule == "grants[engineer,wiki-page]"
    assert [o.kind for o in decision.obligations] == [ObligationKind.STEP_UP_MFA]


def test_deny_rules_override_a_granting_row() -> None:
    for deny_at in ("first", "last"):
        deny = "  - name: blocked\n    deny: {users: [carol]}\n"
        text = (
            POLICY.replace("rules:\n", "rules:\n" + deny) if deny_at == "first" else POLICY + deny
        )
        engine = compile_policy(load_policy(text))
        decision = engine.decide(request("engineer"))
        assert decision.effect is Effect.DENY
        assert decision.rule == "blocked"
        assert engine.decide(request("engineer", user="dave")).allowed
    sanctioned = compile_policy(load_policy(POLICY)).decide(request("engineer", region="KP"))
    assert sanctioned.rule == "no-sanctioned-regions"


def test_the_first_allow_in_policy_order_names_the_decision(engine: Any) -> None:
    # owner-may-read is below the table: the row decides when both allow
    both = engine.decide(request("contractor", owner="carol"))
    assert both.rule == "grants[contractor,wiki-page]"
    assert engine.decide(request("intern", owner="carol")).rule == "owner-may-read"
    # the same rule above the table decides first
    text = POLICY.replace(
        "  - name: grants\n",
        "  - name: owner-first\n    resources: [{actions: [read]}]\n"
        '    allow: {relations: ["resource.owner == principal.id"]}\n  - name: grants\n',
    )
    above = compile_policy(load_policy(text))
    assert above.decide(request("contractor", owner="carol")).rule == "owner-first"
    assert above.decide(request("contractor")).rule == "grants[contractor,wiki-page]"


def test_several_roles_decide_by_table_order_not_set_order() -> None:
    rows = [{"role": f"r{i}", "type": "doc", "actions": ["read"]} for i in range(40)]
    policy = {"rules": [{"name": "t", "table": {"rows": rows}}]}
    engine = compile_policy(parse_policy(policy))
    roles = [f"r{i}" for i in range(39, 2, -1)]
    assert engine.decide(request(*roles, kind="doc")).rule == "t[r3,doc]"


def test_anonymous_is_asked_to_sign_in(engine: Any) -> None:
    anonymous = AccessRequest.from_dict(
        {"time": MONDAY_10_BERLIN, "action": "read", "resource": {"type": "wiki-page"}}
    )
    decision = engine.decide(anonymous)
    assert decision.requires_authentication


def test_explain_lists_rows_in_policy_order(engine: Any) -> None:
    explanation = engine.explain(request("contractor", when=SATURDAY_10_BERLIN))
    names = [r.name for r in explanation.rules]
    assert names == [
        "no-sanctioned-regions",
        "grants[engineer,wiki-page]",
        "grants[contractor,wiki-page]",
        "owner-may-read",
    ]
    row = explanation.rules[2]
    assert row.applicable
    assert not row.matched
    assert row.path == "rules[1].table.rows[1]"
    assert row.criteria[0].passed
    assert row.criteria[0].expected == "role contractor"
    assert [t.passed for t in row.criteria[1:]] == [True, False]  # mfa ok, time not
    engineer_row = explanation.rules[1]
    assert engineer_row.applicable  # it is about this type and action ...
    assert not engineer_row.matched
    assert not engineer_row.criteria[0].passed  # ... but not the caller's role
    every = engine.explain(request("contractor"), all_rules=True)
    assert len([r for r in every.rules if r.name.startswith("grants[")]) == 3


def test_policy_without_tables_keeps_the_plain_decide() -> None:
    engine = compile_policy(load_policy("rules: [{name: a, allow: {}}]"))
    assert engine.tables == ()
    assert "decide" not in vars(engine)


# --------------------------------------------------------------------------- files


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


TABLE_POLICY = """
rules:
  - name: grants
    table:
      file: {file}
      allow: {{mfa: true}}
"""


def test_rows_from_a_csv_file_relative_to_the_policy(tmp_path: Path) -> None:
    write(
        tmp_path,
        "grants.csv",
        "# who may do what\nrole,type,actions\n\ncontractor,wiki-page,read\n"
        'engineer,wiki-page,"read write"\n',
    )
    policy_file = write(tmp_path, "policy.yaml", TABLE_POLICY.format(file="grants.csv"))
    engine = compile_policy(load_policy_file(policy_file))
    assert engine.decide(request("engineer", action="write")).rule == "grants[engineer,wiki-page]"
    assert not engine.decide(request("contractor", action="write")).allowed
    rows = engine.policy.tables[0].rows
    assert [r.where for r in rows] == ["grants.csv:4", "grants.csv:5"]


def test_rows_from_a_json_file(tmp_path: Path) -> None:
    rows = [{"role": "contractor", "type": "wiki-page", "actions": ["read"]}]
    write(tmp_path, "grants.json", json.dumps(rows))
    policy_file = write(tmp_path, "policy.yaml", TABLE_POLICY.format(file="grants.json"))
    engine = compile_policy(load_policy_file(policy_file))
    assert engine.decide(request("contractor")).rule == "grants[contractor,wiki-page]"


def test_a_changed_table_file_changes_the_version_and_reloads(tmp_path: Path) -> None:
    csv_file = write(tmp_path, "grants.csv", "role,type,actions\ncontractor,wiki-page,read\n")
    policy_file = write(tmp_path, "policy.yaml", TABLE_POLICY.format(file="grants.csv"))
    live = LivePolicy(policy_file)
    before = live.version
    assert not live.decide(request("engineer")).allowed
    assert not live.reload().changed
    csv_file.write_text("role,type,actions\nengineer,wiki-page,read\n")
    result = live.reload()
    assert result.changed
    assert live.version != before
    assert live.decide(request("engineer")).allowed
    csv_file.unlink()
    failed = live.reload()
    assert not failed.ok
    assert live.decide(request("engineer")).allowed  # the last good version stays


@pytest.mark.parametrize(
    ("csv_text", "where", "words"),
    [
        ("role,type,actions\na,doc,read\nb,doc,read\na,doc,write\n", "grants.csv:4",
         "duplicate row for role 'a' and type 'doc' (first at grants.csv:2)"),
        ("role,type,actions\na,doc\n", "grants.csv:2", "expected 3 fields, found 2"),
        ("role,kind,actions\na,doc,read\n", "grants.csv:1", "header must name the columns"),
        ("role,type,actions,extra\na,doc,read,x\n", "grants.csv:1", "header must name"),
        ("role,type,actions\na,doc,\n", "grants.csv:2", "at least one action"),
        ("role,type,actions\n,doc,read\n", "grants.csv:2", "a role, a type"),
        ('role,type,actions\na,"doc,read\n', "grants.csv", "malformed CSV"),
        ("", "grants.csv", "empty table file"),
        ("role,type,actions\n# nothing\n", "grants.csv", "header but no rows"),
    ],
)  # fmt: skip
def test_bad_csv_rows_name_file_and_line(
    tmp_path: Path, csv_text: str, where: str, words: str
) -> None:
    write(tmp_path, "grants.csv", csv_text)
    policy_file = write(tmp_path, "policy.yaml", TABLE_POLICY.format(file="grants.csv"))
    with pytest.raises(PolicyLoadError) as caught:
        load_policy_file(policy_file)
    problems = [str(p) for p in caught.value.problems]
    assert any(p.startswith(where) and words in p for p in problems), problems
    assert str(policy_file) in str(caught.value)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    policy_file = write(tmp_path, "policy.yaml", TABLE_POLICY.format(file="nowhere.csv"))
    with pytest.raises(PolicyLoadError, match=r"rules\[0\]\.table\.file: cannot read table file"):
        load_policy_file(policy_file)
    write(tmp_path, "grants.txt", "role,type,actions\n")
    policy_file = write(tmp_path, "policy.yaml", TABLE_POLICY.format(file="grants.txt"))
    with pytest.raises(PolicyLoadError, match=r"\.csv, \.yaml, \.yml or \.json"):
        load_policy_file(policy_file)
    write(tmp_path, "grants.yaml", "- {role: a, type: doc, actions: [read]\n")
    policy_file = write(tmp_path, "policy.yaml", TABLE_POLICY.format(file="grants.yaml"))
    with pytest.raises(PolicyLoadError, match=r"grants\.yaml: .*line"):
        load_policy_file(policy_file)
    (tmp_path / "bad.csv").write_bytes(b"role,type,actions\n\xff,doc,read\n")
    policy_file = write(tmp_path, "policy.yaml", TABLE_POLICY.format(file="bad.csv"))
    with pytest.raises(PolicyLoadError, match="not UTF-8"):
        load_policy_file(policy_file)


@pytest.mark.parametrize(
    ("table", "path", "words"),
    [
        ({"rows": [{"role": "a", "type": "d", "actions": ["r"]}], "colour": 1},
         "rules[0].table.colour", "unknown table key"),
        ({"rows": [{"role": "a", "type": "d", "actions": ["r"], "effect": "deny"}]},
         "rules[0].table.rows[0].effect", "unknown row key"),
        ({"rows": [{"role": "a", "type": "d", "actions": ["r"]},
                   {"role": "a", "type": "d", "actions": ["w"]}]},
         "rules[0].table.rows[1]", "duplicate row"),
        ({"rows": [{"role": "a", "type": "d", "actions": []}]},
         "rules[0].table.rows[0]", "at least one action"),
        ({"rows": [{"role": "a", "actions": ["r"]}]}, "rules[0].table.rows[0]", "required"),
        ({"rows": []}, "rules[0].table.rows", "non-empty list"),
        ({"allow": {"mfa": True}}, "rules[0].table", "needs 'rows' or 'file'"),
        ({"rows": [{"role": "a", "type": "d", "actions": ["r"]}], "allow": {"colour": 1}},
         "rules[0].table.allow.colour", "unknown criterion"),
        ({"rows": [{"role": "a", "type": "d", "actions": ["r"]}], "roles": ["a"]},
         "rules[0].table.roles", "mapping of role name"),
        ("grants.csv", "rules[0].table", "expected a mapping"),
    ],
)  # fmt: skip
def test_bad_tables_are_refused_with_their_key_path(table: Any, path: str, words: str) -> None:
    with pytest.raises(PolicyLoadError) as caught:
        parse_policy({"rules": [{"name": "t", "table": table}]})
    problems = [str(p) for p in caught.value.problems]
    assert any(p.startswith(path) and words in p for p in problems), problems


def test_a_table_rule_has_no_allow_or_resources_and_a_unique_name() -> None:
    rows = [{"role": "a", "type": "d", "actions": ["r"]}]
    with pytest.raises(PolicyLoadError, match=r"rules\[0\]\.resources: a table rule has no"):
        parse_policy(
            {"rules": [{"name": "t", "resources": [{"type": "d"}], "table": {"rows": rows}}]}
        )
    with pytest.raises(PolicyLoadError, match="duplicate rule name 't'"):
        parse_policy(
            {"rules": [{"name": "t", "allow": {}}, {"name": "t", "table": {"rows": rows}}]}
        )


def test_conditions_for_a_role_without_rows_warn() -> None:
    rows = [{"role": "a", "type": "d", "actions": ["r"]}]
    policy = parse_policy({"rules": [{"name": "t", "table": {"rows": rows, "roles": {"b": {}}}}]})
    assert [str(w) for w in policy.warnings] == [
        "rules[0].table.roles.b: role 'b' has conditions but no row of the table"
    ]


# --------------------------------------------------------------------------- equivalence

ROLES = ("a", "b", "c", "d")
TYPES = ("doc", "sheet", "repo")
ACTIONS = ("read", "write", "delete")


@st.composite
def tables(draw: st.DrawFn) -> list[tuple[str, str, list[str]]]:
    pairs = draw(st.lists(st.tuples(st.sampled_from(ROLES), st.sampled_from(TYPES)), unique=True))
    return [
        (role, kind, sorted(draw(st.sets(st.sampled_from(ACTIONS), min_size=1))))
        for role, kind in pairs
    ]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tables(),
    st.sets(st.sampled_from(ROLES)),
    st.sampled_from(TYPES),
    st.sampled_from(ACTIONS),
    st.booleans(),
    st.sampled_from([MONDAY_10_BERLIN, SATURDAY_10_BERLIN]),
)
def test_a_table_decides_like_one_rule_per_row(
    rows: list[tuple[str, str, list[str]]],
    roles: set[str],
    kind: str,
    action: str,
    mfa: bool,
    when: float,
) -> None:
    """The table form and the rules it stands for allow the same requests, and the
    deciding row is the rule written for it."""
    hours = {"time": {"days": "mon-fri", "hours": "08:00-18:00", "tz": "Europe/Berlin"}}
    deny = {
        "name": "no-b-deletes",
        "resources": [{"actions": ["delete"]}],
        "deny": {"roles": ["b"]},
    }
    table = {
        "name": "t",
        "table": {
            "rows": [{"role": r, "type": k, "actions": a} for r, k, a in rows]
            or [{"role": "z", "type": "z", "actions": ["z"]}],
            "allow": {"mfa": True},
            "roles": {"a": hours},
        },
    }
    rules = [
        {
            "name": f"row-{r}-{k}",
            "resources": [{"type": k, "actions": a}],
            "allow": {"roles": [r], "mfa": True, **(hours if r == "a" else {})},
        }
        for r, k, a in rows
    ]
    as_table = compile_policy(parse_policy({"rules": [deny, table]}))
    as_rules = compile_policy(parse_policy({"rules": [deny, *rules]}))
    probe = request(*sorted(roles), action=action, kind=kind, mfa=mfa, when=when)
    got, want = as_table.decide(probe), as_rules.decide(probe)
    assert got.effect is want.effect
    if want.rule is not None and want.rule.startswith("row-"):
        _, role, kind_ = want.rule.split("-", 2)
        assert got.rule == f"t[{role},{kind_}]"
    else:
        assert got.rule == want.rule


# --------------------------------------------------------------------------- failures


def test_an_internal_error_in_a_table_denies() -> None:
    engine = compile_policy(load_policy(POLICY))
    table = engine.tables[0]

    def broken(request: AccessRequest) -> Any:
        raise RuntimeError("boom")

    table.evaluate = broken  # type: ignore[method-assign]
    decision = engine.decide(request("engineer"))
    assert decision.effect is Effect.DENY
    assert decision.reasons[0].code == "internal_error"


def test_a_cel_error_in_a_row_does_not_grant_and_is_explained() -> None:
    text = POLICY.replace(
        "contractor: {time:",
        'engineer: {when: "principal.claims.level > 2"}\n        contractor: {time:',
    )
    engine = compile_policy(load_policy(text))
    decision = engine.decide(request("engineer"))
    assert not decision.allowed
    assert decision.reasons[0].code == "rule.error"
    assert decision.reasons[0].rule == "grants[engineer,wiki-page]"
    assert engine.decide(request("contractor")).allowed
