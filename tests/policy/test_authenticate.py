"""The ``authenticate`` outcome: a caller who is not signed in and is denied because no
rule allows them, or by a deny rule about identity, is told to sign in (reason
``authentication_required``, obligation ``authenticate``), not "forbidden" with an
authorization reason; a signed-in caller gets the normal reason."""

from __future__ import annotations

import pytest

from verity.model import (
    AccessRequest,
    Decision,
    HttpTarget,
    NetworkContext,
    ObligationKind,
    Principal,
    parse_ip,
)
from verity.policy import Engine, compile_policy, load_policy

POLICY = """
access_levels:
  staff: {groups: [staff]}
rules:
  - name: sanctioned
    deny: {regions: [KP]}
  - name: blocked-network
    resources: [{host: app.test}]
    deny: {ip: [198.51.100.0/24]}
  - name: staff-only-admin
    resources: [{host: app.test, paths: ["/admin/**"]}]
    deny: {not: {levels: [staff]}}
  - name: payroll-needs-claim
    resources: [{host: app.test, paths: ["/payroll/**"]}]
    deny: {when: "!('payroll' in principal.roles)"}
  - name: engineers
    resources: [{host: app.test}]
    allow: {roles: [engineer]}
  - name: broken
    resources: [{host: broken.test}]
    allow: {when: "principal.claims.level > 3"}
  - name: broken-request
    resources: [{host: broken-request.test}]
    allow: {when: "request.http.headers['x-level'] > 3"}
"""


@pytest.fixture(scope="module")
def engine() -> Engine:
    return compile_policy(load_policy(POLICY))


def _request(principal: Principal, path: str = "/", host: str = "app.test",
             ip: str = "203.0.113.5", region: str = "DE") -> AccessRequest:  # fmt: skip
    return AccessRequest(
        principal=principal, time=0, http=HttpTarget(host=host, path=path),
        network=NetworkContext(parse_ip(ip), region),
    )  # fmt: skip


ANONYMOUS = Principal.anonymous()
SALES = Principal(id="bob", roles=frozenset({"sales"}))


def _asks_to_sign_in(decision: Decision) -> None:
    assert not decision.allowed
    assert decision.requires_authentication
    first = decision.reasons[0]
    assert first.code == "authentication_required"
    assert "not signed in" in first.message
    assert first.hint == "sign in"
    assert [o.kind for o in decision.obligations] == [ObligationKind.AUTHENTICATE]


def test_unauthenticated_request_denied_by_an_allow_miss_gets_authentication_required(
    engine: Engine,
) -> None:
    decision = engine.decide(_request(ANONYMOUS))
    _asks_to_sign_in(decision)
    assert "requires role" not in decision.reason
    # the authorization reason stays in the decision, for explanations
    assert decision.reasons[1].code == "principal.roles"
    assert decision.reasons[1].message == "requires role engineer (you have: (none))"


def test_unauthenticated_request_matching_no_rule_gets_authentication_required(
    engine: Engine,
) -> None:
    _asks_to_sign_in(engine.decide(_request(ANONYMOUS, host="other.test")))


@pytest.mark.parametrize("path", ["/admin/users", "/payroll/2026"])
def test_unauthenticated_request_denied_by_an_identity_deny_rule_gets_authentication_required(
    engine: Engine, path: str
) -> None:
    decision = engine.decide(_request(ANONYMOUS, path=path))
    _asks_to_sign_in(decision)
    assert decision.rule in ("staff-only-admin", "payroll-needs-claim")


def test_signed_in_caller_gets_the_authorization_reason_not_authentication(
    engine: Engine,
) -> None:
    decision = engine.decide(_request(SALES))
    assert not decision.requires_authentication
    assert decision.reason == "requires role engineer (you have: sales)"
    admin = engine.decide(_request(SALES, path="/admin/x"))
    assert admin.rule == "staff-only-admin"
    assert not admin.requires_authentication


@pytest.mark.parametrize(
    ("ip", "region", "rule"),
    [("198.51.100.7", "DE", "blocked-network"), ("203.0.113.5", "KP", "sanctioned")],
)
def test_unauthenticated_request_denied_for_its_network_is_forbidden_not_sent_to_sign_in(
    engine: Engine, ip: str, region: str, rule: str
) -> None:
    decision = engine.decide(_request(ANONYMOUS, ip=ip, region=region))
    assert decision.rule == rule
    assert not decision.requires_authentication
    assert decision.reasons[0].code == "rule.deny"


def test_an_identity_rule_an_anonymous_caller_cannot_be_judged_by_sends_it_to_sign_in(
    engine: Engine,
) -> None:
    """``principal.claims.level`` cannot be read without a principal: signing in could
    change the outcome, so the anonymous caller is sent to sign in (not a dead-end 403);
    the signed-in caller whose claim is wrong keeps the error (no sign-in loop)."""
    signed_in = engine.decide(
        _request(Principal(id="u", claims={"level": "x"}), host="broken.test")
    )
    assert signed_in.reasons[0].code == "rule.error"
    assert not signed_in.requires_authentication
    anonymous = engine.decide(_request(ANONYMOUS, host="broken.test"))
    assert not anonymous.allowed
    assert anonymous.requires_authentication
    assert [r.code for r in anonymous.reasons[:2]] == ["authentication_required", "rule.error"]


def test_evaluation_errors_about_the_request_alone_stay_errors_for_unauthenticated_callers(
    engine: Engine,
) -> None:
    anonymous = engine.decide(_request(ANONYMOUS, host="broken-request.test"))
    assert not anonymous.allowed
    assert anonymous.reasons[0].code == "rule.error"
    assert not anonymous.requires_authentication


def test_allow_for_unauthenticated_callers_is_unchanged() -> None:
    engine = compile_policy(load_policy("rules: [{name: open, allow: {}}]"))
    decision = engine.decide(_request(ANONYMOUS))
    assert decision.allowed
    assert decision.obligations == ()


def test_explain_shows_the_authenticate_outcome(engine: Engine) -> None:
    explanation = engine.explain(_request(ANONYMOUS))
    assert explanation.decision.requires_authentication
    assert [r.name for r in explanation.rules if not r.matched][-1] == "engineers"
