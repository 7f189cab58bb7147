"""Decision semantics: deny overrides allow, default deny, reasons, obligations, fail-closed."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import pytest

from verity.model import (
    AccessRequest,
    Device,
    Effect,
    HttpTarget,
    NetworkContext,
    ObligationKind,
    Principal,
    PrincipalKind,
    Resource,
    parse_ip,
)
from verity.policy import Engine, compile_policy, load_policy

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
