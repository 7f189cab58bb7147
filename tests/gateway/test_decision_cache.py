"""The node's decision cache: reused only for a request whose every input is the same,
never past a revocation, a grant or posture change, or a policy reload on the node, and
every request still gets its own decision id and audit event."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from verity import invalidation
from verity.config import StoreConfig
from verity.gateway import AssertionSigner
from verity.gateway.authn import Authenticator
from verity.gateway.decision_cache import DecisionCache, principal_key
from verity.gateway.device_facts import DeviceFacts
from verity.gateway.enforce import Enforcer, Outcome, Subject, Verdict
from verity.gateway.facts import FactQuery, Facts
from verity.gateway.grant_facts import GrantFacts
from verity.gateway.headers import ClientAddress
from verity.gateway.settings import RouteConfig
from verity.identity import IssuerConfig, TokenError, TokenVerifier, keyset_from_jwks
from verity.identity.dev import public_jwk
from verity.identity.oidc import LoginConfig
from verity.identity.oidc.cookies import CookieSigner
from verity.identity.oidc.sessions import SessionManager
from verity.identity.revocation_sync import RevocationSync
from verity.model import AccessRequest, Decision, Device, Effect, HttpTarget, Principal
from verity.policy import LivePolicy, compile_policy, load_policy
from verity.store import open_stores
from verity.store.records import Revocation, RevocationKind

from .conftest import AUDIENCE, ISSUER, Issuer

pytestmark = pytest.mark.anyio

POLICY = """
version: 1
rules:
  - name: read-docs
    resources: [{host: app.test, methods: [GET], paths: ["/docs/**"]}]
    allow: {groups: [engineers]}
  - name: db-with-jit
    resources: [{host: app.test, paths: ["/db/**"]}]
    allow: {jit: prod-db}
  - name: managed-laptops
    resources: [{host: app.test, paths: ["/laptop/**"]}]
    allow: {device: {managed: true}}
  - name: trusted
    resources: [{host: app.test, paths: ["/trusted/**"]}]
    allow: {min_trust: 60}
  - name: office
    resources: [{host: app.test, paths: ["/office/**"]}]
    allow: {ip: [10.0.0.0/8]}
  - name: blue-team
    resources: [{host: app.test, paths: ["/blue/**"]}]
    allow: {headers: {x-team: ["blue"]}}
"""
DENY_ALL = """
version: 1
rules:
  - name: nobody
    resources: [{host: other.test}]
    allow: {}
"""
ROUTE = RouteConfig(name="app", host="app.test", upstream="http://upstream.test")


class Clock:
    """A settable clock (UNIX seconds)."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))  # a whole second: entries end at the next one

    def __call__(self) -> float:
        return self.now


@dataclass
class RecordingObserver:
    """Records every decision counted and audited."""

    audited: list[tuple[AccessRequest, Decision]] = field(default_factory=list)
    counted: list[str] = field(default_factory=list)
    fail_closed: bool = True

    def token_verified(self, outcome: str) -> None:
        pass

    def decided(
        self, request: AccessRequest, decision: Decision, route: str, seconds: float | None
    ) -> None:
        self.counted.append(decision.decision_id)

    async def audit_decision(self, request: AccessRequest, decision: Decision, route: str) -> bool:
        self.audited.append((request, decision))
        return True

    async def token_rejected(self, error: TokenError, *, client_ip: object, route: str) -> None:
        pass


@dataclass
class MutableFacts:
    """A fact source whose answers a test changes (grants, device, trust score)."""

    answer: Facts = field(default_factory=Facts)
    on_query: Any = None

    async def facts(self, query: FactQuery) -> Facts:
        if self.on_query is not None:
            self.on_query()
        return self.answer


@pytest.fixture
def verifier(issuer: Issuer) -> TokenVerifier:
    """A verifier of this test's own (revocations must not leak into other tests)."""
    jwks = {"keys": [public_jwk(issuer.key, "ES256", issuer.kid)]}
    config = IssuerConfig(issuer=ISSUER, audiences=[AUDIENCE], algorithms=("ES256",))
    return TokenVerifier(config, keys=keyset_from_jwks(jwks, ("ES256",)))


@dataclass
class Node:
    enforcer: Enforcer
    cache: DecisionCache
    observer: RecordingObserver
    facts: MutableFacts
    clock: Clock
    sessions: dict[str, Principal]

    async def ask(
        self,
        token: str | None = None,
        *,
        method: str = "GET",
        path: str = "/docs/a",
        host: str = "app.test",
        ip: str = "203.0.113.9",
        headers: dict[str, str] | None = None,
        cookie: str | None = None,
    ) -> Outcome:
        raw: list[tuple[bytes, bytes]] = []
        if token is not None:
            raw.append((b"authorization", f"Bearer {token}".encode()))
        if cookie is not None:
            raw.append((b"cookie", f"session={cookie}".encode()))
        for name, value in (headers or {}).items():
            raw.append((name.encode(), value.encode()))
        http = HttpTarget.canonical(host=host, method=method, path=path, headers=headers or {})
        client = ClientAddress(ipaddress.ip_address(ip), None, False)
        return await self.enforcer.authorize(Subject(ROUTE, http, client, raw))


def make_node(
    verifier: TokenVerifier,
    signer: AssertionSigner,
    *,
    decider: Any = None,
    ttl: float = 1.0,
    max_entries: int = 1000,
    session_manager: SessionManager | None = None,
) -> Node:
    clock = Clock()
    sessions: dict[str, Principal] = {}

    async def session_of(raw: Any) -> Principal | None:
        for name, value in raw:
            if name == b"cookie":
                cookie = value.decode().removeprefix("session=")
                if session_manager is None:
                    return sessions.get(cookie)
                found = session_manager.lookup(cookie)
                return None if found is None else found[1]
        return None

    cache = DecisionCache(ttl_seconds=ttl, max_entries=max_entries)
    observer = RecordingObserver()
    facts = MutableFacts()
    enforcer = Enforcer(
        authenticator=Authenticator([verifier], sessions=session_of),
        decider=decider or compile_policy(load_policy(POLICY)),
        signer=signer, fact_sources=[facts], observer=observer, clock=clock,
        decisions=cache,
    )  # fmt: skip
    return Node(enforcer, cache, observer, facts, clock, sessions)


@pytest.fixture
def node(verifier: TokenVerifier, signer: AssertionSigner) -> Node:
    return make_node(verifier, signer)


@pytest.fixture
def token(issuer: Issuer) -> str:
    return issuer.token("alice", jti=f"jti-{time.monotonic_ns()}")


async def warm(node: Node, token: str | None = None, **request: Any) -> Outcome:
    """Two identical requests: the second is answered from the cache."""
    first = await node.ask(token, **request)
    hits = node.cache.hits
    second = await node.ask(token, **request)
    assert node.cache.hits == hits + 1, "the cache was not warm"
    assert second.verdict is first.verdict
    return second


# --- every request keeps its own decision id, audit event and headers ------------------


async def test_each_hit_has_a_fresh_decision_id_and_its_own_audit_event(
    node: Node, token: str
) -> None:
    outcomes = [await node.ask(token) for _ in range(3)]
    assert node.cache.hits == 2
    assert node.cache.misses == 1
    assert all(o.verdict is Verdict.ALLOWED for o in outcomes)
    ids = [o.decision.decision_id for o in outcomes if o.decision is not None]
    assert len(set(ids)) == 3
    assert [d.decision_id for _, d in node.observer.audited] == ids
    assert node.observer.counted == ids
    for outcome, decision_id in zip(outcomes, ids, strict=True):
        headers = dict(outcome.identity_headers)
        assert headers["x-verity-decision-id"] == decision_id
        assert "x-verity-assertion" in headers
    requests = [r for r, _ in node.observer.audited]
    assert all(r.principal.id == "alice" and r.http is not None for r in requests)


async def test_a_deny_is_cached_and_still_audited_every_time(node: Node, token: str) -> None:
    outcome = await warm(node, token, method="DELETE")
    assert outcome.verdict is Verdict.DENIED
    assert len(node.observer.audited) == 2
    assert len({d.decision_id for _, d in node.observer.audited}) == 2


async def test_rejected_tokens_are_not_decisions_and_are_not_cached(node: Node) -> None:
    for _ in range(2):
        assert (await node.ask("not-a-jwt")).verdict is Verdict.UNAUTHENTICATED
    assert len(node.cache) == 0
    assert node.cache.hits == 0


# --- revocations: refused on the very next request --------------------------------------


async def test_revoked_token_is_refused_on_the_next_request_with_the_cache_warm(
    node: Node, verifier: TokenVerifier, issuer: Issuer
) -> None:
    token = issuer.token("alice", jti="jti-revoke-me")
    await warm(node, token)
    verifier.revoke(jti="jti-revoke-me")
    assert (await node.ask(token)).verdict is Verdict.UNAUTHENTICATED


async def test_revoked_subject_is_refused_on_the_next_request_with_the_cache_warm(
    node: Node, verifier: TokenVerifier, token: str
) -> None:
    await warm(node, token)
    verifier.revoke(subject="alice")
    assert (await node.ask(token)).verdict is Verdict.UNAUTHENTICATED


async def test_revocation_from_the_store_is_refused_on_the_next_request_with_the_cache_warm(
    node: Node, verifier: TokenVerifier, issuer: Issuer
) -> None:
    token = issuer.token("alice", jti="jti-from-the-store")
    await warm(node, token)
    sync = RevocationSync(None, verifiers=[verifier], poll_seconds=0)  # type: ignore[arg-type]
    before = invalidation.current()
    now = time.time()
    assert sync.apply(Revocation(RevocationKind.JTI, "jti-from-the-store", now, now + 60))
    assert invalidation.current() > before
    assert (await node.ask(token)).verdict is Verdict.UNAUTHENTICATED


async def test_revoked_session_is_refused_on_the_next_request_with_the_cache_warm(
    node: Node,
) -> None:
    node.sessions["s1"] = Principal("alice", groups=frozenset({"engineers"}), session_id="s1")
    assert (await warm(node, cookie="s1")).verdict is Verdict.ALLOWED
    del node.sessions["s1"]  # the session manager refuses it from now on
    outcome = await node.ask(cookie="s1")
    assert outcome.verdict is Verdict.UNAUTHENTICATED  # anonymous now: sign in again
    assert outcome.principal is not None
    assert not outcome.principal.authenticated


async def test_a_revocation_arriving_while_deciding_is_not_remembered(
    node: Node, verifier: TokenVerifier, token: str
) -> None:
    node.facts.on_query = lambda: verifier.revoke(jti="some-other-token")
    assert (await node.ask(token)).verdict is Verdict.ALLOWED  # authenticated before it
    assert len(node.cache) == 0


async def test_any_epoch_bump_drops_every_entry(node: Node, token: str) -> None:
    await warm(node, token)
    invalidation.bump()
    hits = node.cache.hits
    await node.ask(token)
    assert node.cache.hits == hits


# --- grants, posture, trust and the policy -----------------------------------------------


async def test_grant_revoked_is_denied_on_the_next_request_with_the_cache_warm(
    node: Node, token: str
) -> None:
    node.facts.answer = Facts(grants=MappingProxyType({"prod-db": node.clock.now + 3600}))
    assert (await warm(node, token, path="/db/x")).verdict is Verdict.ALLOWED
    node.facts.answer = Facts()
    assert (await node.ask(token, path="/db/x")).verdict is Verdict.DENIED


async def test_a_grant_ending_within_the_ttl_ends_the_cached_allow(node: Node, token: str) -> None:
    ends = node.clock.now + 0.2
    node.facts.answer = Facts(grants=MappingProxyType({"prod-db": ends}))
    assert (await warm(node, token, path="/db/x")).verdict is Verdict.ALLOWED
    node.clock.now = ends  # the grant source still reports it; the policy compares
    assert (await node.ask(token, path="/db/x")).verdict is Verdict.DENIED


async def test_posture_change_is_denied_on_the_next_request_with_the_cache_warm(
    node: Node, token: str
) -> None:
    node.facts.answer = Facts(device=Device("laptop-1", managed=True))
    assert (await warm(node, token, path="/laptop/x")).verdict is Verdict.ALLOWED
    node.facts.answer = Facts(device=Device("laptop-1", managed=False))
    assert (await node.ask(token, path="/laptop/x")).verdict is Verdict.DENIED


async def test_trust_score_change_is_a_miss(node: Node, token: str) -> None:
    node.facts.answer = Facts(trust_score=80)
    assert (await warm(node, token, path="/trusted/x")).verdict is Verdict.ALLOWED
    node.facts.answer = Facts(trust_score=40)
    assert (await node.ask(token, path="/trusted/x")).verdict is Verdict.DENIED


async def test_policy_reload_is_obeyed_on_the_next_request_with_the_cache_warm(
    verifier: TokenVerifier, signer: AssertionSigner, token: str, tmp_path: Path
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    live = LivePolicy(path)
    node = make_node(verifier, signer, decider=live)
    assert (await warm(node, token)).verdict is Verdict.ALLOWED
    path.write_text(DENY_ALL)
    assert live.reload().changed
    outcome = await node.ask(token)
    assert outcome.verdict is Verdict.DENIED
    assert outcome.decision is not None
    assert outcome.decision.policy_version == live.version


async def test_an_unknown_decider_is_never_cached(
    verifier: TokenVerifier, signer: AssertionSigner, token: str
) -> None:
    engine = compile_policy(load_policy(POLICY))

    class Wrapped:
        def decide(self, request: AccessRequest) -> Decision:
            return engine.decide(request)

    node = make_node(verifier, signer, decider=Wrapped())
    await node.ask(token)
    await node.ask(token)
    assert len(node.cache) == 0
    assert node.cache.hits == 0


async def test_an_internal_error_of_the_engine_is_not_remembered(
    verifier: TokenVerifier, signer: AssertionSigner, token: str
) -> None:
    """A deny because deciding failed (a transient fault) must not deny the same
    request again from the cache: the next request is decided afresh."""
    engine = compile_policy(load_policy(POLICY))
    node = make_node(verifier, signer, decider=engine)
    real = engine.decide
    engine.decide = lambda request: engine._internal_error(RuntimeError("fault"))  # type: ignore[method-assign]
    first = await node.ask(token)
    assert first.verdict is Verdict.DENIED
    engine.decide = real  # type: ignore[method-assign]
    second = await node.ask(token)
    assert second.verdict is Verdict.ALLOWED
    assert node.cache.hits == 0


# --- every other input is part of the key -----------------------------------------------


@pytest.mark.parametrize(
    ("allowed", "denied"),
    [
        ({"method": "GET"}, {"method": "DELETE"}),
        ({"path": "/docs/a"}, {"path": "/admin"}),
        ({"host": "app.test"}, {"host": "other.test"}),
        ({"path": "/office/x", "ip": "10.1.2.3"}, {"path": "/office/x", "ip": "203.0.113.9"}),
        (
            {"path": "/blue/x", "headers": {"x-team": "blue"}},
            {"path": "/blue/x", "headers": {"x-team": "red"}},
        ),
    ],
    ids=["method", "path", "host", "client-ip", "header"],
)
async def test_a_different_input_is_a_miss(
    node: Node, token: str, allowed: dict[str, Any], denied: dict[str, Any]
) -> None:
    assert (await warm(node, token, **allowed)).verdict is Verdict.ALLOWED
    misses = node.cache.misses
    assert (await node.ask(token, **denied)).verdict is Verdict.DENIED
    assert node.cache.misses == misses + 1


async def test_another_principal_is_a_miss(node: Node, token: str, issuer: Issuer) -> None:
    assert (await warm(node, token)).verdict is Verdict.ALLOWED
    mallory = issuer.token("mallory", groups=("sales",))
    assert (await node.ask(mallory)).verdict is Verdict.DENIED


def test_principal_key_tells_claim_types_apart() -> None:
    keys = {
        principal_key(Principal("p", claims={"level": value}))
        for value in (True, 1, 1.0, "1", [1], {"a": 1})
    }
    assert len(keys) == 6
    assert principal_key(Principal("p", claims={"b": 1, "a": 2})) == principal_key(
        Principal("p", claims={"a": 2, "b": 1})
    )
    base = principal_key(Principal("p"))
    for other in (
        Principal("p", mfa=True),
        Principal("p", auth_time=1.0),
        Principal("p", roles=frozenset({"r"})),
        Principal("p", session_id="s"),
        Principal("p", email="p@example.com"),
    ):
        assert principal_key(other) != base


async def test_a_claim_that_cannot_be_serialised_is_decided_without_the_cache(
    node: Node,
) -> None:
    node.sessions["odd"] = Principal(
        "alice", groups=frozenset({"engineers"}), claims={"x": object()}, session_id="odd"
    )
    for _ in range(2):
        assert (await node.ask(cookie="odd")).verdict is Verdict.ALLOWED
    assert len(node.cache) == 0


# --- time ------------------------------------------------------------------------------


def _boundary_case(rules: str, principal: Principal, decided_at: float, later: float) -> None:
    """Decide at ``decided_at`` (cached), then ask at ``later``: the engine's answer has
    changed by then, and the cache must not answer with the old one."""
    engine = compile_policy(load_policy(rules))
    cache = DecisionCache(ttl_seconds=1.0, max_entries=10, epoch=lambda: 0)

    def request(at: float) -> AccessRequest:
        return AccessRequest(
            principal=principal, time=at, http=HttpTarget(host="a.test", path="/x"),
            context={"route": "r"},
        )  # fmt: skip

    first, second = request(decided_at), request(later)
    assert engine.decide(first).effect is Effect.ALLOW
    assert engine.decide(second).effect is Effect.DENY
    cache.put(cache.key(first, case="sensitive", policy=engine), engine.decide(first), first,
              epoch=0)  # fmt: skip
    assert cache.get(cache.key(second, case="sensitive", policy=engine), later) is None


def test_a_cached_allow_ends_at_the_end_of_its_time_window() -> None:
    """Allowed at 17:59:59.5 under an 08:00-18:00 rule: at 18:00:00.4 the cache must not
    still allow (it would within a 1 s ttl if entries could cross a second)."""
    rules = (
        "rules:\n - name: office-hours\n   allow: {roles: [staff], "
        'time: {days: mon-sun, hours: "08:00-18:00", tz: UTC}}'
    )
    at = datetime.fromisoformat("2026-11-23T17:59:59.5+00:00").timestamp()
    _boundary_case(rules, Principal("u", roles=frozenset({"staff"})), at, at + 0.9)


def test_a_cached_allow_ends_when_the_sign_in_becomes_too_old() -> None:
    """``max_auth_age: 60s`` with a sign-in at a fraction of a second: the allow ends
    exactly 60 s after it, not up to a ttl later."""
    rules = "rules:\n - name: fresh\n   allow: {roles: [staff], max_auth_age: 60s}"
    signed_in = 1_800_000_000.7
    principal = Principal("u", roles=frozenset({"staff"}), auth_time=signed_in)
    _boundary_case(rules, principal, signed_in + 59.9, signed_in + 60.05)


async def test_an_entry_expires_after_the_ttl(node: Node, token: str) -> None:
    await warm(node, token)
    node.clock.now += 0.999
    hits = node.cache.hits
    await node.ask(token)
    assert node.cache.hits == hits + 1
    node.clock.now += 0.002  # 1.001 s after the decision
    await node.ask(token)
    assert node.cache.hits == hits + 1


async def test_a_clock_going_back_does_not_stretch_an_entry(node: Node, token: str) -> None:
    await warm(node, token)
    node.clock.now -= 5
    hits = node.cache.hits
    await node.ask(token)
    assert node.cache.hits == hits


async def test_ttl_zero_disables_the_cache(
    verifier: TokenVerifier, signer: AssertionSigner, token: str
) -> None:
    node = make_node(verifier, signer, ttl=0)
    assert node.enforcer.decisions is None
    for _ in range(3):
        assert (await node.ask(token)).verdict is Verdict.ALLOWED
    assert len(node.cache) == 0
    assert node.cache.hits == 0


async def test_max_entries_bounds_the_cache(
    verifier: TokenVerifier, signer: AssertionSigner, token: str
) -> None:
    node = make_node(verifier, signer, max_entries=2)
    for path in ("/docs/a", "/docs/b", "/docs/c"):
        await node.ask(token, path=path)
    assert len(node.cache) == 2
    hits = node.cache.hits
    await node.ask(token, path="/docs/a")  # the least recently used went first
    assert node.cache.hits == hits


@pytest.mark.parametrize(("ttl", "entries"), [(-0.1, 10), (1.01, 10), (1.0, 0)])
def test_bad_limits_are_refused(ttl: float, entries: int) -> None:
    with pytest.raises(ValueError, match="ttl_seconds"):
        DecisionCache(ttl_seconds=ttl, max_entries=entries)


# --- every event that changes a decision input on the node bumps the epoch ---------------


@pytest.fixture
def session_manager(tmp_path: Path) -> Iterator[SessionManager]:
    with open_stores(StoreConfig(url=f"sqlite:///{tmp_path}/verity.db")) as stores:
        manager = SessionManager(
            store=stores.sessions, signer=CookieSigner({1: b"k" * 32}, current=1),
            config=LoginConfig(cache_seconds=60),
        )  # fmt: skip
        yield manager
        manager.close()


def test_every_event_that_changes_a_decision_input_bumps_the_epoch(
    verifier: TokenVerifier, session_manager: SessionManager, tmp_path: Path
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    live = LivePolicy(path)
    grants = GrantFacts(None)  # type: ignore[arg-type]  # invalidate never reads the store
    devices = DeviceFacts(None)  # type: ignore[arg-type]
    sync = RevocationSync(None, verifiers=[verifier], poll_seconds=0)  # type: ignore[arg-type]
    now = time.time()
    events = {
        "token hash": lambda: verifier.revoke(token_hash="ab" * 32),
        "jti": lambda: verifier.revoke(jti="j1"),
        "subject": lambda: verifier.revoke(subject="alice"),
        "from the store": lambda: sync.apply(
            Revocation(RevocationKind.SUBJECT, "bob", now, now + 60)
        ),
        "session": lambda: session_manager.revoke_session("s1", until=now + 60),
        "session subject": lambda: session_manager.revoke_subject(
            "alice", revoked_at=now, until=now + 60
        ),
        "policy reload": lambda: (path.write_text(DENY_ALL), live.reload()),
        "grant change": lambda: grants.invalidate("alice"),
        "posture change": lambda: devices.invalidate("laptop-1"),
    }
    for name, event in events.items():
        before = invalidation.current()
        event()
        assert invalidation.current() > before, name


async def test_revoked_session_of_the_session_manager_is_refused_with_the_cache_warm(
    verifier: TokenVerifier, signer: AssertionSigner, session_manager: SessionManager
) -> None:
    node = make_node(verifier, signer, session_manager=session_manager)
    principal = Principal("alice", email="alice@example.com", groups=frozenset({"engineers"}))
    cookie, record = session_manager.create(principal, {"iss": ISSUER, "sub": "alice"})
    assert (await warm(node, cookie=cookie)).verdict is Verdict.ALLOWED
    session_manager.revoke(record, reason="test")
    outcome = await node.ask(cookie=cookie)
    assert outcome.verdict is Verdict.UNAUTHENTICATED
    assert outcome.principal is not None
    assert not outcome.principal.authenticated


async def test_an_input_that_is_not_hashable_is_decided_without_the_cache(
    node: Node, token: str
) -> None:
    odd = Device("laptop-1", managed=True, os_version=["14"])  # type: ignore[arg-type]
    node.facts.answer = Facts(device=odd)
    for _ in range(2):
        assert (await node.ask(token, path="/laptop/x")).verdict is Verdict.ALLOWED
    assert len(node.cache) == 0
