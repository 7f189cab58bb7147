"""The rule index (``verity.policy.index``): equality keys, and that indexing never changes
a decision.

Property tests compare the indexed engine with the same policy compiled with the index
off (``compile_policy(policy, linear=True)``: every rule, in policy order) on random
RBAC-like policies -- many rules keyed by roles, groups, users, actions, methods, regions,
sign-in methods and device OS, mixed with CEL conditions that raise -- and random
requests: the effect, the deciding rule, every reason (code, message, rule, hint) and
the obligations must be identical. They run with the index's size thresholds at their
defaults and at zero (every rule keyed, even in tiny slots), with and without the
catch-all folded into the groups, and with permission tables placed among the rules.
A second property checks that the rules a request probes always include every rule that
a linear scan finds matching it.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verity.errors import CelError
from verity.model import AccessRequest, Decision, Effect, Principal, Resource
from verity.policy import compile_policy, index, load_policy, parse_policy
from verity.policy.compiler import PASSED, CompiledRule

from . import reference
from .test_engine_properties import ACTIONS, LEAF_CRITERIA, TYPES, block, requests, selector

ROLES = [f"role{i}" for i in range(12)]
GROUPS = ["g1", "g2", "g3", "g4"]
EQUALITY: dict[str, st.SearchStrategy[Any]] = {
    "roles": st.lists(st.sampled_from(ROLES), min_size=1, max_size=3, unique=True),
    "groups": st.lists(st.sampled_from(GROUPS), min_size=1, max_size=2, unique=True),
    "users": LEAF_CRITERIA["users"],
    "actions": LEAF_CRITERIA["actions"],
    "methods": LEAF_CRITERIA["methods"],
    "regions": LEAF_CRITERIA["regions"],
    "auth_methods": LEAF_CRITERIA["auth_methods"],
    "device": st.fixed_dictionaries(
        {"os": st.lists(st.sampled_from(["macos", "linux", "ios"]), min_size=1, unique=True)}
    ),
}
# Conditions that raise for some requests (a missing attribute), and pass or fail for others.
CEL = ["resource.owner == principal.id", "resource.team == 'red'", "principal.claims.dept == 1"]


@st.composite
def rbac_policies(draw: st.DrawFn) -> dict[str, Any]:
    level = draw(block(0, []))
    if draw(st.booleans()):
        level["when"] = draw(st.sampled_from(CEL))
    rules = []
    for i in range(draw(st.integers(1, 45))):
        condition: dict[str, Any] = {}
        for key in draw(st.lists(st.sampled_from(sorted(EQUALITY)), max_size=2, unique=True)):
            condition[key] = draw(EQUALITY[key])
        extra = draw(st.sampled_from(["none", "leaf", "cel", "level", "nested"]))
        if extra == "leaf":
            key = draw(st.sampled_from(["mfa", "min_trust", "ip", "time", "relations"]))
            condition[key] = draw(LEAF_CRITERIA[key])
        elif extra == "cel":
            condition["when"] = draw(st.sampled_from(CEL))
        elif extra == "level":
            condition["levels"] = ["l1"]
        elif extra == "nested":
            condition["any"] = draw(st.lists(block(1, ["l1"]), min_size=1, max_size=2))
        rule: dict[str, Any] = {"name": f"r{i}"}
        if draw(st.integers(0, 3)):
            rule["resources"] = draw(st.lists(selector, min_size=1, max_size=2))
        rule[draw(st.sampled_from(["allow", "allow", "allow", "deny"]))] = condition
        rules.append(rule)
    return {"access_levels": {"l1": level}, "rules": rules}


@st.composite
def rbac_requests(draw: st.DrawFn) -> AccessRequest:
    request: AccessRequest = draw(requests())
    principal = dataclasses.replace(
        request.principal,
        roles=frozenset(draw(st.lists(st.sampled_from(ROLES), max_size=3))),
        groups=frozenset(draw(st.lists(st.sampled_from(GROUPS), max_size=2))),
    )
    return dataclasses.replace(request, principal=principal)


def observable(decision: Decision) -> tuple[Any, ...]:
    """Everything a caller can see of a decision but its id."""
    return (
        decision.effect,
        decision.rule,
        tuple((r.code, r.message, r.rule, r.hint) for r in decision.reasons),
        decision.obligations,
        decision.requires_authentication,
        decision.policy_version,
    )


@contextlib.contextmanager
def thresholds(small: int, dimension: int, folded: int) -> Iterator[None]:
    with (
        mock.patch.object(index, "_SMALL_SLOT", small),
        mock.patch.object(index, "_MIN_DIMENSION", dimension),
        mock.patch.object(index, "_MAX_FOLDED", folded),
    ):
        yield


SETTINGS = [(16, 8, 32), (0, 0, 0), (0, 0, 1000)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    document=rbac_policies(),
    batch=st.lists(rbac_requests(), min_size=1, max_size=15),
    limits=st.sampled_from(SETTINGS),
)
def test_indexed_engine_decides_exactly_as_a_linear_scan(
    document: dict[str, Any], batch: list[AccessRequest], limits: tuple[int, int, int]
) -> None:
    policy = parse_policy(document)
    linear = compile_policy(policy, linear=True)
    with thresholds(*limits):
        indexed = compile_policy(policy)
    for request in batch:
        expected = linear.decide(request)
        assert observable(indexed.decide(request)) == observable(expected)


@st.composite
def tables(draw: st.DrawFn, name: str) -> dict[str, Any]:
    """A permission table over the requests' roles, types and actions: shared conditions
    and per-role conditions, some with CEL that raises."""
    rows: dict[tuple[str, str], list[str]] = {}
    for _ in range(draw(st.integers(1, 12))):
        key = (draw(st.sampled_from(ROLES)), draw(st.sampled_from(TYPES)))
        rows[key] = draw(st.lists(st.sampled_from(ACTIONS), min_size=1, unique=True))
    table: dict[str, Any] = {
        "rows": [{"role": r, "type": t, "actions": a} for (r, t), a in rows.items()]
    }
    if draw(st.booleans()):
        table["allow"] = draw(block(1, ["l1"]))
    roles = sorted({role for role, _ in rows})
    conditioned = draw(st.lists(st.sampled_from(roles), max_size=3, unique=True))
    if conditioned:
        table["roles"] = {}
        for role in conditioned:
            condition = draw(block(0, ["l1"]))
            if draw(st.booleans()):
                condition["when"] = draw(st.sampled_from(CEL))
            table["roles"][role] = condition
    return {"name": name, "table": table}


@st.composite
def policies_with_tables(draw: st.DrawFn) -> dict[str, Any]:
    document = draw(rbac_policies())
    rules = document["rules"]
    for n in range(draw(st.integers(1, 2))):
        rules.insert(draw(st.integers(0, len(rules))), draw(tables(f"t{n}")))
    return document


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    document=policies_with_tables(),
    batch=st.lists(rbac_requests(), min_size=1, max_size=15),
    limits=st.sampled_from(SETTINGS),
)
def test_with_tables_the_indexed_engine_decides_exactly_as_a_linear_scan(
    document: dict[str, Any], batch: list[AccessRequest], limits: tuple[int, int, int]
) -> None:
    """Tables among the rules: the index merges its groups, then the tables come in
    policy order; effect, deciding rule (or row) and reasons are those of ``linear``."""
    policy = parse_policy(document)
    assert policy.tables
    linear = compile_policy(policy, linear=True)
    with thresholds(*limits):
        indexed = compile_policy(policy)
    for request in batch:
        expected = linear.decide(request)
        assert observable(indexed.decide(request)) == observable(expected)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    document=rbac_policies(),
    batch=st.lists(rbac_requests(), min_size=1, max_size=15),
    limits=st.sampled_from(SETTINGS),
)
def test_probed_rules_include_every_rule_that_matches(
    document: dict[str, Any], batch: list[AccessRequest], limits: tuple[int, int, int]
) -> None:
    policy = parse_policy(document)
    with thresholds(*limits):
        engine = compile_policy(policy)
    for request in batch:
        matching = {rule.index for rule in engine.rules if _matches(policy, rule, request)}
        assert matching <= engine.candidates(request)


def _matches(policy: Any, rule: CompiledRule, request: AccessRequest) -> bool:
    """The rule applies and every criterion holds: by the reference interpreter, or for a
    rule with a CEL condition (which it does not read) by the rule's own compiled code."""
    if "when" not in repr(rule.rule.condition) and "Cel(" not in repr(policy.access_levels):
        applies = any(reference._target(t, request) for t in rule.rule.targets)
        return applies and reference._holds(policy, rule.rule.condition, request)
    try:
        return rule.targets(request) and rule.evaluate(request) == PASSED
    except CelError:
        return False


# ---------------------------------------------------------------- equality keys, by example

ROLE_POLICY = (
    "rules:\n  - {name: deny-kp, deny: {regions: [KP]}}\n"
    + "".join(
        f"  - {{name: r{i}, resources: [{{type: doc, actions: [read]}}], "
        f"allow: {{roles: [role{i}], mfa: true}}}}\n"
        for i in range(40)
    )
    + "  - {name: owner, resources: [{type: doc, action: read}],"
    ' allow: {relations: ["resource.owner == principal.id"]}}\n'
)


def _request(roles: set[str], *, mfa: bool = True, action: str = "read") -> AccessRequest:
    return AccessRequest(
        principal=Principal(id="u", roles=frozenset(roles), mfa=mfa),
        time=1763978400.0,
        action=action,
        resource=Resource("doc", "d1", {"owner": "someone"}),
    )


def test_a_request_evaluates_only_the_rules_of_its_roles() -> None:
    engine = compile_policy(load_policy(ROLE_POLICY))
    candidates = engine.candidates(_request({"role7", "role30", "unknown"}))
    names = {engine.rules[i].name for i in candidates}
    assert names == {"deny-kp", "owner", "r7", "r30"}


def test_a_deny_is_explained_by_the_closest_rule_even_if_the_index_skipped_it() -> None:
    engine = compile_policy(load_policy(ROLE_POLICY))
    linear = compile_policy(load_policy(ROLE_POLICY), linear=True)
    for request in (
        _request(set()),  # no role: the first role rule explains ("requires role role0")
        _request({"role12"}, mfa=False),  # its own rule got further: MFA
        _request({"role12"}, action="write"),  # no rule applies to this action
    ):
        decision = engine.decide(request)
        assert observable(decision) == observable(linear.decide(request))
    assert "role role0" in engine.decide(_request(set())).reason
    assert engine.decide(_request({"role12"}, mfa=False)).reasons[0].code == "auth.mfa"


def test_rules_keyed_by_their_most_selective_criterion() -> None:
    policy = load_policy(
        "rules:\n"
        + "".join(
            f"  - {{name: r{i}, allow: {{groups: [staff], roles: [role{i}], actions: [read]}}}}\n"
            for i in range(20)
        )
    )
    keys = index.choose_keys(list(policy.rules), {})
    assert all(key is not None and key[0] == "role" for key in keys)
    assert keys[3] == ("role", frozenset({"role3"}), 1)


def test_no_key_after_a_condition_that_may_raise() -> None:
    policy = load_policy(
        "access_levels: {l: {when: 'resource.x == 1'}}\n"
        "rules:\n"
        "  - {name: a, allow: {levels: [l], regions: [DE]}}\n"
        "  - {name: b, allow: {roles: [x], when: 'resource.x == 1'}}\n"
        "  - {name: c, resources: [{actions: [read]}], allow: {not: {roles: [x]}}}\n"
        "  - {name: d, allow: {not: {roles: [x]}}}\n"
    )
    keys = [index.equality_keys(rule, dict(policy.access_levels)) for rule in policy.rules]
    assert keys[0] == []  # the level may raise before regions is reached
    assert keys[1] == [("role", frozenset({"x"}), 0)]
    assert keys[2] == [("action", frozenset({"read"}), -1)]  # from the selector
    assert keys[3] == []  # a negative criterion is not a key


@pytest.mark.parametrize("limits", SETTINGS)
def test_a_raising_deny_rule_still_decides_first(limits: tuple[int, int, int]) -> None:
    text = (
        "rules:\n"
        "  - {name: ok, allow: {roles: [a]}}\n"
        "  - {name: boom, deny: {roles: [a], when: 'resource.missing == 1'}}\n"
        + "".join(f"  - {{name: r{i}, allow: {{roles: [r{i}]}}}}\n" for i in range(20))
    )
    with thresholds(*limits):
        engine = compile_policy(load_policy(text))
    decision = engine.decide(_request({"a"}))
    assert (decision.effect, decision.rule) == (Effect.DENY, "boom")
    assert decision.reasons[0].code == "rule.error"
    assert engine.decide(_request({"r3"})).allowed
