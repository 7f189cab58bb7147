"""The reason for a default deny names a change that would lift it, or says plainly that
none would (``verity.policy.remedy``): the demo's contractor and engineer on /admin, and
a property over random small policies and requests."""

from __future__ import annotations

import dataclasses
from importlib import resources
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verity.model import AccessRequest, Decision, Effect, HttpTarget, Principal, Remedy
from verity.policy import Engine, compile_policy, load_policy_file, parse_policy
from verity.policy.remedy import ALTERNATIVES_SCANNED, NO_GRANT

ROLES = ["admin", "eng", "contractor"]
GROUPS = ["g1", "g2"]
PATHS = ["/admin/**", "/docs/**", "/"]
REQUEST_PATHS = ["/", "/admin/settings", "/docs/a", "/reports"]
T = 1_764_000_000.0


def _demo() -> Engine:
    return compile_policy(load_policy_file(str(resources.files("verity.demo") / "policy.yaml")))


def _person(role: str, path: str, *, mfa: bool = False) -> AccessRequest:
    principal = Principal(id=role, email=f"{role}@demo.test", roles=frozenset({role}), mfa=mfa)
    return AccessRequest(principal=principal, time=T, http=HttpTarget("127.0.0.1", "GET", path))


def test_contractor_on_admin_is_told_the_admin_role_not_the_engineer_role() -> None:
    reason = _demo().decide(_person("contractor", "/admin/settings")).reasons[0]
    assert reason.code == "principal.roles"
    assert reason.rule == "admins-everything"
    assert reason.remedies == (Remedy("principal.roles", ("admin",)),)
    assert "engineer" not in reason.message
    assert "engineer" not in reason.summary
    assert reason.summary == "This is open to people with the role admin (you have: contractor)."


def test_engineer_on_admin_is_told_the_admin_role_not_a_path_pattern() -> None:
    reason = _demo().decide(_person("engineer", "/admin/settings")).reasons[0]
    assert reason.remedies == (Remedy("principal.roles", ("admin",)),)
    assert "/admin/**" not in reason.summary
    assert reason.hint == "ask your administrator for the role admin if your work needs it"


def test_contractor_without_mfa_on_docs_is_told_to_step_up() -> None:
    decision = _demo().decide(_person("contractor", "/docs/handbook"))
    reason = decision.reasons[0]
    assert reason.remedies == (Remedy("auth.mfa"),)
    assert reason.hint == "sign in again with your second factor"
    assert [o.kind.value for o in decision.obligations] == ["step_up_mfa"]


def test_nothing_the_person_can_change_says_so_plainly() -> None:
    policy = {
        "rules": [
            {"name": "eng-not-admin", "allow": {"roles": ["eng"], "not": {"paths": ["/admin/**"]}}},
            {"name": "alice-only", "resources": [{"paths": ["/admin/**"]}],
             "allow": {"users": ["alice"]}},
        ]
    }  # fmt: skip
    engine = compile_policy(parse_policy(policy))
    reason = engine.decide(_person("eng", "/admin/settings")).reasons[0]
    assert reason.code == NO_GRANT
    assert reason.remedies == ()
    assert reason.summary == (
        "No rule of your organisation's policy grants access to /admin/settings to anyone "
        "in your position (role eng)."
    )
    assert "closest rule 'eng-not-admin'" in reason.message  # the operator keeps the detail


def test_a_rule_with_two_failing_criteria_names_both() -> None:
    policy = {"rules": [{"name": "r", "allow": {"roles": ["admin"], "mfa": True}}]}
    reason = compile_policy(parse_policy(policy)).decide(_person("eng", "/")).reasons[0]
    assert reason.remedies == (Remedy("principal.roles", ("admin",)), Remedy("auth.mfa"))
    assert "role admin" in reason.message
    assert "multi-factor" in reason.message


# --- the property -------------------------------------------------------------------


def _subset(items: list[str]) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(items), min_size=1, max_size=2, unique=True)


_IDENTITY = {
    "roles": _subset(ROLES),
    "groups": _subset(GROUPS),
    "mfa": st.booleans(),
    "users": _subset(["u1", "u2"]),
}
_REQUEST = {"paths": _subset(PATHS), "methods": _subset(["GET", "POST"])}


@st.composite
def _condition(draw: st.DrawFn, keys: dict[str, st.SearchStrategy[Any]]) -> dict[str, Any]:
    chosen = draw(st.lists(st.sampled_from(sorted(keys)), min_size=1, max_size=3, unique=True))
    out = {key: draw(keys[key]) for key in chosen}
    if draw(st.integers(0, 3)) == 0:
        out["not"] = {"paths": draw(_subset(PATHS))}
    if draw(st.integers(0, 4)) == 0:
        out["any"] = [{"roles": draw(_subset(ROLES))}, {"groups": draw(_subset(GROUPS))}]
    return out


@st.composite
def _policies(draw: st.DrawFn) -> dict[str, Any]:
    rules: list[dict[str, Any]] = []
    for i in range(draw(st.integers(1, 5))):
        rule: dict[str, Any] = {"name": f"r{i}"}
        if draw(st.booleans()):
            rule["resources"] = [{"paths": draw(_subset(PATHS))}]
        if draw(st.integers(0, 4)) == 0:
            rule["deny"] = draw(_condition({**_REQUEST, "roles": _subset(ROLES)}))
        else:
            rule["allow"] = draw(_condition({**_IDENTITY, **_REQUEST}))
        rules.append(rule)
    return {"rules": rules}


@st.composite
def _requests(draw: st.DrawFn) -> AccessRequest:
    principal = Principal(
        id=draw(st.sampled_from(["u1", "u2", "u3"])),
        roles=frozenset(draw(st.lists(st.sampled_from(ROLES), max_size=2))),
        groups=frozenset(draw(st.lists(st.sampled_from(GROUPS), max_size=1))),
        mfa=draw(st.booleans()),
    )
    method, path = draw(st.sampled_from(["GET", "POST"])), draw(st.sampled_from(REQUEST_PATHS))
    return AccessRequest(principal=principal, time=T, http=HttpTarget("h", method, path))


def _apply(request: AccessRequest, remedies: tuple[Remedy, ...]) -> AccessRequest:
    """``request`` with every remedy applied, as the person would (the first value each)."""
    p = request.principal
    roles, groups, mfa = set(p.roles), set(p.groups), p.mfa
    for remedy in remedies:
        if remedy.code == "principal.roles":
            roles.add(remedy.values[0])
        elif remedy.code == "principal.groups":
            groups.add(remedy.values[0])
        elif remedy.code == "auth.mfa":
            mfa = True
        else:
            raise AssertionError(f"unexpected remedy {remedy}")
    principal = dataclasses.replace(p, roles=frozenset(roles), groups=frozenset(groups), mfa=mfa)
    return dataclasses.replace(request, principal=principal)


def _outcome(decision: Decision) -> tuple[Effect, str | None]:
    return decision.effect, decision.rule


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=_policies(), request=_requests())
def test_a_named_fix_changes_the_decision_or_the_reason_says_nothing_would(
    policy: dict[str, Any], request: AccessRequest
) -> None:
    engine = compile_policy(parse_policy(policy))
    decision = engine.decide(request)
    if decision.allowed or decision.rule is not None:  # allowed, or a deny rule decided
        return
    reason = decision.reasons[0]
    if reason.code == NO_GRANT:
        assert reason.remedies == ()
        denies_read_roles = any("deny" in r and "roles" in r["deny"] for r in policy["rules"])
        if not denies_read_roles:  # then the most anyone could hold would not be let in either
            most = dataclasses.replace(
                request.principal, roles=frozenset(ROLES), groups=frozenset(GROUPS), mfa=True
            )
            assert not engine.decide(dataclasses.replace(request, principal=most)).allowed
        return
    assert reason.remedies, reason
    fixed = engine.decide(_apply(request, reason.remedies))
    assert _outcome(fixed) != _outcome(decision), (reason, reason.remedies)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=_policies(), request=_requests())
def test_indexed_and_linear_engines_choose_the_same_reason(
    policy: dict[str, Any], request: AccessRequest
) -> None:
    indexed = compile_policy(parse_policy(policy)).decide(request)
    linear = compile_policy(parse_policy(policy), linear=True).decide(request)
    assert [(r.code, r.message, r.rule, r.remedies) for r in indexed.reasons] == [
        (r.code, r.message, r.rule, r.remedies) for r in linear.reasons
    ]


def test_a_flood_of_denies_does_not_scan_a_large_slot_for_an_explanation() -> None:
    # Path rules the person cannot satisfy, then one role rule that would explain the deny.
    # The search for it stops after ALTERNATIVES_SCANNED rules: an explanation must not cost
    # a scan of every rule on each cheap-to-cause deny; the effect never depends on it.
    def engine(padding: int) -> Engine:
        rules = [{"name": f"p{i}", "allow": {"paths": [f"/only/{i}/**"]}} for i in range(padding)]
        rules.append({"name": "admins", "allow": {"roles": ["admin"]}})
        return compile_policy(parse_policy({"rules": rules}))

    request = _person("contractor", "/reports")
    near = engine(ALTERNATIVES_SCANNED - 1).decide(request)
    assert near.effect is Effect.DENY
    assert near.reasons[0].remedies == (Remedy("principal.roles", ("admin",)),)
    far = engine(ALTERNATIVES_SCANNED).decide(request)
    assert far.effect is Effect.DENY
    assert far.reasons[0].code == NO_GRANT
