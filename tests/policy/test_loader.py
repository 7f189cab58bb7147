"""Policy validation: every bad input gets a problem naming the file, key path and cause."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from verity.errors import PolicyLoadError
from verity.policy import ast, load_policy, load_policy_file
from verity.policy.loader import _digest


def problems(text: str) -> dict[str, str]:
    with pytest.raises(PolicyLoadError) as caught:
        load_policy(text, source="p.yaml")
    assert caught.value.source == "p.yaml"
    return {p.path: p.message for p in caught.value.problems}


def test_valid_policy_parses_into_ordered_rules_and_levels() -> None:
    policy = load_policy(
        """
access_levels:
  office: {ip: [10.0.0.0/8], time: {days: mon-fri, hours: "08:00-18:00", tz: Europe/Berlin}}
rules:
  - name: block-kp
    deny: {regions: [KP]}
  - name: wiki
    resources: [{host: wiki.internal, methods: [get], paths: ["/docs/**"]}]
    allow: {roles: [eng], levels: [office]}
"""
    )
    assert [r.name for r in policy.rules] == ["block-kp", "wiki"]
    wiki = policy.rules[1]
    assert wiki.targets[0].methods == frozenset({"GET", "HEAD"})  # GET covers HEAD
    assert isinstance(wiki.condition.children[0], ast.Roles)
    assert set(policy.access_levels) == {"office"}
    assert len(policy.version) == 64


def test_unknown_criterion_suggests_the_closest_name() -> None:
    found = problems("rules: [{name: a, allow: {rolse: [x]}}]")
    assert "did you mean 'roles'" in found["rules[0].allow.rolse"]


@pytest.mark.parametrize(
    ("criterion", "path", "fragment"),
    [
        ("ip: [10.0.0.1/33]", "rules[0].allow.ip[0]", "not an IP address or CIDR"),
        ("ip: [not-an-ip]", "rules[0].allow.ip[0]", "not an IP address"),
        (
            "time: {days: mon-fri, hours: '08:00-18:00', tz: Mars/Olympus}",
            "rules[0].allow.time.tz",
            "IANA",
        ),
        ("time: {days: mon-fri, hours: '08:00-18:00'}", "rules[0].allow.time.tz", "required"),
        (
            "time: {days: funday, hours: '08:00-18:00', tz: UTC}",
            "rules[0].allow.time.days",
            "not a day",
        ),
        ("time: {hours: '25:00-26:00', tz: UTC}", "rules[0].allow.time.hours", "not a time of day"),
        ("time: {hours: '08:00-08:00', tz: UTC}", "rules[0].allow.time.hours", "empty"),
        ("levels: [offfice]", "rules[0].allow.levels[0]", "unknown access level"),
        ("regions: [Germany]", "rules[0].allow.regions[0]", "ISO 3166"),
        ("min_trust: 101", "rules[0].allow.min_trust", "0 to 100"),
        ("min_trust: true", "rules[0].allow.min_trust", "0 to 100"),
        ("mfa: 'yes'", "rules[0].allow.mfa", "true or false"),
        (
            "device: {managed: true, tpm: true}",
            "rules[0].allow.device.tpm",
            "unknown device criterion",
        ),
        (
            "device: {min_os: {macos: fourteen}}",
            "rules[0].allow.device.min_os.macos",
            "not a version",
        ),
        ("services: ['https://x']", "rules[0].allow.services[0]", "SPIFFE"),
        (
            "relations: ['resource.owner = principal.id']",
            "rules[0].allow.relations[0]",
            "not a relation",
        ),
        (
            "relations: ['owner == principal.id']",
            "rules[0].allow.relations[0]",
            "starts with one of",
        ),
        ("paths: ['docs/*']", "rules[0].allow.paths[0]", "must start with '/'"),
        ("hosts: ['wiki.*.internal']", "rules[0].allow.hosts[0]", "wildcards only"),
        ("max_auth_age: soon", "rules[0].allow.max_auth_age", "not a duration"),
        ("roles: []", "rules[0].allow.roles", "must not be empty"),
        ("when: 'principal.id ==' ", "rules[0].allow.when", "invalid CEL"),
        ("when: 'princpal.id == \"a\"'", "rules[0].allow.when", "invalid CEL"),
        ("any: []", "rules[0].allow.any", "non-empty list"),
        ("claims: {'a..b': 1}", "rules[0].allow.claims.a..b", "empty segment"),
    ],
)
def test_bad_criterion_is_reported_at_its_key_path(
    criterion: str, path: str, fragment: str
) -> None:
    text = f"access_levels: {{office: {{ip: [10.0.0.0/8]}}}}\nrules:\n  - name: a\n    allow: {{{criterion}}}\n"
    found = problems(text)
    assert path in found, found
    assert fragment in found[path]


def test_every_problem_is_reported_at_once_and_nothing_is_loaded() -> None:
    found = problems(
        """
rules:
  - name: a
    allow: {roles: [x], ip: [300.1.1.1]}
  - name: a
    deny: {regions: [XX1]}
  - {name: b}
  - name: c
    allow: {}
    deny: {}
"""
    )
    assert set(found) >= {
        "rules[0].allow.ip[0]",
        "rules[1].name",
        "rules[1].deny.regions[0]",
        "rules[2]",
        "rules[3]",
    }
    assert "duplicate rule name" in found["rules[1].name"]


def test_yaml_duplicate_keys_are_an_error_not_a_silent_override() -> None:
    found = problems("rules:\n  - name: a\n    allow: {roles: [x]}\n    allow: {roles: [y]}\n")
    (message,) = found.values()
    assert "duplicate key 'allow'" in message


def test_norway_and_times_are_read_as_strings() -> None:
    policy = load_policy("rules: [{name: a, allow: {regions: [NO, DE]}}]")
    (regions,) = policy.rules[0].condition.children
    assert isinstance(regions, ast.Regions)
    assert regions.values == frozenset({"NO", "DE"})


def test_access_level_cycles_are_rejected() -> None:
    found = problems(
        "access_levels: {a: {levels: [b]}, b: {levels: [a]}}\nrules: [{name: r, allow: {levels: [a]}}]"
    )
    assert any("cycle" in message for message in found.values())


@pytest.mark.parametrize(
    ("text", "path", "fragment"),
    [
        ("[1, 2]", "", "a policy is a mapping"),
        ("rules: {a: 1}", "rules", "a list of rules"),
        ("rulez: []", "rulez", "did you mean 'rules'"),
        ("version: 2\nrules: []", "version", "unsupported"),
        ("rules: [{name: 'bad name!', allow: {}}]", "rules[0].name", "letters, digits"),
        (
            "rules: [{name: a, allow: {}, resources: [{hostz: x}]}]",
            "rules[0].resources[0].hostz",
            "unknown resource selector",
        ),
        (
            "rules: [{name: a, allow: {}, resources: [{host: a, hosts: [b]}]}]",
            "rules[0].resources[0].hosts",
            "given twice",
        ),
        ("rules: [{name: a, allow: {}, resources: []}]", "rules[0].resources", "must not be empty"),
        ("rules: [{name: a, allow: {}, message: 5}]", "rules[0].message", "expected a string"),
        ("rules: [{name: a, allow: [roles]}]", "rules[0].allow", "expected a mapping"),
        (
            "rules: [{name: a, allow: {}, resources: [{methods: ['G T']}]}]",
            "rules[0].resources[0].methods[0]",
            "HTTP method",
        ),
    ],
)
def test_bad_document_structure(text: str, path: str, fragment: str) -> None:
    found = problems(text)
    assert path in found, found
    assert fragment in found[path]


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    file = tmp_path / "broken.yaml"
    file.write_text("rules:\n  - name: a\n    allow: {roles: [x]\n")
    with pytest.raises(PolicyLoadError) as caught:
        load_policy_file(file)
    assert caught.value.source == str(file)
    assert caught.value.problems[0].path.startswith("line ")
    assert str(file) in str(caught.value)


def test_missing_file_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyLoadError) as caught:
        load_policy_file(tmp_path / "absent.yaml")
    assert "cannot read file" in caught.value.problems[0].message


def test_version_is_a_stable_content_hash() -> None:
    a = load_policy("rules: [{name: a, allow: {roles: [x]}}]")
    b = load_policy("rules:\n  - allow: {roles: [x]}\n    name: a\n")
    c = load_policy("rules: [{name: a, allow: {roles: [y]}}]")
    assert a.version == b.version != c.version


@pytest.mark.parametrize(
    "document",
    [
        {"rules": [{"name": "a", "allow": {"roles": ["x"]}}, {"name": "b", "deny": {}}]},
        {"version": 1, "access_levels": {"l": {"mfa": True}}, "rules": []},
        {"rules": [{"name": "a", "allow": {"when": "x"}, "description": "é \u2028"}]},
    ],
)
def test_policy_version_is_the_hash_of_the_canonical_json(document: dict[str, Any]) -> None:
    """Hashed rule by rule (a large policy never holds its whole text), yet the same
    version as hashing ``json.dumps(document, sort_keys=True)`` at once."""
    whole = json.dumps(document, sort_keys=True, default=str).encode()
    assert _digest(document) == hashlib.sha256(whole).hexdigest()


@pytest.mark.parametrize(
    ("criterion", "where"),
    [
        ('roles: ""', "rules[0].allow.roles"),
        ("groups: [eng, '  ']", "rules[0].allow.groups[1]"),
        ('auth_methods: [""]', "rules[0].allow.auth_methods[0]"),
    ],
)
def test_an_empty_name_is_a_typo_not_a_role_named_by_the_empty_string(
    criterion: str, where: str
) -> None:
    found = problems(f"rules: [{{name: a, allow: {{{criterion}}}}}]")
    assert found == {where: "must not be an empty string"}
