"""Property tests: the compiled, indexed engine agrees with the reference interpreter on
random policies and random requests (effect and deciding rule), and explain agrees with
decide."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verity.model import (
    AccessRequest,
    Device,
    Effect,
    HttpTarget,
    NetworkContext,
    Principal,
    PrincipalKind,
    Resource,
    parse_ip,
)
from verity.policy import compile_policy, parse_policy

from . import reference

ROLES = ["admin", "eng", "contractor"]
GROUPS = ["g1", "g2"]
USERS = ["u1", "u2", "u3"]
REGIONS = ["DE", "FR", "US", "KP"]
TYPES = ["doc", "invoice"]
ACTIONS = ["read", "write"]
HOSTS = ["a.example", "b.example", "x.a.example"]
PATHS = ["/x/**", "/y/*", "/", "/x/a", "/y/*/z"]
REQUEST_PATHS = ["/", "/x", "/x/a", "/x/a/b", "/y/q", "/y/q/z", "/y/", "/z"]
CIDRS = ["10.0.0.0/8", "192.168.1.0/24", "2001:db8::/32", "10.1.2.3"]
IPS = [
    "10.1.2.3",
    "10.9.9.9",
    "192.168.1.7",
    "192.168.2.7",
    "2001:db8::5",
    "2001:dead::1",
    "8.8.8.8",
]
VERSIONS = [
    "13",
    "13.9.9",
    "14",
    "14.0",
    "14.2.1",
    "15",
    "10.0.19045",
    "10.0.19044",
    "14.2-beta",
    "",
]
ZONES = ["Europe/Berlin", "America/New_York", "UTC", "Asia/Kolkata", "Australia/Lord_Howe"]
# 2025-10-24 .. 2025-11-05 spans the end of European and US summer time.
T0, T_SPAN = 1761264000, 13 * 86400


def subset(items: list[str]) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(items), min_size=1, max_size=len(items), unique=True)


LEAF_CRITERIA: dict[str, st.SearchStrategy[Any]] = {
    "authenticated": st.booleans(),
    "users": subset(USERS),
    "groups": subset(GROUPS),
    "roles": subset(ROLES),
    "claims": st.fixed_dictionaries({"dept": st.sampled_from(["eng", "fin", 1, True])}),
    "mfa": st.booleans(),
    "auth_methods": subset(["pwd", "otp", "hwk"]),
    "max_auth_age": st.sampled_from(["5m", "1h", 86400]),
    "mfa_max_age": st.sampled_from(["15m", "12h"]),
    "device": st.fixed_dictionaries(
        {},
        optional={
            "managed": st.booleans(),
            "disk_encrypted": st.booleans(),
            "os": subset(["macos", "windows", "linux"]),
            "min_os": st.fixed_dictionaries(
                {"macos": st.sampled_from(["14.0", "14.2"])},
                optional={"windows": st.just("10.0.19045")},
            ),
        },
    ).filter(bool),
    "ip": subset(CIDRS),
    "regions": subset(REGIONS),
    "time": st.fixed_dictionaries(
        {
            "days": st.sampled_from(["mon-fri", "sat,sun", "fri-mon", "any", "wed"]),
            "hours": st.sampled_from(["08:00-18:00", "22:00-06:00", "00:00-24:00", "09:30-10:45"]),
            "tz": st.sampled_from(ZONES),
        }
    ),
    "min_trust": st.integers(0, 100),
    "jit": st.sampled_from(["db-admin", "prod"]),
    "actions": subset(ACTIONS),
    "methods": subset(["GET", "POST"]),
    "paths": subset(PATHS),
    "hosts": subset([*HOSTS, "*.a.example"]),
    "resource": st.fixed_dictionaries({"team": st.sampled_from(["red", "blue", 7])}),
    "relations": subset(
        [
            "resource.owner == principal.id",
            "resource.owner != principal.id",
            "resource.team in principal.claims.teams",
            "principal.claims.teams contains resource.team",
        ]
    ),
}


def block(depth: int, levels: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    keys = list(LEAF_CRITERIA) + (["levels"] if levels else [])
    combos: list[str] = ["all", "any", "not"] if depth > 0 else []

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        chosen = draw(st.lists(st.sampled_from(keys + combos), min_size=0, max_size=4, unique=True))
        out: dict[str, Any] = {}
        for key in chosen:
            if key == "levels":
                out[key] = draw(subset(levels))
            elif key in ("all", "any"):
                out[key] = draw(st.lists(block(depth - 1, levels), min_size=1, max_size=3))
            elif key == "not":
                out[key] = draw(block(depth - 1, levels))
            else:
                out[key] = draw(LEAF_CRITERIA[key])
        return out

    return build()


selector = st.fixed_dictionaries(
    {},
    optional={
        "types": subset(TYPES),
        "actions": subset(ACTIONS),
        "hosts": subset([*HOSTS, "*.a.example"]),
        "methods": subset(["GET", "POST"]),
        "paths": subset(PATHS),
    },
).filter(bool)


@st.composite
def policies(draw: st.DrawFn, max_rules: int = 8) -> dict[str, Any]:
    level_names = draw(st.lists(st.sampled_from(["l1", "l2"]), unique=True, max_size=2))
    levels = {name: draw(block(1, [])) for name in level_names}
    rules = []
    for i in range(draw(st.integers(1, max_rules))):
        rule: dict[str, Any] = {"name": f"r{i}"}
        if draw(st.booleans()):
            rule["resources"] = draw(st.lists(selector, min_size=1, max_size=2))
        effect = draw(st.sampled_from(["allow", "allow", "deny"]))
        rule[effect] = draw(block(2, level_names))
        rules.append(rule)
    return {"access_levels": levels, "rules": rules}


@st.composite
def requests(draw: st.DrawFn) -> AccessRequest:
    kind = draw(st.sampled_from([PrincipalKind.USER, PrincipalKind.USER, PrincipalKind.ANONYMOUS]))
    # Quarter-hour marks (every window boundary in these zones) and a few seconds around them.
    time = (
        T0
        + 900 * draw(st.integers(0, T_SPAN // 900))
        + draw(st.sampled_from([0, 0, -1, 1, -60, 59, 60, 450]))
    )
    principal = Principal(
        id=draw(st.sampled_from(USERS)),
        kind=kind,
        email=draw(st.sampled_from([None, "u1", "a@x"])),
        groups=frozenset(draw(st.lists(st.sampled_from(GROUPS), max_size=2))),
        roles=frozenset(draw(st.lists(st.sampled_from(ROLES), max_size=2))),
        claims=draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "dept": st.sampled_from(["eng", "fin", 1, True, False]),
                    "teams": st.lists(st.sampled_from(["red", "blue", 7]), max_size=2),
                },
            )
        ),
        auth_methods=frozenset(draw(st.lists(st.sampled_from(["pwd", "otp", "hwk"]), max_size=2))),
        mfa=draw(st.booleans()),
        auth_time=draw(st.one_of(st.none(), st.integers(-90000, 120).map(lambda d: time + d))),
        mfa_time=draw(st.one_of(st.none(), st.integers(-90000, 120).map(lambda d: time + d))),
    )
    device = draw(
        st.one_of(
            st.none(),
            st.builds(
                Device,
                id=st.just("d1"),
                managed=st.booleans(),
                disk_encrypted=st.booleans(),
                os_type=st.sampled_from(["macos", "windows", "linux", "ios"]),
                os_version=st.sampled_from(VERSIONS),
            ),
        )
    )
    http = draw(
        st.one_of(
            st.none(),
            st.builds(
                HttpTarget,
                host=st.sampled_from([*HOSTS, "a.example:8443", "A.EXAMPLE", "c.example"]),
                method=st.sampled_from(["GET", "POST", "get"]),
                path=st.sampled_from(REQUEST_PATHS),
            ),
        )
    )
    resource = Resource(
        type=draw(st.sampled_from([None, *TYPES, "other"])),
        id=draw(st.sampled_from([None, "r1"])),
        attributes=draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "owner": st.sampled_from(USERS),
                    "team": st.sampled_from(["red", "blue", 7, True]),
                },
            )
        ),
    )
    return AccessRequest(
        principal=principal,
        time=time,
        action=draw(st.sampled_from([None, *ACTIONS])),
        resource=resource,
        http=http,
        device=device,
        network=NetworkContext(
            ip=draw(st.one_of(st.none(), st.sampled_from(IPS).map(parse_ip))),
            region=draw(st.sampled_from([None, *REGIONS])),
        ),
        trust_score=draw(st.one_of(st.none(), st.integers(0, 100))),
        grants=draw(
            st.dictionaries(
                st.sampled_from(["db-admin", "prod"]),
                st.integers(-600, 600).map(lambda d: time + d),
            )
        ),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=policies(), batch=st.lists(requests(), min_size=1, max_size=12))
def test_compiled_engine_agrees_with_reference_interpreter(
    document: dict[str, Any], batch: list[AccessRequest]
) -> None:
    policy = parse_policy(document)
    engine = compile_policy(policy)
    for request in batch:
        decision = engine.decide(request)
        assert (decision.effect, decision.rule) == reference.decide(policy, request)
        assert all(reason.code != "internal_error" for reason in decision.reasons)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=policies(max_rules=40), batch=st.lists(requests(), min_size=5, max_size=20))
def test_index_never_changes_a_decision_in_larger_policies(
    document: dict[str, Any], batch: list[AccessRequest]
) -> None:
    policy = parse_policy(document)
    engine = compile_policy(policy)
    for request in batch:
        assert (engine.decide(request).effect, engine.decide(request).rule) == reference.decide(
            policy, request
        )


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=policies(), request=requests())
def test_explain_agrees_with_decide(document: dict[str, Any], request: AccessRequest) -> None:
    engine = compile_policy(parse_policy(document))
    explanation = engine.explain(request, all_rules=True)
    decision = explanation.decision
    assert len(explanation.rules) == len(engine.rules)
    matched = [r for r in explanation.rules if r.applicable and r.matched]
    denies = [r.name for r in matched if r.effect is Effect.DENY]
    allows = [r.name for r in matched if r.effect is Effect.ALLOW]
    expected = (
        (Effect.DENY, denies[0])
        if denies
        else (Effect.ALLOW, allows[0])
        if allows
        else (Effect.DENY, None)
    )
    assert (decision.effect, decision.rule) == expected
    for rule in explanation.rules:
        if rule.applicable:
            assert rule.matched == all(trace.passed for trace in rule.criteria)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=policies(), request=requests())
def test_every_deny_has_a_readable_reason(document: dict[str, Any], request: AccessRequest) -> None:
    decision = compile_policy(parse_policy(document)).decide(request)
    if decision.effect is Effect.DENY:
        assert decision.reasons
        assert decision.reason.strip()
        assert decision.reasons[0].code
    else:
        assert decision.rule is not None
