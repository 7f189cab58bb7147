"""``all``, ``any``, ``not`` and access levels (``verity.policy.combinators``): each decides
as its logic says, explains itself, and the reason for a deny comes from the criterion
that failed (its code, words, hint and obligation). ``explain`` agrees with ``decide``."""

from __future__ import annotations

import itertools
from functools import cache

import pytest

from verity.model import AccessRequest, NetworkContext, ObligationKind, Principal, parse_ip
from verity.policy import Engine, cel_runtime, compile_policy, load_policy
from verity.policy.checks import Check, Failure, Trace
from verity.policy.compiler import Compiler

LEVELS = """
access_levels:
  corp: {ip: [10.0.0.0/8], mfa: true}
  office: {ip: [10.0.0.0/8]}
"""


@cache
def engine_for(condition: str, hint: str = "") -> Engine:
    extra = f"    hint: {hint}\n" if hint else ""
    return compile_policy(
        load_policy(f"{LEVELS}rules:\n  - name: r\n{extra}    allow: {condition}\n")
    )


def request(
    groups: tuple[str, ...] = (), *, mfa: bool = False, ip: str = "1.2.3.4"
) -> AccessRequest:
    principal = Principal(id="u", groups=frozenset(groups), mfa=mfa)
    return AccessRequest(principal=principal, time=0, network=NetworkContext(parse_ip(ip)))


def allowed(engine: Engine, req: AccessRequest) -> bool:
    """``decide``'s answer, checked against ``explain``'s traces of the one rule."""
    decision = engine.decide(req)
    (rule,) = engine.explain(req, all_rules=True).rules
    assert rule.matched is decision.allowed, (decision, rule)
    assert all(t.passed for t in rule.criteria) is decision.allowed, rule.criteria
    return decision.allowed


def criterion(engine: Engine, req: AccessRequest, index: int = 0) -> Trace:
    (rule,) = engine.explain(req, all_rules=True).rules
    return rule.criteria[index]


# --- every combination of three facts, under each combinator -----------------------------

FACTS = list(itertools.product([(), ("admins",)], [False, True], ["1.2.3.4", "10.1.1.1"]))


def holds(groups: tuple[str, ...], mfa: bool, ip: str) -> tuple[bool, bool, bool]:
    return bool(groups), mfa, ip.startswith("10.")


@pytest.mark.parametrize(
    ("condition", "truth"),
    [
        ("{all: [{groups: [admins]}, {mfa: true}]}", lambda a, m, i: a and m),
        ("{all: [{groups: [admins]}, {mfa: true}, {ip: [10.0.0.0/8]}]}",
         lambda a, m, i: a and m and i),
        ("{any: [{groups: [admins]}, {mfa: true}]}", lambda a, m, i: a or m),
        ("{any: [{groups: [admins]}, {mfa: true}, {ip: [10.0.0.0/8]}]}",
         lambda a, m, i: a or m or i),
        ("{any: [{groups: [admins]}]}", lambda a, m, i: a),
        ("{any: [{groups: [admins], mfa: true}, {ip: [10.0.0.0/8]}]}",
         lambda a, m, i: (a and m) or i),
        ("{not: {groups: [admins]}}", lambda a, m, i: not a),
        ("{not: {groups: [admins], mfa: true}}", lambda a, m, i: not (a and m)),
        ("{not: {any: [{groups: [admins]}, {mfa: true}]}}", lambda a, m, i: not (a or m)),
        ("{not: {not: {mfa: true}}}", lambda a, m, i: m),
        ("{groups: [admins], not: {mfa: true}}", lambda a, m, i: a and not m),
        ("{levels: [corp]}", lambda a, m, i: m and i),
        ("{levels: [office]}", lambda a, m, i: i),
        ("{levels: [corp, office], groups: [admins]}", lambda a, m, i: a and m and i),
        ("{any: [{levels: [office]}, {groups: [admins]}]}", lambda a, m, i: i or a),
        ("{not: {levels: [corp]}}", lambda a, m, i: not (m and i)),
        ("{all: [{}]}", lambda a, m, i: True),
        ("{any: [{}, {groups: [admins]}]}", lambda a, m, i: True),
        ("{not: {}}", lambda a, m, i: False),
    ],
)  # fmt: skip
def test_combinators_decide_as_their_logic_says(condition: str, truth: object) -> None:
    engine = engine_for(condition)
    for groups, mfa, ip in FACTS:
        expected = truth(*holds(groups, mfa, ip))  # type: ignore[operator]
        assert allowed(engine, request(groups, mfa=mfa, ip=ip)) is expected, (groups, mfa, ip)


# --- all ----------------------------------------------------------------------------------


def test_all_explains_the_first_criterion_that_fails() -> None:
    engine = engine_for("{all: [{groups: [admins]}, {mfa: true}, {ip: [10.0.0.0/8]}]}")
    trace = criterion(engine, request(("admins",)))
    assert (trace.code, trace.passed) == ("all", False)
    assert trace.expected == (
        "all of: group admins; multi-factor sign-in; client address in 10.0.0.0/8"
    )
    assert trace.observed == "multi-factor sign-in does not hold"
    assert [t.passed for t in trace.children] == [True, False, False]
    passing = criterion(engine, request(("admins",), mfa=True, ip="10.0.0.1"))
    assert (passing.passed, passing.observed) == (True, "all hold")
    decision = engine.decide(request(("admins",)))
    (reason,) = decision.reasons
    assert reason.code == "auth.mfa"
    # the reason names every change that would allow it: MFA and then the network
    assert reason.message == (
        "multi-factor authentication is required;"
        " requires client address in 10.0.0.0/8 (observed: 1.2.3.4)"
    )
    # a second factor alone would not allow it (the network must change too): no step-up
    assert decision.obligations == ()
    last = engine.decide(request(("admins",), mfa=True))
    assert last.reasons[0].code == "network.ip"
    assert last.obligations == ()


def test_a_block_of_one_criterion_explains_as_that_criterion() -> None:
    engine = engine_for("{all: [{groups: [admins]}, {mfa: true}]}")
    first = criterion(engine, request()).children[0]
    assert (first.code, first.expected) == ("all", "group admins")
    assert first.observed == "group admins does not hold"


def test_an_empty_block_allows_anything() -> None:
    engine = engine_for("{all: [{}]}")
    trace = criterion(engine, request())
    assert (trace.passed, trace.expected, trace.observed) == (True, "anything", "all hold")


# --- any ----------------------------------------------------------------------------------


def test_any_explains_every_alternative_and_the_one_that_holds() -> None:
    engine = engine_for("{any: [{groups: [admins]}, {mfa: true}]}")
    trace = criterion(engine, request())
    assert (trace.code, trace.passed) == ("any", False)
    assert trace.expected == "any of: group admins | multi-factor sign-in"
    assert trace.observed == "none holds"
    assert criterion(engine, request(mfa=True)).observed == "multi-factor sign-in holds"
    both = criterion(engine, request(("admins",), mfa=True))
    assert (both.passed, both.observed) == (True, "group admins holds")  # the first


def test_any_denies_naming_every_alternative_with_the_first_ones_code_and_hint() -> None:
    engine = engine_for("{any: [{mfa: true}, {groups: [admins]}]}")
    decision = engine.decide(request(("staff",)))
    (reason,) = decision.reasons
    assert reason.code == "auth.mfa"
    # the person is told the one alternative they can meet first, not every alternative
    assert reason.message == "multi-factor authentication is required"
    assert reason.hint == "sign in again with your second factor"
    assert [o.kind for o in decision.obligations] == [ObligationKind.STEP_UP_MFA]
    other_order = engine_for("{any: [{groups: [admins]}, {mfa: true}]}").decide(request())
    assert other_order.reasons[0].code == "principal.groups"
    assert other_order.obligations == ()


def test_a_rule_hint_replaces_the_criterions_hint() -> None:
    decision = engine_for("{any: [{mfa: true}]}", "ask the helpdesk").decide(request())
    assert decision.reasons[0].hint == "ask the helpdesk"


# --- not ----------------------------------------------------------------------------------


def test_not_denies_saying_what_must_not_match_and_what_was_seen() -> None:
    engine = engine_for("{not: {groups: [contractors]}}")
    contractor = request(("contractors", "staff"))
    decision = engine.decide(contractor)
    (reason,) = decision.reasons
    assert reason.code == "no_matching_rule"  # a person cannot stop being in a group
    assert reason.message == (
        "no policy rule grants this resource to anyone in this caller's position"
        " (closest rule 'r': must not match: group contractors (observed: contractors, staff))"
    )
    trace = criterion(engine, contractor)
    assert (trace.code, trace.passed) == ("not.principal.groups", False)
    assert trace.expected == "not (group contractors)"
    assert trace.observed == "contractors, staff"
    (inner,) = trace.children
    assert inner.passed is True
    assert criterion(engine, request(("staff",))).passed is True


def test_not_of_several_criteria_is_named_for_the_block() -> None:
    engine = engine_for("{not: {groups: [admins], mfa: true}}")
    decision = engine.decide(request(("admins",), mfa=True))
    assert decision.reasons[0].code == "no_matching_rule"
    assert decision.reasons[0].message.endswith(
        "(closest rule 'r': must not match: all of: group admins; multi-factor sign-in"
        " (observed: all hold))"
    )


def test_not_of_a_level_is_named_for_the_level() -> None:
    engine = engine_for("{not: {levels: [office]}}")
    decision = engine.decide(request(ip="10.0.0.1"))
    assert decision.reasons[0].code == "no_matching_rule"
    assert decision.reasons[0].message.endswith(
        "(closest rule 'r': must not match: access level office (observed: all hold))"
    )


# --- access levels ------------------------------------------------------------------------


def test_a_level_denies_with_its_failing_criterion_and_names_the_level() -> None:
    engine = engine_for("{levels: [corp]}")
    decision = engine.decide(request(ip="10.0.0.1"))
    (reason,) = decision.reasons
    assert reason.code == "auth.mfa"
    assert reason.message == "multi-factor authentication is required"
    assert reason.hint == "sign in again with your second factor"
    assert [o.kind for o in decision.obligations] == [ObligationKind.STEP_UP_MFA]
    assert [r.code for r in reason.remedies] == ["auth.mfa"]
    outside = engine.decide(request(mfa=True)).reasons[0]
    assert outside.code == "network.ip"
    assert "1.2.3.4" in outside.message


def test_a_level_explains_itself_with_its_criteria() -> None:
    engine = engine_for("{levels: [corp]}")
    trace = criterion(engine, request(mfa=True))
    assert (trace.code, trace.passed) == ("level.corp", False)
    assert trace.expected == "access level corp"
    assert trace.observed == "client address in 10.0.0.0/8 does not hold"
    assert [(t.code, t.passed) for t in trace.children] == [
        ("auth.mfa", True), ("network.ip", False),
    ]  # fmt: skip
    inside = criterion(engine, request(mfa=True, ip="10.9.9.9"))
    assert (inside.passed, inside.observed) == (True, "all hold")


def test_the_second_level_is_checked_when_the_first_holds() -> None:
    engine = engine_for("{levels: [office, corp]}")
    decision = engine.decide(request(ip="10.0.0.1"))
    # office holds from 10.0.0.1; corp then needs MFA
    assert decision.reasons[0].code == "auth.mfa"


# --- the checks' own answers where no rule's deny reaches them ----------------------------


def checks_of(condition: str) -> tuple[Check, ...]:
    policy = load_policy(f"{LEVELS}rules: [{{name: r, allow: {condition}}}]")
    return Compiler(policy, cel_runtime()).checks(policy.rules[0].condition)


def test_a_block_that_holds_says_so_and_its_leaf_is_its_first_criterion() -> None:
    (block,) = checks_of("{all: [{groups: [admins]}, {mfa: true}]}")
    admin = request(("admins",), mfa=True)
    assert block.failure(admin) == Failure("all", "all conditions hold")
    assert block.leaf(admin).code == "principal.groups"  # down the first child
    assert block.leaf(request(("admins",))).code == "auth.mfa"  # the failing one
    (empty,) = checks_of("{all: [{}]}")
    inner = empty.leaf(request())
    assert inner.code == "all"  # an empty block is its own leaf
    assert inner.leaf(request()) is inner


def test_the_leaf_of_any_is_its_first_alternatives() -> None:
    (alternatives,) = checks_of("{any: [{mfa: true}, {groups: [admins]}]}")
    assert alternatives.leaf(request(("admins",))).code == "auth.mfa"
    assert alternatives.leaf(request()).code == "auth.mfa"


def test_a_level_reference_explains_with_the_levels_words() -> None:
    (level,) = checks_of("{levels: [corp]}")
    inside = request(mfa=True, ip="10.0.0.1")
    assert level.test(inside) is True
    assert level.test(request(mfa=True)) is False
    assert level.observed(inside) == "all hold"
    assert level.leaf(request(ip="10.0.0.1")).code == "auth.mfa"
    failure = level.failure(request(ip="10.0.0.1"))
    assert failure == Failure(
        "auth.mfa",
        "multi-factor authentication is required [access level corp]",
        "sign in again with your second factor",
        ObligationKind.STEP_UP_MFA,
    )


def test_any_fails_with_its_first_alternatives_code_hint_and_obligation() -> None:
    (alternatives,) = checks_of("{any: [{mfa: true}, {groups: [admins]}]}")
    assert alternatives.failure(request(("staff",))) == Failure(
        "auth.mfa",
        "none of the alternatives holds: multi-factor authentication is required; "
        "or requires group admins (you have: staff)",
        "sign in again with your second factor",
        ObligationKind.STEP_UP_MFA,
    )


def test_a_negated_criterion_inside_a_level_explains_the_deny() -> None:
    engine = compile_policy(
        load_policy(
            "access_levels: {staff_only: {groups: [staff], not: {groups: [contractors]}}}\n"
            "rules: [{name: r, allow: {levels: [staff_only]}}]\n"
        )
    )
    decision = engine.decide(request(("staff", "contractors")))
    assert decision.reasons[0].code == "no_matching_rule"
    assert "must not match: group contractors (observed: contractors, staff)" in (
        decision.reasons[0].message
    )
    assert allowed(engine, request(("staff",))) is True
