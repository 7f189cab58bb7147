"""The enforcement decision path (``verity.gateway.enforce``): authenticate, gather facts,
decide, sign. Every way authentication fails is refused (401 for a bad token, 403 for a
session from another issuer, a fail-closed deny for an error), every exception later on
is a deny with reason ``internal_error``, only an allow carries identity headers, and
an allow the audit log did not acknowledge is 503 when the observer fails closed."""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from verity import assertion_companion
from verity.gateway import AssertionSigner
from verity.gateway.assertion import AssertionFacts
from verity.gateway.assertion_reuse import AssertionReuse
from verity.gateway.authn import Authenticator, SessionIssuerNotAcceptedError
from verity.gateway.enforce import (
    SESSION_ISSUER_NOT_ACCEPTED,
    Enforcer,
    Outcome,
    Subject,
    Verdict,
    header_value,
    internal_deny,
)
from verity.gateway.facts import FactQuery, Facts
from verity.gateway.headers import ClientAddress, RawHeaders
from verity.gateway.mtls import AMBIGUOUS_CREDENTIALS, CERTIFICATE_REQUIRED, PeerCertificate
from verity.gateway.settings import PathMatching, RouteConfig
from verity.identity import InvalidIssuerError, TokenError, TokenExpiredError
from verity.identity.dev import generate_private_key
from verity.model import (
    AccessRequest,
    Decision,
    Device,
    Effect,
    HttpTarget,
    Obligation,
    ObligationKind,
    Principal,
    PrincipalKind,
    Reason,
)
from verity.policy import Engine, compile_policy, load_policy
from verity.request_binding import request_binding

pytestmark = pytest.mark.anyio

POLICY = """
version: 1
rules:
  - name: public
    resources: [{paths: ["/public/**"]}]
    allow: {}
  - name: signed-in
    resources: [{paths: ["/signed-in/**"]}]
    allow: {authenticated: true}
  - name: no-admin
    deny: {paths: ["/admin/**"]}
  - name: engineers
    resources: [{paths: ["/**"]}]
    allow: {groups: [engineers]}
"""
ROUTE = RouteConfig(name="app", host="app.test", upstream="http://upstream.test",
                    issuers=("https://idp.test",))  # fmt: skip
CLIENT_IP = ipaddress.ip_address("203.0.113.9")
NOW = 1_790_000_000.0
CAROL = Principal(id="carol", email="carol@example.com", groups=frozenset({"engineers"}))
MALLORY = Principal(id="mallory", groups=frozenset({"sales"}))


@pytest.fixture(scope="module")
def engine() -> Engine:
    return compile_policy(load_policy(POLICY))


class FakeAuthenticator(Authenticator):
    """Answers every request with ``result`` (a principal, or an exception to raise)."""

    def __init__(self, result: Principal | Exception) -> None:
        super().__init__([])
        self.result = result
        self.calls: list[tuple[RawHeaders, tuple[str, ...]]] = []

    async def authenticate(self, raw: RawHeaders, accepted: Sequence[str] = ()) -> Principal:
        self.calls.append((raw, tuple(accepted)))
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


@dataclass
class StaticFacts:
    answer: Facts = field(default_factory=Facts)
    queries: list[FactQuery] = field(default_factory=list)

    async def facts(self, query: FactQuery) -> Facts:
        self.queries.append(query)
        return self.answer


class FailingFacts:
    async def facts(self, query: FactQuery) -> Facts:
        raise RuntimeError("device registry down")


class FailingSigner(AssertionSigner):
    def sign(self, principal: Principal, facts: AssertionFacts) -> str:
        raise RuntimeError("HSM unavailable")


@dataclass
class Counting:
    """A decider that counts its calls (and is not an ``Engine``)."""

    inner: Any
    seen: list[AccessRequest] = field(default_factory=list)

    def decide(self, request: AccessRequest) -> Decision:
        self.seen.append(request)
        return self.inner.decide(request)  # type: ignore[no-any-return]


class Raising:
    def decide(self, request: AccessRequest) -> Decision:
        raise RuntimeError("engine bug")


class Fixed:
    def __init__(self, decision: Decision) -> None:
        self.decision = decision

    def decide(self, request: AccessRequest) -> Decision:
        return self.decision


def subject(
    path: str = "/eng/x",
    *,
    method: str = "GET",
    route: RouteConfig = ROUTE,
    headers: RawHeaders = (),
    peer: PeerCertificate | None = None,
    bound_path: str | None = None,
) -> Subject:
    http = HttpTarget.canonical(host="app.test", method=method, path=path)
    client = ClientAddress(CLIENT_IP, None, False)
    return Subject(route, http, client, list(headers), peer, bound_path)


def make(
    signer: AssertionSigner,
    decider: Any,
    principal: Principal | Exception = CAROL,
    *,
    observer: Any = "default",
    **kwargs: Any,
) -> tuple[Enforcer, FakeAuthenticator, Any]:
    auth = FakeAuthenticator(principal)
    watcher = Recorder() if observer == "default" else observer
    enforcer = Enforcer(authenticator=auth, decider=decider, signer=signer,
                        observer=watcher, clock=lambda: NOW, **kwargs)  # fmt: skip
    return enforcer, auth, watcher


@dataclass
class Recorder:
    """An ``Observer`` that records every call; ``ack``: what audit_decision answers."""

    ack: bool = True
    fail_closed: bool = True
    verified: list[str] = field(default_factory=list)
    counted: list[tuple[AccessRequest, Decision, str, float | None]] = field(default_factory=list)
    audited: list[tuple[AccessRequest, Decision, str]] = field(default_factory=list)
    rejected: list[tuple[TokenError, object, str]] = field(default_factory=list)

    def token_verified(self, outcome: str) -> None:
        self.verified.append(outcome)

    def decided(
        self, request: AccessRequest, decision: Decision, route: str, seconds: float | None
    ) -> None:
        self.counted.append((request, decision, route, seconds))

    async def audit_decision(self, request: AccessRequest, decision: Decision, route: str) -> bool:
        self.audited.append((request, decision, route))
        return self.ack

    async def token_rejected(self, error: TokenError, *, client_ip: object, route: str) -> None:
        self.rejected.append((error, client_ip, route))


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))  # type: ignore[no-any-return]


def assert_internal_deny(outcome: Outcome) -> None:
    assert outcome.verdict is Verdict.DENIED
    assert outcome.decision is not None
    assert outcome.decision.effect is Effect.DENY
    assert outcome.decision.rule is None
    assert [r.code for r in outcome.decision.reasons] == ["internal_error"]
    assert outcome.identity_headers == ()


# --- an allow, and only an allow, carries identity headers bound to the request ---------


async def test_an_allow_carries_identity_headers_and_an_assertion_bound_to_the_request(
    signer: AssertionSigner, engine: Engine
) -> None:
    carol = Principal(id="carol ü", email="c,a@example.com",
                      groups=frozenset({"engineers", "a,b", "z z"}))  # fmt: skip
    device = Device("laptop-1", managed=True)
    facts = StaticFacts(Facts(device=device, trust_score=77, grants={"prod": NOW + 60}))
    enforcer, auth, observer = make(signer, engine, carol, fact_sources=[facts])
    outcome = await enforcer.authorize(subject("/eng/x", method="POST"))
    assert outcome.verdict is Verdict.ALLOWED
    assert outcome.decision is not None
    assert outcome.decision.rule == "engineers"
    assert outcome.principal is carol
    decision_id = outcome.decision.decision_id
    names = [name for name, _ in outcome.identity_headers]
    assert names == ["x-verity-decision-id", "x-verity-user", "x-verity-email",
                     "x-verity-groups", "x-verity-assertion"]  # fmt: skip
    headers = dict(outcome.identity_headers)
    assert headers["x-verity-decision-id"] == decision_id
    assert headers["x-verity-user"] == "carol%20%C3%BC"
    assert headers["x-verity-email"] == "c%2Ca@example.com"
    assert headers["x-verity-groups"] == "a%2Cb,engineers,z%20z"  # sorted, commas escaped
    claims = claims_of(headers["x-verity-assertion"])
    assert claims["aud"] == ROUTE.assertion_audience
    assert claims["sub"] == "carol ü"
    assert claims["decision_id"] == decision_id
    assert claims["req"] == request_binding("POST", "/eng/x")
    assert (claims["device_id"], claims["trust_score"]) == ("laptop-1", 77)
    assert auth.calls == [([], ("https://idp.test",))]  # the route's issuers
    assert observer.verified == ["ok"]
    (request, decided, route, seconds) = observer.counted[0]
    assert decided is outcome.decision
    assert route == "app"
    assert seconds is not None
    assert 0 <= seconds < 1  # the decider's own time
    assert observer.audited == [(request, outcome.decision, "app")]
    assert request.principal is carol
    assert request.time == NOW
    assert request.http == subject("/eng/x", method="POST").http
    assert request.network.ip == CLIENT_IP
    assert (request.device, request.trust_score) == (device, 77)
    assert dict(request.grants) == {"prod": NOW + 60}
    assert dict(request.context) == {"route": "app"}
    (query,) = facts.queries
    assert (query.principal, query.route, query.network.ip) == (carol, "app", CLIENT_IP)


async def test_the_assertion_binds_the_path_the_upstream_receives(
    signer: AssertionSigner, engine: Engine
) -> None:
    enforcer, _, _ = make(signer, engine)
    outcome = await enforcer.authorize(subject("/eng/x", bound_path="/base/eng/x"))
    claims = claims_of(dict(outcome.identity_headers)["x-verity-assertion"])
    assert claims["req"] == request_binding("GET", "/base/eng/x")


async def test_no_email_header_without_an_email_and_no_facts_without_sources(
    signer: AssertionSigner, engine: Engine
) -> None:
    enforcer, _, _ = make(signer, engine, Principal(id="bob", groups=frozenset({"engineers"})))
    outcome = await enforcer.authorize(subject())
    assert outcome.verdict is Verdict.ALLOWED
    headers = dict(outcome.identity_headers)
    assert "x-verity-email" not in headers
    claims = claims_of(headers["x-verity-assertion"])
    assert (claims["device_id"], claims["trust_score"]) == (None, None)


async def test_an_anonymous_allow_carries_only_the_decision_id(
    signer: AssertionSigner, engine: Engine
) -> None:
    enforcer, _, observer = make(signer, engine, Principal.anonymous())
    outcome = await enforcer.authorize(subject("/public/page"))
    assert outcome.verdict is Verdict.ALLOWED
    assert outcome.decision is not None
    assert outcome.identity_headers == (("x-verity-decision-id", outcome.decision.decision_id),)
    assert observer.verified == []  # no token was verified


async def test_a_reused_assertion_comes_with_a_companion_bound_to_this_request(
    signer: AssertionSigner, engine: Engine
) -> None:
    key = b"k" * 32
    reuse = AssertionReuse(signer, {"app": key}, clock=lambda: NOW)
    enforcer, _, _ = make(signer, engine, reuse=reuse)
    outcome = await enforcer.authorize(subject("/eng/x", bound_path="/base/eng/x"))
    assert outcome.decision is not None
    headers = dict(outcome.identity_headers)
    assert list(headers)[-1] == "x-verity-request"
    assert claims_of(headers["x-verity-assertion"])["cmp"] == 1
    companion = assertion_companion.read(key, headers["x-verity-request"])
    assert companion["did"] == outcome.decision.decision_id
    assert companion["req"] == request_binding("GET", "/base/eng/x")
    other = AssertionReuse(signer, {"other-route": key}, clock=lambda: NOW)
    enforcer, _, _ = make(signer, engine, reuse=other)
    plain = dict((await enforcer.authorize(subject())).identity_headers)
    assert "x-verity-request" not in plain
    assert "decision_id" in claims_of(plain["x-verity-assertion"])


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        ("alice", "alice"),
        ("a b", "a%20b"),
        ("a,b", "a%2Cb"),  # a group name cannot split into two
        ("x\r\nSet-Cookie: s=1", "x%0D%0ASet-Cookie:%20s=1"),  # no header injection
        ("é", "%C3%A9"),
        ("@._-+:/=~!$&'()*;", "@._-+:/=~!$&'()*;"),
        ('"<>%?#[]{}|\\^`', "%22%3C%3E%25%3F%23%5B%5D%7B%7D%7C%5C%5E%60"),
    ],
)
def test_identity_values_are_percent_encoded_for_a_header(value: str, rendered: str) -> None:
    assert header_value(value) == rendered


# --- a policy deny, and a deny that signing in could change --------------------------------


async def test_a_policy_deny_is_denied_audited_and_carries_no_identity(
    signer: AssertionSigner, engine: Engine
) -> None:
    listened: list[tuple[AccessRequest, Decision, str]] = []
    enforcer, _, observer = make(
        signer, engine, MALLORY, listeners=[lambda r, d, route: listened.append((r, d, route))]
    )
    outcome = await enforcer.authorize(subject("/eng/x"))
    assert outcome.verdict is Verdict.DENIED
    assert outcome.decision is not None
    assert outcome.decision.effect is Effect.DENY
    assert outcome.decision.policy_version == engine.version
    assert outcome.principal is MALLORY
    assert outcome.identity_headers == ()
    assert [d for _, d, _ in observer.audited] == [outcome.decision]
    assert [(d, route) for _, d, route in listened] == [(outcome.decision, "app")]


async def test_a_deny_overriding_rule_is_enforced(signer: AssertionSigner, engine: Engine) -> None:
    enforcer, _, _ = make(signer, engine)
    outcome = await enforcer.authorize(subject("/admin/users"))
    assert outcome.verdict is Verdict.DENIED
    assert outcome.decision is not None
    assert outcome.decision.rule == "no-admin"


async def test_an_anonymous_deny_that_signing_in_could_change_asks_to_authenticate(
    signer: AssertionSigner, engine: Engine
) -> None:
    enforcer, _, _ = make(signer, engine, Principal.anonymous())
    outcome = await enforcer.authorize(subject("/signed-in/x"))
    assert outcome.verdict is Verdict.UNAUTHENTICATED
    assert outcome.decision is not None
    assert outcome.decision.requires_authentication
    assert outcome.identity_headers == ()


async def test_a_signed_in_caller_is_never_asked_to_sign_in_again(signer: AssertionSigner) -> None:
    """Even a decision asking for authentication is a 403 for an authenticated caller
    (no sign-in loop)."""
    asks = Decision(Effect.DENY, None, "d1", "1", (Reason("auth", "sign in"),),
                    (Obligation(ObligationKind.AUTHENTICATE, None),))  # fmt: skip
    enforcer, _, _ = make(signer, Fixed(asks))
    outcome = await enforcer.authorize(subject())
    assert outcome.verdict is Verdict.DENIED
    enforcer, _, _ = make(signer, Fixed(asks), Principal.anonymous())
    assert (await enforcer.authorize(subject())).verdict is Verdict.UNAUTHENTICATED


# --- the audit log's acknowledgement ------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "ack", "fail_closed", "verdict"),
    [
        ("/eng/x", False, True, Verdict.UNAVAILABLE),
        ("/eng/x", False, False, Verdict.ALLOWED),
        ("/eng/x", True, True, Verdict.ALLOWED),
        ("/admin/x", False, True, Verdict.DENIED),  # a deny stays a deny
        ("/admin/x", False, False, Verdict.DENIED),
    ],
)
async def test_an_allow_the_audit_log_did_not_acknowledge_is_unavailable_when_failing_closed(
    signer: AssertionSigner, engine: Engine, path: str, ack: bool, fail_closed: bool,
    verdict: Verdict,
) -> None:  # fmt: skip
    observer = Recorder(ack=ack, fail_closed=fail_closed)
    enforcer, _, _ = make(signer, engine, observer=observer)
    outcome = await enforcer.authorize(subject(path))
    assert outcome.verdict is verdict
    assert outcome.principal is CAROL
    assert (outcome.identity_headers != ()) is (verdict is Verdict.ALLOWED)


async def test_without_an_observer_decisions_are_still_made(
    signer: AssertionSigner, engine: Engine
) -> None:
    enforcer, _, _ = make(signer, engine, observer=None)
    assert (await enforcer.authorize(subject())).verdict is Verdict.ALLOWED
    assert (await enforcer.authorize(subject("/admin/x"))).verdict is Verdict.DENIED


# --- every way authentication fails is refused -------------------------------------------


@pytest.mark.parametrize("error", [InvalidIssuerError("wrong iss"), TokenExpiredError("old")])
@pytest.mark.parametrize("observed", [True, False])
async def test_a_rejected_token_is_unauthenticated_with_its_public_reason(
    signer: AssertionSigner, engine: Engine, error: TokenError, observed: bool
) -> None:
    listened: list[Decision] = []
    observer = Recorder() if observed else None
    enforcer, _, _ = make(signer, engine, error, observer=observer,
                          listeners=[lambda r, d, route: listened.append(d)])  # fmt: skip
    outcome = await enforcer.authorize(subject("/public/x"))  # even where anyone may go
    assert outcome.verdict is Verdict.UNAUTHENTICATED
    assert outcome.decision is None
    assert outcome.principal is None
    assert outcome.identity_headers == ()
    assert outcome.error_description == error.public_message
    assert listened == []
    if observer is not None:
        assert observer.rejected == [(error, CLIENT_IP, "app")]
        assert (observer.verified, observer.counted, observer.audited) == ([], [], [])


async def test_a_session_from_an_issuer_the_route_does_not_accept_is_refused_and_audited(
    signer: AssertionSigner, engine: Engine
) -> None:
    listened: list[tuple[AccessRequest, Decision, str]] = []
    error = SessionIssuerNotAcceptedError(CAROL, "https://partner.test")
    enforcer, _, observer = make(
        signer, engine, error, listeners=[lambda r, d, route: listened.append((r, d, route))]
    )
    outcome = await enforcer.authorize(subject("/public/x"))
    assert outcome.verdict is Verdict.DENIED
    assert outcome.decision is not None
    assert outcome.decision.effect is Effect.DENY
    assert outcome.decision.rule is None
    assert outcome.decision.reasons == (SESSION_ISSUER_NOT_ACCEPTED,)
    assert outcome.identity_headers == ()
    (request, decision, route, seconds) = observer.counted[0]
    assert (decision, route, seconds) == (outcome.decision, "app", None)
    assert observer.audited == [(request, outcome.decision, "app")]
    assert listened == [(request, outcome.decision, "app")]
    assert request.principal is CAROL  # audited with who it was
    assert (request.time, request.network.ip, dict(request.context)) == (
        NOW, CLIENT_IP, {"route": "app"},
    )  # fmt: skip
    assert request.http == subject("/public/x").http
    assert SESSION_ISSUER_NOT_ACCEPTED.code == "session.issuer_not_accepted"
    assert SESSION_ISSUER_NOT_ACCEPTED.message == (
        "access denied: you signed in through an identity provider this application does not accept"
    )
    assert SESSION_ISSUER_NOT_ACCEPTED.hint == (
        "sign out, then sign in with a provider this application accepts"
    )


@pytest.mark.parametrize("observed", [True, False])
async def test_an_error_while_authenticating_fails_closed(
    signer: AssertionSigner, engine: Engine, observed: bool
) -> None:
    observer = Recorder() if observed else None
    enforcer, _, _ = make(signer, engine, RuntimeError("db down"), observer=observer)
    outcome = await enforcer.authorize(subject("/public/x"))
    assert_internal_deny(outcome)
    assert outcome.principal is None
    if observer is not None:
        assert observer.verified == ["error"]
        (request, decision, route, seconds) = observer.counted[0]
        assert (decision, route, seconds) == (outcome.decision, "app", None)
        assert observer.audited == [(request, outcome.decision, "app")]
        assert not request.principal.authenticated
        assert (request.time, request.network.ip) == (NOW, CLIENT_IP)
        assert request.http == subject("/public/x").http


# --- every error after authentication fails closed ---------------------------------------


@pytest.mark.parametrize("stage", ["facts", "decider", "listener", "signer"])
async def test_an_error_after_authentication_is_a_deny_audited_with_the_principal(
    signer: AssertionSigner, engine: Engine, stage: str
) -> None:
    def boom(request: AccessRequest, decision: Decision, route: str) -> None:
        raise RuntimeError("listener bug")

    kwargs: dict[str, Any] = {
        "facts": {"fact_sources": [FailingFacts()]},
        "decider": {},
        "listener": {"listeners": [boom]},
        "signer": {},
    }[stage]
    decider: Any = Raising() if stage == "decider" else engine
    enforcer, _, observer = make(signer, decider, **kwargs)
    if stage == "signer":
        enforcer.signer = FailingSigner(generate_private_key("ES256"), issuer="https://gw.test")  # type: ignore[arg-type]
    outcome = await enforcer.authorize(subject("/eng/x"))
    assert_internal_deny(outcome)
    assert outcome.decision is not None
    assert observer.verified == ["ok"]  # not an identity error
    request, decision, route, seconds = observer.counted[-1]
    assert (decision, route, seconds) == (outcome.decision, "app", None)
    assert observer.audited[-1] == (request, outcome.decision, "app")
    assert request.principal is CAROL


async def test_without_an_observer_an_error_after_authentication_still_denies(
    signer: AssertionSigner,
) -> None:
    enforcer, _, _ = make(signer, Raising(), observer=None)
    assert_internal_deny(await enforcer.authorize(subject()))


def test_internal_deny_names_no_rule_and_says_why() -> None:
    first, second = internal_deny("v3"), internal_deny()
    assert (first.effect, first.rule, first.policy_version) == (Effect.DENY, None, "v3")
    assert second.policy_version == ""
    assert first.decision_id != second.decision_id
    (reason,) = first.reasons
    assert (reason.code, reason.message) == (
        "internal_error", "access denied: internal error while deciding",
    )  # fmt: skip


# --- client certificates (mtls routes) ----------------------------------------------------

WORKLOAD = Principal(id="spiffe://corp.test/ci", kind=PrincipalKind.SERVICE,
                     groups=frozenset({"engineers"}))  # fmt: skip
MTLS_REQUIRED = RouteConfig(name="app", host="app.test", upstream="http://u.test", mtls="required")
MTLS_OPTIONAL = RouteConfig(name="app", host="app.test", upstream="http://u.test", mtls="optional")


async def test_a_workload_certificate_is_the_identity_on_an_mtls_route(
    signer: AssertionSigner, engine: Engine
) -> None:
    enforcer, auth, observer = make(signer, engine, MALLORY)
    outcome = await enforcer.authorize(
        subject(route=MTLS_REQUIRED, peer=PeerCertificate(principal=WORKLOAD))
    )
    assert outcome.verdict is Verdict.ALLOWED
    assert outcome.principal is WORKLOAD
    assert auth.calls == []  # the token path is not used
    assert observer.verified == []
    denied = await enforcer.authorize(
        subject("/admin/x", route=MTLS_REQUIRED, peer=PeerCertificate(principal=WORKLOAD))
    )
    assert denied.verdict is Verdict.DENIED
    assert denied.principal is WORKLOAD


@pytest.mark.parametrize(
    ("route", "peer", "headers", "reason"),
    [
        (MTLS_REQUIRED, None, [], CERTIFICATE_REQUIRED),
        (MTLS_OPTIONAL, PeerCertificate(), [], CERTIFICATE_REQUIRED),
        (MTLS_OPTIONAL, PeerCertificate(principal=WORKLOAD),
         [(b"authorization", b"Bearer x")], AMBIGUOUS_CREDENTIALS),
    ],
)  # fmt: skip
async def test_an_unacceptable_certificate_is_refused_and_audited(
    signer: AssertionSigner, engine: Engine, route: RouteConfig, peer: PeerCertificate | None,
    headers: RawHeaders, reason: Reason,
) -> None:  # fmt: skip
    enforcer, auth, observer = make(signer, engine)
    outcome = await enforcer.authorize(subject("/public/x", route=route, peer=peer,
                                               headers=headers))  # fmt: skip
    assert outcome.verdict is Verdict.DENIED
    assert outcome.decision is not None
    assert outcome.decision.reasons == (reason,)
    assert auth.calls == []
    (request, decision, _, _) = observer.counted[0]
    assert decision is outcome.decision
    assert not request.principal.authenticated
    assert observer.audited == [(request, outcome.decision, "app")]


async def test_no_certificate_on_an_optional_route_uses_the_token(
    signer: AssertionSigner, engine: Engine
) -> None:
    enforcer, auth, _ = make(signer, engine, MALLORY)
    outcome = await enforcer.authorize(subject(route=MTLS_OPTIONAL))
    assert outcome.verdict is Verdict.DENIED
    assert outcome.principal is MALLORY
    assert len(auth.calls) == 1
    enforcer, _, _ = make(signer, engine, InvalidIssuerError("x"))
    rejected = await enforcer.authorize(subject(route=MTLS_OPTIONAL))
    assert rejected.verdict is Verdict.UNAUTHENTICATED


async def test_an_error_reading_the_certificate_fails_closed(
    signer: AssertionSigner, engine: Engine
) -> None:
    enforcer, auth, observer = make(signer, engine)
    broken: Any = [b"not a pair"]  # iterating the headers raises
    outcome = await enforcer.authorize(
        subject(route=MTLS_OPTIONAL, peer=PeerCertificate(principal=WORKLOAD), headers=broken)
    )
    assert_internal_deny(outcome)
    assert observer.verified == ["error"]
    assert auth.calls == []


async def test_an_error_after_a_certificate_identified_the_caller_fails_closed(
    signer: AssertionSigner,
) -> None:
    enforcer, _, observer = make(signer, Raising())
    outcome = await enforcer.authorize(
        subject(route=MTLS_REQUIRED, peer=PeerCertificate(principal=WORKLOAD))
    )
    assert_internal_deny(outcome)
    assert observer.verified == []
    assert observer.audited[0][0].principal is WORKLOAD


# --- path_matching.case -------------------------------------------------------------------


def route_with_case(case: str) -> RouteConfig:
    return RouteConfig(name="app", host="app.test", upstream="http://u.test",
                       path_matching=PathMatching(case=case))  # type: ignore[arg-type]  # fmt: skip


async def test_an_upper_case_path_is_denied_when_its_lower_cased_form_is_denied(
    signer: AssertionSigner, engine: Engine
) -> None:
    counting = Counting(engine)
    enforcer, _, observer = make(signer, counting)
    outcome = await enforcer.authorize(subject("/ADMIN/users", route=route_with_case("consistent")))
    assert outcome.verdict is Verdict.DENIED
    decision = outcome.decision
    assert decision is not None
    assert decision.rule == "no-admin"
    why, *rest = decision.reasons
    assert why.code == "path.case_ambiguous"
    assert why.rule == "no-admin"
    assert why.message == (
        "An upstream that ignores case reads this path as /admin/users, which is not "
        "allowed for you."
    )
    assert why.hint == ("Use the path in its usual (lower-case) spelling, or ask for access to it.")
    assert [r.code for r in rest] == ["rule.deny"]
    assert [r.http.path for r in counting.seen if r.http] == ["/ADMIN/users", "/admin/users"]
    assert observer.audited[0][1] is decision
    assert outcome.identity_headers == ()


async def test_an_upper_case_path_stays_allowed_when_its_lower_cased_form_is_allowed(
    signer: AssertionSigner, engine: Engine
) -> None:
    counting = Counting(engine)
    enforcer, _, _ = make(signer, counting)
    outcome = await enforcer.authorize(subject("/Eng/X", route=route_with_case("consistent")))
    assert outcome.verdict is Verdict.ALLOWED
    assert outcome.decision is not None
    assert outcome.decision.reasons == ()
    assert [r.http.path for r in counting.seen if r.http] == ["/Eng/X", "/eng/x"]


@pytest.mark.parametrize(
    ("case", "path", "decided"),
    [
        ("sensitive", "/ADMIN/users", ["/ADMIN/users"]),
        ("consistent", "/eng/x", ["/eng/x"]),  # already lower-case: decided once
        ("consistent", "/ENG/x", ["/ENG/x", "/eng/x"]),
    ],
)
async def test_a_path_is_decided_as_sent_unless_case_could_change_it(
    signer: AssertionSigner, engine: Engine, case: str, path: str, decided: list[str]
) -> None:
    counting = Counting(engine)
    enforcer, _, _ = make(signer, counting)
    outcome = await enforcer.authorize(subject(path, route=route_with_case(case)))
    assert outcome.verdict is Verdict.ALLOWED
    assert [r.http.path for r in counting.seen if r.http] == decided


async def test_a_denied_path_is_not_decided_again_in_lower_case(
    signer: AssertionSigner, engine: Engine
) -> None:
    counting = Counting(engine)
    enforcer, _, _ = make(signer, counting, MALLORY)
    outcome = await enforcer.authorize(subject("/ENG/x", route=route_with_case("consistent")))
    assert outcome.verdict is Verdict.DENIED
    assert len(counting.seen) == 1


# --- what the operator's log says ---------------------------------------------------------


async def test_each_refusal_is_logged_for_the_operator(
    signer: AssertionSigner, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="verity.gateway")
    enforcer, _, _ = make(signer, engine, InvalidIssuerError("iss 'x' unknown"))
    await enforcer.authorize(subject())
    enforcer, _, _ = make(signer, engine, SessionIssuerNotAcceptedError(CAROL, "https://p"))
    refused = await enforcer.authorize(subject())
    enforcer, _, _ = make(signer, Raising())
    failed = await enforcer.authorize(subject())
    assert refused.decision is not None
    assert failed.decision is not None
    records = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert records == [
        ("verity.gateway", "INFO", "401 route=app: token rejected (bad_issuer): iss 'x' unknown"),
        ("verity.gateway", "INFO",
         f"403 route=app: session.issuer_not_accepted (decision {refused.decision.decision_id})"),
        ("verity.gateway", "ERROR",
         f"fail closed: decision error on route app (decision {failed.decision.decision_id})"),
    ]  # fmt: skip
    assert caplog.records[-1].exc_info is not None  # with the exception's traceback


async def test_an_outcome_cannot_be_changed_after_the_decision(
    signer: AssertionSigner, engine: Engine
) -> None:
    enforcer, _, _ = make(signer, engine, MALLORY)
    outcome = await enforcer.authorize(subject())
    with pytest.raises(dataclasses.FrozenInstanceError):
        outcome.verdict = Verdict.ALLOWED  # type: ignore[misc]


async def test_an_error_after_a_certificate_identified_the_caller_is_logged(
    signer: AssertionSigner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="verity.gateway")
    enforcer, _, _ = make(signer, Raising())
    outcome = await enforcer.authorize(
        subject(route=MTLS_REQUIRED, peer=PeerCertificate(principal=WORKLOAD))
    )
    assert outcome.decision is not None
    assert [r.getMessage() for r in caplog.records] == [
        f"fail closed: decision error on route app (decision {outcome.decision.decision_id})"
    ]
