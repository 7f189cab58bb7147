"""Decision semantics: deny overrides allow, default deny, reasons, obligations, fail-closed."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections.abc import Iterator
from datetime import datetime
from unittest import mock

import pytest

from verity.model import (
    AccessRequest,
    Decision,
    Device,
    Effect,
    HttpTarget,
    NetworkContext,
    Obligation,
    ObligationKind,
    Principal,
    PrincipalKind,
    Resource,
    parse_ip,
)
from verity.policy import Engine, compile_policy, index, load_policy

MONDAY_10_BERLIN = datetime.fromisoformat("2026-11-23T10:00:00+01:00").timestamp()
SATURDAY_10_BERLIN = datetime.fromisoformat("2026-11-28T10:00:00+01:00").timestamp()

POLICY = """
access_levels:
  trusted_device: {device: {managed: true, disk_encrypted: true, min_os: {macos: "14.0", windows: "10.0.19045"}}}
  corp_network: {ip: [10.0.0.0/8, "2001:db8::/32"]}
  business_hours: {time: {days: mon-fri, hours: "08:00-18:00", tz: Europe/Berlin}}
rules:
  - name: no-sanctioned-regions
    deny: {regions: [KP, IR]}
  - name: contractors-read-docs
    resources: [{host: wiki.internal, methods: [GET], paths: ["/docs/**"]}]
    allow: {roles: [contractor], mfa: true, levels: [trusted_device, business_hours, corp_network], min_trust: 60}
  - name: admins-everything
    allow: {roles: [admin], mfa: true, mfa_max_age: 15m}
  - name: db-admin-jit
    resources: [{type: database, actions: [admin]}]
    allow: {roles: [engineer], jit: prod-db}
  - name: owner-reads-invoice
    resources: [{type: invoice, actions: [read]}]
    allow: {relations: ["resource.owner == principal.id"]}
  - name: blocked-contractor
    message: Your contractor account is suspended.
    hint: Contact your manager.
    deny: {users: [mallory]}
"""

NO_RULE_HINT = "if your work needs it, ask your administrator and quote the decision id"


@pytest.fixture(scope="module")
def engine() -> Engine:
    return compile_policy(load_policy(POLICY))


def contractor(**changes: object) -> AccessRequest:
    request = AccessRequest(
        principal=Principal(id="carol", roles=frozenset({"contractor"}), mfa=True),
        time=MONDAY_10_BERLIN,
        http=HttpTarget("wiki.internal", "GET", "/docs/handbook/intro"),
        device=Device(
            "laptop-1", managed=True, disk_encrypted=True, os_type="macos", os_version="14.5"
        ),
        network=NetworkContext(parse_ip("10.20.30.40"), "DE"),
        trust_score=80,
    )
    return dataclasses.replace(request, **changes)  # type: ignore[arg-type]


def test_allow_names_the_deciding_rule_and_policy_version(engine: Engine) -> None:
    decision = engine.decide(contractor())
    assert decision.effect is Effect.ALLOW
    assert decision.allowed
    assert decision.rule == "contractors-read-docs"
    assert decision.policy_version == engine.version
    assert decision.reasons == ()


def test_decision_ids_are_unique(engine: Engine) -> None:
    ids = {engine.decide(contractor()).decision_id for _ in range(1000)}
    assert len(ids) == 1000


@pytest.mark.parametrize(
    ("change", "code", "words", "hint"),
    [
        ({"device": Device("l", managed=True, disk_encrypted=False, os_type="macos", os_version="14.5")},
         "device.disk_encrypted", "device disk is not encrypted", "enable disk encryption"),
        ({"device": Device("l", managed=True, disk_encrypted=True, os_type="macos", os_version="13.6")},
         "device.os_version", "macos 13.6 is older than the required 14.0", "update"),
        ({"device": None}, "device.managed", "no known device", None),
        ({"time": SATURDAY_10_BERLIN}, "time.window", "outside the allowed hours (Mon-Fri 08:00-18:00 Europe/Berlin)", None),
        ({"network": NetworkContext(parse_ip("203.0.113.9"), "DE")}, "network.ip", "203.0.113.9", "corporate network"),
        ({"trust_score": 40}, "trust.score", "trust score 40 is below the required 60", None),
        ({"trust_score": None}, "trust.score", "(unknown)", None),
    ],
)  # fmt: skip
def test_deny_explains_the_closest_rule_in_words(
    engine: Engine, change: dict[str, object], code: str, words: str, hint: str | None
) -> None:
    decision = engine.decide(contractor(**change))
    assert decision.effect is Effect.DENY
    assert decision.rule is None
    (reason,) = decision.reasons
    assert reason.code == code
    assert reason.rule == "contractors-read-docs"
    assert words in reason.message
    if hint is not None:
        assert reason.hint is not None
        assert hint in reason.hint


def test_missing_mfa_asks_for_step_up(engine: Engine) -> None:
    principal = Principal(id="carol", roles=frozenset({"contractor"}), mfa=False)
    decision = engine.decide(contractor(principal=principal))
    assert decision.reasons[0].code == "auth.mfa"
    assert [o.kind for o in decision.obligations] == [ObligationKind.STEP_UP_MFA]


def test_stale_mfa_for_admins_asks_for_step_up(engine: Engine) -> None:
    admin = Principal(
        id="ada", roles=frozenset({"admin"}), mfa=True, mfa_time=MONDAY_10_BERLIN - 3600
    )
    decision = engine.decide(
        contractor(principal=admin, http=HttpTarget("anything.internal", "POST", "/"))
    )
    assert decision.reasons[0].code == "auth.mfa_age"
    assert "MFA within the last 15m" in decision.reason
    assert decision.obligations[0].kind is ObligationKind.STEP_UP_MFA
    fresh = dataclasses.replace(admin, mfa_time=MONDAY_10_BERLIN - 60)
    assert engine.decide(contractor(principal=fresh)).rule == "admins-everything"


def test_deny_overrides_an_allow_that_matches(engine: Engine) -> None:
    decision = engine.decide(contractor(network=NetworkContext(parse_ip("10.1.1.1"), "KP")))
    assert decision.effect is Effect.DENY
    assert decision.rule == "no-sanctioned-regions"
    assert decision.reasons[0].code == "rule.deny"
    assert "KP" in decision.reason


def test_deny_rule_message_and_hint_are_shown(engine: Engine) -> None:
    decision = engine.decide(
        contractor(principal=Principal(id="mallory", roles=frozenset({"contractor"}), mfa=True))
    )
    assert decision.rule == "blocked-contractor"
    assert decision.reason == "Your contractor account is suspended."
    assert decision.reasons[0].hint == "Contact your manager."


def test_only_a_catch_all_rule_left_says_what_it_needs(engine: Engine) -> None:
    decision = engine.decide(contractor(http=HttpTarget("payroll.internal", "GET", "/")))
    assert decision.effect is Effect.DENY
    assert decision.rule is None
    assert decision.reasons[0].rule == "admins-everything"
    # every criterion the person would have to satisfy, not only the first
    assert decision.reason == (
        "requires role admin (you have: contractor); requires a MFA within the last 15m"
        " (last: never)"
    )


def test_no_rule_for_the_resource_is_a_default_deny() -> None:
    engine = compile_policy(
        load_policy("rules: [{name: wiki, resources: [{host: wiki.internal}], allow: {}}]")
    )
    decision = engine.decide(contractor(http=HttpTarget("payroll.internal", "POST", "/run")))
    assert decision.effect is Effect.DENY
    assert decision.rule is None
    assert decision.reasons[0].code == "no_matching_rule"
    assert decision.reason == "no policy rule grants access to POST payroll.internal/run"


def test_wrong_role_says_which_roles_are_needed(engine: Engine) -> None:
    intern = Principal(id="ian", roles=frozenset({"intern"}), mfa=True)
    decision = engine.decide(contractor(principal=intern))
    assert decision.reasons[0].code == "principal.roles"
    assert "you have: intern" in decision.reason


def test_jit_grant_must_be_active(engine: Engine) -> None:
    eng = Principal(id="eve", roles=frozenset({"engineer"}))
    request = AccessRequest(
        principal=eng, time=MONDAY_10_BERLIN, action="admin", resource=Resource("database", "prod")
    )
    assert engine.decide(request).reasons[0].code == "jit.grant"
    assert engine.decide(request).obligations[0].kind is ObligationKind.REQUEST_ACCESS
    granted = dataclasses.replace(request, grants={"prod-db": MONDAY_10_BERLIN + 600})
    assert engine.decide(granted).rule == "db-admin-jit"
    expired = dataclasses.replace(request, grants={"prod-db": MONDAY_10_BERLIN - 1})
    decision = engine.decide(expired)
    assert decision.effect is Effect.DENY
    assert "expired 1s ago" in decision.reason


def test_owner_relation(engine: Engine) -> None:
    base = AccessRequest(principal=Principal(id="bob"), time=MONDAY_10_BERLIN, action="read")
    own = dataclasses.replace(base, resource=Resource("invoice", "i1", {"owner": "bob"}))
    other = dataclasses.replace(base, resource=Resource("invoice", "i2", {"owner": "alice"}))
    missing = dataclasses.replace(base, resource=Resource("invoice", "i3"))
    assert engine.decide(own).rule == "owner-reads-invoice"
    assert engine.decide(other).effect is Effect.DENY
    # bob cannot become the owner: the reason is the rule he could satisfy (admins')
    assert engine.decide(other).reasons[0].rule == "admins-everything"
    assert engine.decide(other).reasons[0].code == "principal.roles"
    assert "alice" not in engine.decide(other).reason  # the owner is not disclosed
    assert engine.decide(missing).effect is Effect.DENY


def test_spoofed_path_spellings_are_normalised_before_matching(engine: Engine) -> None:
    for path in ("/docs/../admin", "/%64ocs/../admin"):
        decision = engine.decide(contractor(http=HttpTarget("wiki.internal", "GET", path)))
        assert decision.effect is Effect.DENY, path
    assert engine.decide(
        contractor(http=HttpTarget("WIKI.internal:443", "get", "//docs/./a"))
    ).allowed


def test_ipv4_mapped_ipv6_cannot_bypass_an_ip_rule(engine: Engine) -> None:
    request = contractor(network=NetworkContext(parse_ip("::ffff:10.1.2.3"), "DE"))
    assert engine.decide(request).allowed
    assert str(request.network.ip) == "10.1.2.3"


def test_anonymous_principal_gets_no_role_based_access(engine: Engine) -> None:
    decision = engine.decide(contractor(principal=Principal.anonymous()))
    assert decision.effect is Effect.DENY
    assert decision.rule is None


class ExplodingRoles(frozenset[str]):
    def isdisjoint(self, other: object) -> bool:
        raise RuntimeError("boom")

    def __contains__(self, item: object) -> bool:
        raise RuntimeError("boom")


def test_an_exception_while_deciding_is_a_deny_with_internal_error(engine: Engine) -> None:
    principal = Principal(id="carol", mfa=True)
    object.__setattr__(principal, "roles", ExplodingRoles({"contractor"}))
    decision = engine.decide(contractor(principal=principal))
    assert decision.effect is Effect.DENY
    assert decision.rule is None
    assert decision.reasons[0].code == "internal_error"
    assert "RuntimeError" in decision.reason
    assert "boom" not in decision.reason


def test_a_request_that_is_not_a_request_is_denied_not_raised(engine: Engine) -> None:
    decision = engine.decide(None)  # type: ignore[arg-type]
    assert decision.effect is Effect.DENY
    assert decision.reasons[0].code == "internal_error"


CEL_POLICY = """
rules:
  - name: same-department
    resources: [{type: doc}]
    allow: {when: "principal.claims.department == resource.department"}
  - name: fallback-read
    resources: [{type: doc, actions: [read]}]
    allow: {roles: [reader]}
  - name: cel-deny
    resources: [{type: secret}]
    deny: {when: "resource.labels.level > 3"}
  - name: secret-read
    resources: [{type: secret}]
    allow: {authenticated: true}
  - name: negated
    resources: [{type: negated}]
    allow: {not: {when: "resource.flag == true"}}
"""


@pytest.fixture(scope="module")
def cel_engine() -> Engine:
    return compile_policy(load_policy(CEL_POLICY))


def cel_request(
    kind: str, attributes: dict[str, object], claims: dict[str, object] | None = None
) -> AccessRequest:
    principal = Principal(id="p", roles=frozenset({"reader"}), claims=claims or {})
    return AccessRequest(
        principal=principal,
        time=MONDAY_10_BERLIN,
        action="read",
        resource=Resource(kind, "1", attributes),
    )


def test_cel_condition_allows_when_true(cel_engine: Engine) -> None:
    request = cel_request("doc", {"department": "eng"}, {"department": "eng"})
    assert cel_engine.decide(request).rule == "same-department"


def test_cel_error_in_an_allow_rule_does_not_allow_but_other_rules_still_can(
    cel_engine: Engine,
) -> None:
    request = cel_request("doc", {}, {"department": "eng"})  # resource.department missing
    decision = cel_engine.decide(request)
    assert decision.rule == "fallback-read"


def test_cel_error_in_a_deny_rule_denies(cel_engine: Engine) -> None:
    decision = cel_engine.decide(cel_request("secret", {"labels": {}}))
    assert decision.effect is Effect.DENY
    assert decision.rule == "cel-deny"
    assert decision.reasons[0].code == "rule.error"
    assert cel_engine.decide(cel_request("secret", {"labels": {"level": 1}})).rule == "secret-read"
    assert cel_engine.decide(cel_request("secret", {"labels": {"level": 5}})).rule == "cel-deny"


def test_cel_error_under_not_never_turns_into_an_allow(cel_engine: Engine) -> None:
    decision = cel_engine.decide(cel_request("negated", {}))
    assert decision.effect is Effect.DENY
    assert cel_engine.decide(cel_request("negated", {"flag": False})).rule == "negated"


def test_cel_must_yield_a_boolean() -> None:
    engine = compile_policy(load_policy("rules: [{name: r, allow: {when: 'resource.n'}}]"))
    decision = engine.decide(cel_request("doc", {"n": 1}))
    assert decision.effect is Effect.DENY
    assert "boolean" in decision.reason


def test_explain_lists_every_criterion_with_observed_values(engine: Engine) -> None:
    request = contractor(
        device=Device("l", managed=True, disk_encrypted=False, os_type="macos", os_version="14.5")
    )
    explanation = engine.explain(request)
    assert explanation.decision.effect is Effect.DENY
    names = [rule.name for rule in explanation.rules]
    assert "contractors-read-docs" in names
    assert "db-admin-jit" not in names
    wiki = next(r for r in explanation.rules if r.name == "contractors-read-docs")
    assert wiki.applicable
    assert not wiki.matched
    by_path = {trace.path: trace for trace in wiki.criteria}
    assert by_path["rules[1].allow.roles"].passed
    level = by_path["rules[1].allow.levels[0]"]
    assert not level.passed
    disk = next(child for child in level.children if child.code == "device.disk_encrypted")
    assert (disk.passed, disk.observed) == (False, "False")
    everything = engine.explain(request, all_rules=True)
    assert len(everything.rules) == len(engine.rules)


def test_principal_kind_values_round_trip() -> None:
    assert Principal(id="x", kind=PrincipalKind.SERVICE).authenticated
    assert not Principal.anonymous().authenticated


def test_cel_error_is_reported_when_it_is_the_only_explanation() -> None:
    engine = compile_policy(
        load_policy(
            "rules: [{name: r, resources: [{type: doc}], allow: {roles: [reader], when: 'resource.missing == 1'}}]"
        )
    )
    decision = engine.decide(cel_request("doc", {}))
    assert decision.effect is Effect.DENY
    assert decision.reasons[0].code == "rule.error"
    assert decision.reasons[0].rule == "r"


def test_cel_error_inside_a_level_still_renders_a_reason() -> None:
    engine = compile_policy(
        load_policy(
            "access_levels: {lvl: {when: 'resource.missing == 1', roles: [nobody]}}\n"
            "rules: [{name: r, resources: [{type: doc}], allow: {roles: [reader], levels: [lvl]}}]"
        )
    )
    decision = engine.decide(cel_request("doc", {}))
    assert decision.effect is Effect.DENY
    assert decision.reason


def test_rules_differing_only_in_bool_versus_int_do_not_share_code() -> None:
    """Regression: True == 1 in Python, so structurally 'equal' rules once shared checks."""
    engine = compile_policy(
        load_policy(
            "rules:\n"
            "  - {name: one, deny: {claims: {dept: 1}}}\n"
            "  - {name: yes, allow: {claims: {dept: true}}}\n"
        )
    )
    request = AccessRequest(principal=Principal(id="u", claims={"dept": True}), time=0)
    assert engine.decide(request).rule == "yes"
    numeric = AccessRequest(principal=Principal(id="u", claims={"dept": 1}), time=0)
    assert engine.decide(numeric).rule == "one"


# --- deny overrides and first match, whichever groups of the rule index hold the rules ----

ORDER_POLICY = """
rules:
  - {name: a-allow, allow: {roles: [a]}}
  - {name: b-deny, hint: appeal to security, deny: {roles: [b], mfa: false}}
  - {name: c-allow, allow: {roles: [c]}}
  - {name: d-deny, message: D is blocked., deny: {roles: [d]}}
  - {name: e-allow, allow: {roles: [e], mfa: true}}
  - {name: f-allow, allow: {roles: [f], mfa: true, regions: [DE]}}
  - {name: g-deny, deny: {roles: [g], when: "resource.x == 1"}}
  - {name: h-allow, hint: ask the h team, allow: {roles: [h], when: "resource.x == 1"}}
  - {name: i-allow, allow: {roles: [i], regions: [DE]}}
  - {name: j-allow, message: J needs MFA., allow: {roles: [j], mfa: true}}
  - {name: k-deny, deny: {roles: [k]}}
"""
ROLES = "abcdefghijk"
# Index thresholds: the defaults (one catch-all group here), every rule in its own group,
# and every rule keyed with the catch-all folded into each group.
INDEX_LIMITS = [(16, 8, 32), (0, 0, 0), (0, 0, 1000)]


@contextlib.contextmanager
def index_limits(small: int, dimension: int, folded: int) -> Iterator[None]:
    with (
        mock.patch.object(index, "_SMALL_SLOT", small),
        mock.patch.object(index, "_MIN_DIMENSION", dimension),
        mock.patch.object(index, "_MAX_FOLDED", folded),
    ):
        yield


@pytest.fixture(scope="module", params=INDEX_LIMITS, ids=["default", "keyed", "folded"])
def order_engine(request: pytest.FixtureRequest) -> Engine:
    with index_limits(*request.param):
        return compile_policy(load_policy(ORDER_POLICY))


def ordered(
    roles: str, *, mfa: bool = False, region: str = "FR", **attributes: object
) -> AccessRequest:
    return AccessRequest(
        principal=Principal(id="u", roles=frozenset(roles), mfa=mfa),
        time=MONDAY_10_BERLIN,
        network=NetworkContext(parse_ip("10.0.0.1"), region),
        resource=Resource("doc", "d1", attributes),
    )


def seen(decision: Decision) -> tuple[object, ...]:
    """All of a decision but its id."""
    return (decision.effect, decision.rule, decision.reasons, decision.obligations,
            decision.policy_version)  # fmt: skip


@pytest.mark.parametrize(
    ("roles", "rule"),
    [
        ("ab", "b-deny"),  # a deny overrides an allow written before it
        ("ba", "b-deny"),
        ("bd", "b-deny"),  # the first deny in policy order decides
        ("dk", "d-deny"),
        ("bdk", "b-deny"),
        ("kdb", "b-deny"),
        ("dg", "d-deny"),  # a matching deny before one that raises
        ("gk", "g-deny"),  # a raising deny before one that matches
        ("ck", "k-deny"),
    ],
)
def test_the_first_deny_rule_in_policy_order_decides(
    order_engine: Engine, roles: str, rule: str
) -> None:
    decision = order_engine.decide(ordered(roles))
    assert decision.effect is Effect.DENY
    assert decision.rule == rule
    assert decision.reasons[0].rule == rule


@pytest.mark.parametrize(
    ("roles", "rule"),
    [("ac", "a-allow"), ("ca", "a-allow"), ("ce", "c-allow"), ("eac", "a-allow"),
     ("ec", "c-allow"), ("ei", "e-allow"), ("ie", "e-allow")],
)  # fmt: skip
def test_the_first_allow_rule_in_policy_order_names_the_allow(
    order_engine: Engine, roles: str, rule: str
) -> None:
    decision = order_engine.decide(ordered(roles, mfa=True, region="DE"))
    assert (decision.effect, decision.rule) == (Effect.ALLOW, rule)
    assert (decision.reasons, decision.obligations) == ((), ())
    assert decision.policy_version == order_engine.version


def test_a_deny_rules_reason_lists_what_held(order_engine: Engine) -> None:
    decision = order_engine.decide(ordered("ab"))
    (reason,) = decision.reasons
    assert reason.code == "rule.deny"
    assert reason.message == (
        "denied by policy rule 'b-deny': role b (observed: a, b); "
        "a sign-in without MFA (observed: no MFA)"
    )
    assert reason.hint == "appeal to security"
    assert decision.obligations == ()


def test_a_deny_rules_own_message_is_shown(order_engine: Engine) -> None:
    (reason,) = order_engine.decide(ordered("d")).reasons
    assert (reason.code, reason.message, reason.rule, reason.hint) == (
        "rule.deny", "D is blocked.", "d-deny", None,
    )  # fmt: skip


def test_a_deny_rule_that_raises_denies_saying_it_could_not_be_evaluated(
    order_engine: Engine,
) -> None:
    decision = order_engine.decide(ordered("ga"))
    assert (decision.effect, decision.rule) == (Effect.DENY, "g-deny")
    (reason,) = decision.reasons
    assert (reason.code, reason.rule, reason.hint) == ("rule.error", "g-deny", NO_RULE_HINT)
    assert reason.message == "denied: policy rule 'g-deny' could not be evaluated"
    assert order_engine.decide(ordered("ga", x=2)).rule == "a-allow"  # evaluated: no match


def test_a_deny_rule_without_criteria_says_only_its_name() -> None:
    engine = compile_policy(load_policy("rules: [{name: closed, deny: {}}, {name: o, allow: {}}]"))
    decision = engine.decide(ordered(""))
    assert decision.rule == "closed"
    assert decision.reason == "denied by policy rule 'closed'"


@pytest.mark.parametrize(
    ("roles", "mfa", "rule", "code"),
    [
        ("ef", False, "e-allow", "auth.mfa"),  # a tie: the first in policy order
        ("fe", False, "e-allow", "auth.mfa"),
        ("if", True, "f-allow", "network.region"),  # f got further (its third criterion)
        ("fi", True, "f-allow", "network.region"),
        ("i", True, "i-allow", "network.region"),
        ("ie", False, "e-allow", "auth.mfa"),  # both stop at their second; e is first
    ],
)
def test_a_default_deny_is_explained_by_the_allow_rule_that_came_closest(
    order_engine: Engine, roles: str, mfa: bool, rule: str, code: str
) -> None:
    decision = order_engine.decide(ordered(roles, mfa=mfa))
    assert (decision.effect, decision.rule) == (Effect.DENY, None)
    (reason,) = decision.reasons
    assert (reason.rule, reason.code) == (rule, code)


def test_a_closest_rule_passes_on_its_obligation_and_hint(order_engine: Engine) -> None:
    decision = order_engine.decide(ordered("e"))
    assert decision.obligations == (Obligation(ObligationKind.STEP_UP_MFA, "e-allow"),)
    assert decision.reasons[0].hint == "sign in again with your second factor"
    assert decision.reasons[0].message == "multi-factor authentication is required"
    region = order_engine.decide(ordered("i", mfa=True))
    assert region.obligations == ()


def test_an_allow_rules_own_message_replaces_the_criterions_words(order_engine: Engine) -> None:
    decision = order_engine.decide(ordered("j"))
    (reason,) = decision.reasons
    assert (reason.code, reason.message, reason.rule) == ("auth.mfa", "J needs MFA.", "j-allow")
    assert reason.hint == "sign in again with your second factor"
    assert decision.obligations == (Obligation(ObligationKind.STEP_UP_MFA, "j-allow"),)


def test_an_allow_rule_that_raises_explains_the_deny_when_no_rule_came_closer() -> None:
    engine = compile_policy(
        load_policy(
            "rules: [{name: h-allow, hint: ask the h team,"
            " allow: {roles: [h], when: 'resource.x == 1'}}]"
        )
    )
    decision = engine.decide(ordered("h"))
    assert (decision.effect, decision.rule) == (Effect.DENY, None)
    (reason,) = decision.reasons
    assert (reason.code, reason.rule, reason.hint) == ("rule.error", "h-allow", "ask the h team")
    assert reason.message.startswith("a condition of rule 'h-allow' could not be evaluated: ")
    assert "NOT_FOUND" in reason.message  # the CEL error's own words
    assert engine.decide(ordered("h", x=1)).rule == "h-allow"


def test_an_allow_rule_that_raises_never_allows(order_engine: Engine) -> None:
    decision = order_engine.decide(ordered("h"))
    assert (decision.effect, decision.rule) == (Effect.DENY, None)
    assert order_engine.decide(ordered("h", x=1)).rule == "h-allow"
    assert order_engine.decide(ordered("ha")).rule == "a-allow"


def test_the_indexed_engine_decides_every_small_role_set_as_a_linear_scan() -> None:
    linear = compile_policy(load_policy(ORDER_POLICY), linear=True)
    engines = []
    for limits in INDEX_LIMITS:
        with index_limits(*limits):
            engines.append(compile_policy(load_policy(ORDER_POLICY)))
    role_sets = ["", *ROLES, *("".join(p) for p in itertools.combinations(ROLES, 2))]
    for roles in role_sets:
        for mfa, region, x in itertools.product([False, True], ["DE", "FR"], [None, 1]):
            attributes = {} if x is None else {"x": x}
            req = ordered(roles, mfa=mfa, region=region, **attributes)
            expected = seen(linear.decide(req))
            for engine in engines:
                assert seen(engine.decide(req)) == expected, (roles, mfa, region, x)


def test_an_anonymous_caller_is_asked_to_sign_in_whichever_path_decided() -> None:
    text = ORDER_POLICY + "  - {name: members, allow: {authenticated: true}}\n"
    for limits in INDEX_LIMITS:
        with index_limits(*limits):
            engine = compile_policy(load_policy(text))
        anonymous = dataclasses.replace(ordered(""), principal=Principal.anonymous())
        assert engine.decide(anonymous).requires_authentication
        signed_in = engine.decide(ordered(""))
        assert signed_in.allowed


# --- what a deny without any rule says, and internal errors --------------------------------


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"http": HttpTarget("payroll.internal", "POST", "/run")}, "POST payroll.internal/run"),
        ({"action": "read", "resource": Resource("invoice", "i-7")}, "read on invoice i-7"),
        ({"resource": Resource("invoice")}, "access on invoice"),
        ({"action": "export"}, "action export"),
        ({"http": HttpTarget("h.test", "GET", "/x"), "action": "read",
          "resource": Resource("doc", "d")}, "GET h.test/x / read on doc d"),
        ({}, "this resource"),
    ],
)  # fmt: skip
def test_no_rule_for_the_request_names_what_was_asked(
    changes: dict[str, object], words: str
) -> None:
    engine = compile_policy(
        load_policy("rules: [{name: wiki, resources: [{host: wiki.internal}], allow: {}}]")
    )
    request = AccessRequest(principal=Principal(id="u"), time=MONDAY_10_BERLIN, **changes)  # type: ignore[arg-type]
    decision = engine.decide(request)
    assert (decision.effect, decision.rule, decision.obligations) == (Effect.DENY, None, ())
    (reason,) = decision.reasons
    assert (reason.code, reason.rule) == ("no_matching_rule", None)
    assert reason.message == f"no policy rule grants access to {words}"
    assert reason.hint == NO_RULE_HINT


def test_an_internal_error_names_only_the_exception_class(engine: Engine) -> None:
    principal = Principal(id="carol", mfa=True)
    object.__setattr__(principal, "roles", ExplodingRoles({"contractor"}))
    decision = engine.decide(contractor(principal=principal))
    assert decision.reason == "access denied: internal error while deciding (RuntimeError)"
    assert decision.policy_version == engine.version
    assert decision.obligations == ()


def test_an_internal_error_with_tables_is_a_deny() -> None:
    engine = compile_policy(
        load_policy(
            "rules:\n  - name: t\n    table:\n      rows: [{role: r, type: doc, actions: [read]}]\n"
        )
    )
    decision = engine.decide(None)  # type: ignore[arg-type]
    assert (decision.effect, decision.rule) == (Effect.DENY, None)
    assert decision.reason == "access denied: internal error while deciding (AttributeError)"


# --- explain ------------------------------------------------------------------------------


def test_explain_agrees_with_decide_for_every_rule(order_engine: Engine) -> None:
    for roles, mfa in [("ab", False), ("ce", True), ("e", False), ("h", True), ("gk", True)]:
        request = ordered(roles, mfa=mfa, region="DE", x=2)
        decision = order_engine.decide(request)
        explanation = order_engine.explain(request)
        assert seen(explanation.decision)[:4] == seen(decision)[:4]
        by_name = {rule.name: rule for rule in explanation.rules}
        assert list(by_name) == [r.name for r in order_engine.rules]  # all apply, in order
        for rule in explanation.rules:
            holds = all(t.passed for t in rule.criteria) and rule.error is None
            assert rule.matched is (
                holds or (rule.error is not None and rule.effect is Effect.DENY)
            )
        if decision.rule is not None:
            assert by_name[decision.rule].matched


def test_explain_describes_each_rule_and_a_raising_deny_rule() -> None:
    engine = compile_policy(load_policy(ORDER_POLICY))
    explanation = engine.explain(ordered("g"))
    g = next(r for r in explanation.rules if r.name == "g-deny")
    assert (g.effect, g.applicable, g.matched, g.index, g.path) == (
        Effect.DENY, True, True, 6, "rules[6]",
    )  # fmt: skip
    assert g.error is not None
    cel = g.criteria[-1]
    assert (cel.passed, cel.observed, cel.error) == (False, "(error)", g.error)
    assert cel.expected != ""
    h = next(r for r in engine.explain(ordered("h")).rules if r.name == "h-allow")
    assert (h.matched, h.effect) == (False, Effect.ALLOW)
    assert h.error is not None


def test_explain_lists_only_applicable_rules_unless_asked_for_all() -> None:
    engine = compile_policy(
        load_policy(
            "rules:\n"
            "  - {name: wiki, description: the wiki, resources: [{host: wiki.test}], allow: {}}\n"
            "  - {name: other, resources: [{host: other.test}], allow: {}}\n"
        )
    )
    request = AccessRequest(principal=Principal(id="u"), time=0, http=HttpTarget("other.test"))
    assert [r.name for r in engine.explain(request).rules] == ["other"]
    every = engine.explain(request, all_rules=True).rules
    assert [(r.name, r.applicable, r.matched) for r in every] == [
        ("wiki", False, False), ("other", True, True),
    ]  # fmt: skip
    assert (every[0].description, every[0].index) == ("the wiki", 0)


TABLE_POLICY = """
rules:
  - {name: first, resources: [{type: doc, actions: [read]}], allow: {roles: [reader]}}
  - name: grants
    description: role grants
    table:
      allow: {mfa: true}
      rows:
        - {role: editor, type: doc, actions: [read, write]}
        - {role: reader, type: doc, actions: [read]}
  - {name: last, resources: [{type: doc}], allow: {roles: [editor]}}
"""


def table_request(*roles: str, action: str = "read", mfa: bool = True) -> AccessRequest:
    return AccessRequest(
        principal=Principal(id="u", roles=frozenset(roles), mfa=mfa),
        time=0, action=action, resource=Resource("doc", "d1"),
    )  # fmt: skip


def test_tables_are_decided_in_policy_order_with_the_rules() -> None:
    engine = compile_policy(load_policy(TABLE_POLICY))
    assert engine.decide(table_request("reader")).rule == "first"  # the rule is written first
    assert engine.decide(table_request("editor")).rule == "grants[editor,doc]"
    assert engine.decide(table_request("editor", mfa=False)).rule == "last"
    assert engine.decide(table_request("editor", action="write")).rule == "grants[editor,doc]"
    denied = engine.decide(table_request("reader", action="write"))
    assert (denied.effect, denied.rule) == (Effect.DENY, None)


def test_explain_interleaves_table_rows_with_rules_in_policy_order() -> None:
    engine = compile_policy(load_policy(TABLE_POLICY))
    explanation = engine.explain(table_request("editor"))
    assert explanation.decision.rule == "grants[editor,doc]"
    assert [(r.name, r.path, r.index) for r in explanation.rules] == [
        ("first", "rules[0]", 0),
        ("grants[editor,doc]", "rules[1].table.rows[0]", 1),
        ("grants[reader,doc]", "rules[1].table.rows[1]", 1),
        ("last", "rules[2]", 1),
    ]
    editor, reader = explanation.rules[1:3]
    assert (editor.effect, editor.applicable, editor.matched) == (Effect.ALLOW, True, True)
    assert (reader.applicable, reader.matched) == (True, False)
    assert editor.description == "role grants"
    unmfa = engine.explain(table_request("editor", mfa=False))
    row = unmfa.rules[1]
    assert (row.name, row.applicable, row.matched) == ("grants[editor,doc]", True, False)
    assert not all(t.passed for t in row.criteria)
    assert unmfa.decision.rule == "last"


TABLE_LAST = """
rules:
  - {name: first, resources: [{type: doc, actions: [read]}], allow: {roles: [reader]}}
  - {name: last, resources: [{type: doc}], allow: {roles: [editor]}}
  - name: grants
    table:
      rows:
        - {role: editor, type: doc, actions: [read, write]}
        - {role: reader, type: doc, actions: [read]}
"""


def test_explain_lists_a_table_written_after_every_rule_last() -> None:
    engine = compile_policy(load_policy(TABLE_LAST))
    explanation = engine.explain(table_request("editor"))
    assert explanation.decision.rule == "last"
    paths = [r.path for r in explanation.rules]
    assert paths == ["rules[0]", "rules[1]", "rules[2].table.rows[0]", "rules[2].table.rows[1]"]


@pytest.mark.parametrize("text", [TABLE_POLICY, TABLE_LAST])
def test_no_grant_in_a_table_says_which_roles_would_grant(text: str) -> None:
    engine = compile_policy(load_policy(text))
    decision = engine.decide(table_request("guest", action="write"))
    assert (decision.effect, decision.rule, decision.obligations) == (Effect.DENY, None, ())
    (reason,) = decision.reasons
    assert (reason.code, reason.rule, reason.hint) == (
        "no_matching_rule", None, "request access from an administrator",
    )  # fmt: skip
    assert reason.message == (
        "role editor grants write on doc (table 'grants'); you have roles: guest"
    )


def test_candidates_include_every_rule_of_the_probed_groups() -> None:
    with index_limits(0, 0, 0):
        engine = compile_policy(load_policy(ORDER_POLICY))
    assert engine.candidates(ordered("ab")) >= {0, 1}
    assert not engine.candidates(ordered("ab")) & {2, 3, 4}  # other roles' rules: skipped
    linear = compile_policy(load_policy(ORDER_POLICY), linear=True)
    assert linear.candidates(ordered("")) == frozenset(range(len(linear.rules)))


def test_two_raising_allow_rules_explain_with_the_first_in_policy_order() -> None:
    text = "rules:\n" + "".join(
        f"  - {{name: h{i}, allow: {{roles: [h{i}], when: 'resource.x == 1'}}}}\n" for i in (1, 2)
    )
    for limits in INDEX_LIMITS:
        with index_limits(*limits):
            engine = compile_policy(load_policy(text))
        request = dataclasses.replace(
            ordered(""), principal=Principal(id="u", roles=frozenset({"h1", "h2"}))
        )
        decision = engine.decide(request)
        assert (decision.effect, decision.rule) == (Effect.DENY, None)
        assert (decision.reasons[0].code, decision.reasons[0].rule) == ("rule.error", "h1")


def test_an_allow_rule_that_got_past_its_first_criterion_explains_before_a_table() -> None:
    engine = compile_policy(
        load_policy(
            "rules:\n"
            "  - {name: r1, resources: [{type: doc, actions: [read]}],"
            " allow: {roles: [reader], mfa: true}}\n"
            "  - name: grants\n    table:\n"
            "      rows: [{role: editor, type: doc, actions: [read, write]}]\n"
        )
    )
    decision = engine.decide(table_request("reader", mfa=False))
    (reason,) = decision.reasons
    assert (reason.code, reason.rule) == ("auth.mfa", "r1")
    assert decision.obligations == (Obligation(ObligationKind.STEP_UP_MFA, "r1"),)


def test_with_two_tables_the_first_one_about_the_request_explains() -> None:
    engine = compile_policy(
        load_policy(
            "rules:\n"
            "  - name: first-table\n    table:\n"
            "      rows: [{role: editor, type: doc, actions: [read]}]\n"
            "  - name: second-table\n    table:\n"
            "      rows: [{role: owner, type: doc, actions: [read]}]\n"
        )
    )
    decision = engine.decide(table_request("guest"))
    assert decision.reason == (
        "role editor grants read on doc (table 'first-table'); you have roles: guest"
    )


def test_explain_marks_a_table_condition_that_raised_as_failed() -> None:
    engine = compile_policy(
        load_policy(
            "rules:\n  - name: grants\n    table:\n"
            '      roles: {editor: {when: "principal.claims.level > 2"}}\n'
            "      rows: [{role: editor, type: doc, actions: [read]}]\n"
        )
    )
    (row,) = engine.explain(table_request("editor")).rules
    assert (row.name, row.matched) == ("grants[editor,doc]", False)
    assert row.error is not None
    role, condition = row.criteria
    assert (role.passed, condition.passed, condition.observed) == (True, False, "(error)")
    assert condition.error == row.error


def test_a_tie_between_groups_is_explained_by_the_rule_written_first() -> None:
    """The group of ``late`` (keyed by group, the index's first dimension here) is probed
    before the group of ``early`` (keyed by role): both stop at MFA, and the rule written
    first explains, whatever the probing order."""
    text = (
        "rules:\n"
        "  - {name: filler, allow: {groups: [zz]}}\n"
        "  - {name: early, allow: {roles: [l], mfa: true}}\n"
        "  - {name: late, allow: {groups: [h], mfa: true}}\n"
    )
    request = AccessRequest(
        principal=Principal(id="u", roles=frozenset({"l"}), groups=frozenset({"h"})), time=0
    )
    for limits in INDEX_LIMITS:
        with index_limits(*limits):
            engine = compile_policy(load_policy(text))
        (reason,) = engine.decide(request).reasons
        assert (reason.rule, reason.code) == ("early", "auth.mfa"), limits
