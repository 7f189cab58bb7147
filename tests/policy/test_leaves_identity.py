"""Identity criteria (signed in, users, services, groups, roles, claims, MFA, sign-in
methods and age): allow/deny at each boundary and one past it, ``explain`` agreeing with
``decide`` on every criterion (``leaves.judge``), and the words a denied person reads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from verity.model import AccessRequest, Obligation, ObligationKind, Principal, PrincipalKind

from .leaves import NO_RULE_HINT, denial, judge, no_rule, trace

T = datetime.fromisoformat("2025-11-24T10:00:00+00:00").timestamp()
ANONYMOUS = Principal(id="", kind=PrincipalKind.ANONYMOUS)


def who(**fields: Any) -> AccessRequest:
    values: dict[str, Any] = {"id": "u1", **fields}
    return AccessRequest(principal=Principal(**values), time=T)


def anonymous() -> AccessRequest:
    return AccessRequest(principal=ANONYMOUS, time=T)


def the_reason(criteria: dict[str, Any], request: AccessRequest) -> Any:
    """The reason of a signed-in caller's denial (the only one)."""
    (reason,) = denial(criteria, request).reasons
    return reason


# --- signed in or anonymous ---------------------------------------------------------


def test_authenticated_holds_for_users_and_services_not_anonymous_callers() -> None:
    assert judge({"authenticated": True}, who())
    assert judge({"authenticated": True}, who(kind=PrincipalKind.SERVICE))
    assert not judge({"authenticated": True}, anonymous())
    assert judge({"authenticated": False}, anonymous())
    assert not judge({"authenticated": False}, who())
    assert not judge({"authenticated": False}, who(kind=PrincipalKind.SERVICE))


def test_authenticated_words() -> None:
    seen = trace({"authenticated": True}, anonymous())
    assert (seen.code, seen.expected, seen.observed) == (
        "principal.authenticated",
        "a signed-in caller",
        "not signed in",
    )
    reasons = denial({"authenticated": True}, anonymous()).reasons
    assert [r.code for r in reasons] == ["authentication_required", "principal.authenticated"]
    assert reasons[1].hint == "sign in"
    seen = trace({"authenticated": False}, who(email="ada@example.com"))
    assert (seen.expected, seen.observed) == ("an anonymous caller", "ada@example.com")
    assert trace({"authenticated": False}, who()).observed == "u1"
    assert the_reason({"authenticated": False}, who()).message == no_rule(
        "requires an anonymous caller (observed: u1)"
    )


# --- groups, roles, sign-in methods -------------------------------------------------

MEMBERSHIP = [
    # (criterion, principal attribute, noun, code, hint)
    ("groups", "groups", "group", "principal.groups",
     "ask your administrator to add you to the group eng or ops if your work needs it"),
    ("roles", "roles", "role", "principal.roles",
     "ask your administrator for the role eng or ops if your work needs it"),
    ("auth_methods", "auth_methods", "sign-in method", "auth.methods",
     "sign in again with an accepted method"),
]  # fmt: skip


@pytest.mark.parametrize(("key", "attribute", "noun", "code", "hint"), MEMBERSHIP)
def test_membership_holds_when_any_one_listed_value_is_held(
    key: str, attribute: str, noun: str, code: str, hint: str
) -> None:
    for wanted in (["a"], ["a", "b"], ["a", "b", "c"]):
        criteria = {key: wanted}
        assert judge(criteria, who(**{attribute: {"a"}}))
        assert judge(criteria, who(**{attribute: {wanted[-1], "z"}}))
        assert not judge(criteria, who(**{attribute: {"z"}}))
        assert not judge(criteria, who(**{attribute: {"A"}}))
        assert not judge(criteria, who())
        assert not judge(criteria, anonymous())


@pytest.mark.parametrize(("key", "attribute", "noun", "code", "hint"), MEMBERSHIP)
def test_membership_words(key: str, attribute: str, noun: str, code: str, hint: str) -> None:
    criteria = {key: ["ops", "eng"]}
    denied = denial(criteria, who(**{attribute: {"z", "fin"}}))
    (reason,) = denied.reasons
    assert reason.code == code
    assert reason.message == f"requires {noun} eng or ops (you have: fin, z)"
    assert reason.hint == hint
    obligation = key == "auth_methods"
    assert denied.obligations == (
        (Obligation(ObligationKind.STEP_UP_MFA, "rule"),) if obligation else ()
    )
    seen = trace(criteria, who())
    assert (seen.code, seen.expected, seen.observed) == (code, f"{noun} eng or ops", "(none)")


# --- users and services -------------------------------------------------------------

USERS = {"users": ["alice", "bob@example.com"]}


def test_users_match_the_id_or_the_email() -> None:
    assert judge(USERS, who(id="alice"))
    assert judge(USERS, who(id="alice", email="other@example.com"))
    assert judge(USERS, who(id="b-77", email="bob@example.com"))
    assert not judge(USERS, who(id="b-77", email="carol@example.com"))
    assert not judge(USERS, who(id="Alice"))
    assert not judge(USERS, who(id="bob"))
    assert not judge(USERS, anonymous())


def test_users_words() -> None:
    reason = the_reason(USERS, who(id="c-1", email="carol@example.com"))
    assert reason.code == "no_matching_rule"  # a person cannot change who they are
    assert reason.message == no_rule("carol@example.com is not among the users this rule allows")
    assert reason.hint == NO_RULE_HINT
    seen = trace(USERS, who(id="c-1"))
    assert (seen.expected, seen.observed) == ("user alice or bob@example.com", "c-1")
    assert the_reason(USERS, who(id="c-1")).message == no_rule(
        "c-1 is not among the users this rule allows"
    )


SERVICES = {"services": ["spiffe://corp/ns/*/sa/web", "spiffe://corp/jobs/**"]}


@pytest.mark.parametrize(
    ("spiffe_id", "allowed"),
    [
        ("spiffe://corp/ns/prod/sa/web", True),
        ("spiffe://corp/ns/prod/sa/web-evil", False),  # a pattern matches whole IDs only
        ("spiffe://corp/ns/prod/extra/sa/web", False),  # '*' is one segment
        ("spiffe://corp/ns/prod/sa/db", False),
        ("spiffe://corp/jobs/nightly/backup", True),  # the second pattern
        ("spiffe://corp/jobs", True),
        ("spiffe://corp/jobsx/nightly", False),
        ("spiffe://other/jobs/nightly", False),
        ("xspiffe://corp/jobs/nightly", False),
        (None, False),
    ],
)
def test_service_identity_matches_one_of_the_patterns_whole(
    spiffe_id: str | None, allowed: bool
) -> None:
    request = who(kind=PrincipalKind.SERVICE, spiffe_id=spiffe_id)
    assert judge(SERVICES, request) is allowed
    assert judge({"services": [SERVICES["services"][1]]}, request) is (
        allowed and spiffe_id is not None and "/jobs" in spiffe_id
    )


def test_service_words() -> None:
    reason = the_reason(SERVICES, who(kind=PrincipalKind.SERVICE, spiffe_id="spiffe://x/y"))
    assert reason.code == "no_matching_rule"
    assert reason.message == no_rule(
        "requires service identity spiffe://corp/ns/*/sa/web or spiffe://corp/jobs/**"
        " (observed: spiffe://x/y)"
    )
    assert reason.hint == NO_RULE_HINT
    assert trace(SERVICES, who()).observed == "(no service identity)"


# --- claims -------------------------------------------------------------------------

CLAIM = {"claims": {"dept": ["eng", 7]}}


@pytest.mark.parametrize(
    ("claims", "allowed"),
    [
        ({"dept": "eng"}, True),
        ({"dept": 7}, True),
        ({"dept": "fin"}, False),
        ({"dept": "en"}, False),  # not a substring test
        ({"dept": "engx"}, False),
        ({"dept": ["fin", "eng"]}, True),  # a list claim holds when it contains a value
        ({"dept": ["fin", "ops"]}, False),
        ({"dept": []}, False),
        ({"dept": 7.0}, True),
        ({"dept": "7"}, False),
        ({"other": "eng"}, False),
        ({}, False),
    ],
)
def test_claim_equals_or_contains_an_accepted_value(claims: dict[str, Any], allowed: bool) -> None:
    assert judge(CLAIM, who(claims=claims)) is allowed


def test_claim_booleans_never_equal_numbers() -> None:
    assert not judge({"claims": {"level": 1}}, who(claims={"level": True}))
    assert not judge({"claims": {"level": True}}, who(claims={"level": 1}))
    assert judge({"claims": {"level": True}}, who(claims={"level": True}))
    assert not judge({"claims": {"level": True}}, who(claims={"level": [1]}))


def test_a_nested_claim_is_read_along_its_path() -> None:
    criteria = {"claims": {"org.unit": "red"}}
    assert judge(criteria, who(claims={"org": {"unit": "red"}}))
    assert not judge(criteria, who(claims={"org": {"unit": "blue"}}))
    assert not judge(criteria, who(claims={"org": "red"}))
    assert not judge(criteria, who(claims={"org.unit": "red"}))
    assert judge({"claims": {"org\\.unit": "red"}}, who(claims={"org.unit": "red"}))


def test_claim_words() -> None:
    reason = the_reason(CLAIM, who(claims={"dept": "fin"}))
    assert reason.code == "principal.claim"
    assert reason.message == "requires claim dept = eng or 7 (observed: fin)"
    assert reason.hint == (
        "ask your administrator to set dept=eng or dept=7 on your account if your work needs it"
    )
    assert trace(CLAIM, who()).observed == "(absent)"
    assert trace({"claims": {"org.unit": "red"}}, who()).expected == "claim org.unit = red"


# --- MFA ----------------------------------------------------------------------------


def test_mfa_holds_exactly_when_the_sign_in_used_it() -> None:
    assert judge({"mfa": True}, who(mfa=True))
    assert not judge({"mfa": True}, who(mfa=False))
    assert judge({"mfa": False}, who(mfa=False))
    assert not judge({"mfa": False}, who(mfa=True))
    assert not judge({"mfa": True}, anonymous())


def test_missing_mfa_asks_for_the_second_factor() -> None:
    decision = denial({"mfa": True}, who())
    (reason,) = decision.reasons
    assert reason.code == "auth.mfa"
    assert reason.message == "multi-factor authentication is required"
    assert reason.hint == "sign in again with your second factor"
    assert decision.obligations == (Obligation(ObligationKind.STEP_UP_MFA, "rule"),)
    seen = trace({"mfa": True}, who())
    assert (seen.expected, seen.observed) == ("multi-factor sign-in", "no MFA")


def test_a_rule_for_sign_ins_without_mfa_asks_for_nothing() -> None:
    decision = denial({"mfa": False}, who(mfa=True))
    (reason,) = decision.reasons
    assert reason.message == no_rule("this rule applies only to sign-ins without MFA")
    assert reason.hint == NO_RULE_HINT
    assert decision.obligations == ()
    seen = trace({"mfa": False}, who(mfa=True))
    assert (seen.expected, seen.observed) == ("a sign-in without MFA", "MFA")


# --- sign-in and MFA age ------------------------------------------------------------

AGES = [
    # (criterion, stamp field, the other stamp field)
    ({"max_auth_age": 3600}, "auth_time", "mfa_time"),
    ({"mfa_max_age": "15m"}, "mfa_time", "auth_time"),
]


@pytest.mark.parametrize(("criteria", "stamp", "other"), AGES)
def test_age_holds_up_to_the_limit_and_a_minute_of_clock_skew(
    criteria: dict[str, Any], stamp: str, other: str
) -> None:
    limit = 3600 if stamp == "auth_time" else 900
    for age, allowed in [
        (0, True),
        (limit, True),  # exactly the limit
        (limit - 0.5, True),
        (limit + 0.5, False),
        (limit + 1, False),  # one second past
        (-60, True),  # stamped a minute in the future: tolerated skew
        (-59.5, True),
        (-60.5, False),
        (-61, False),
        (-3600, False),
    ]:
        request = who(mfa=True, **{stamp: T - age, other: T})
        assert judge(criteria, request) is allowed, age
    assert not judge(criteria, who(mfa=True, **{other: T}))  # never stamped
    assert not judge(criteria, anonymous())


def test_sign_in_age_asks_to_sign_in_again() -> None:
    criteria = {"max_auth_age": "1h"}
    decision = denial(criteria, who(auth_time=T - 7200, mfa_time=T))
    (reason,) = decision.reasons
    assert reason.code == "auth.auth_age"
    assert reason.message == "requires a sign-in within the last 1h (last: 2h ago)"
    assert reason.hint == "sign in again"
    assert decision.obligations == (Obligation(ObligationKind.REAUTHENTICATE, "rule"),)
    assert trace(criteria, who()).observed == "never"


def test_mfa_age_asks_for_the_second_factor_again() -> None:
    criteria = {"mfa_max_age": "15m"}
    decision = denial(criteria, who(mfa=True, mfa_time=T - 961, auth_time=T))
    (reason,) = decision.reasons
    assert reason.code == "auth.mfa_age"
    assert reason.message == "requires a MFA within the last 15m (last: 961s ago)"
    assert reason.hint == "sign in again with your second factor"
    assert decision.obligations == (Obligation(ObligationKind.STEP_UP_MFA, "rule"),)


@pytest.mark.parametrize(
    ("limit", "text"),
    [(59, "59s"), (60, "1m"), (61, "61s"), (90, "90s"), (3540, "59m"), (3600, "1h"),
     (5400, "90m"), (7200, "2h"), (86340, "1439m"), (86400, "1d"), (90000, "25h"),
     (172800, "2d"), ("7d", "7d")],
)  # fmt: skip
def test_age_limits_are_written_in_their_largest_whole_unit(limit: int | str, text: str) -> None:
    seen = trace({"max_auth_age": limit}, who(auth_time=T))
    assert (seen.code, seen.expected) == ("auth.auth_age", f"sign-in within the last {text}")
    assert seen.observed == "0s ago"


@pytest.mark.parametrize(
    ("age", "text"),
    [(1, "1s ago"), (60, "1m ago"), (3600, "1h ago"), (86400, "1d ago"), (-60, "-1m ago"),
     (-30, "-30s ago"), (-3600, "-1h ago"), (90.9, "90s ago")],
)  # fmt: skip
def test_the_last_sign_in_is_described_by_its_age(age: float, text: str) -> None:
    seen = trace({"mfa_max_age": "15m"}, who(mfa_time=T - age, auth_time=T - 5))
    assert seen.observed == text
    assert seen.expected == "MFA within the last 15m"
