"""The decision path shared by the proxy and forward-auth: identify, gather, decide, sign.

``Enforcer.authorize`` never raises and never allows by accident: a bad token is
``UNAUTHENTICATED``; an exception anywhere (identity, a fact source, the engine, the
signer) is ``DENIED`` with reason ``internal_error`` (fail closed). Only an ``ALLOWED``
outcome carries identity headers for the upstream.

An ``Observer`` (``verity.observability.GatewayObserver``) audits and counts every
decision: a deny stays a deny whatever the audit log does; an allow whose audit event
was not acknowledged becomes ``UNAVAILABLE`` (503) when the observer fails closed.

With a ``DecisionCache`` (``gateway.decision_cache``), the policy's answer to a request
whose every input equals a recent one's is reused (``verity.gateway.decision_cache``):
only the decider's call is skipped. Authentication, fact gathering, the decision id, the
audit event, the metrics and the identity headers are per request, cached or not. Only
a ``LivePolicy`` or an ``Engine`` (pure functions of the request) is cached; the node's
invalidation epoch (``verity.invalidation``) is read before authentication, so a decision
made while a revocation, reload or fact change arrives is never reused.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Protocol
from urllib.parse import quote

from .. import invalidation
from ..identity import TokenError
from ..ids import new_decision_id
from ..model import AccessRequest, Decision, Effect, HttpTarget, NetworkContext, Principal, Reason
from ..policy import Engine, LivePolicy
from .assertion import AssertionFacts, AssertionSigner, ReusableFacts
from .assertion_reuse import AssertionReuse
from .authn import Authenticator, SessionIssuerNotAcceptedError
from .decision_cache import DecisionCache
from .facts import FactQuery, Facts, FactSource, gather_facts
from .headers import ClientAddress, RawHeaders
from .mtls import PeerCertificate, certificate_identity
from .settings import RouteConfig

log = logging.getLogger("verity.gateway")
Clock = Callable[[], float]
_SAFE = "@._-+:/=~!$&'()*;"


class Decider(Protocol):
    """Anything that decides: an ``Engine`` or a ``LivePolicy``."""

    def decide(self, request: AccessRequest) -> Decision:
        """Decide one request."""
        ...


class DecisionListener(Protocol):
    """Told about every decision (audit and metrics plug in here). Must not raise."""

    def __call__(self, request: AccessRequest, decision: Decision, route: str) -> None: ...


class Observer(Protocol):
    """Audit, metrics and security logs for the decision path (never raise)."""

    @property
    def fail_closed(self) -> bool:
        """Refuse an allow (503) whose audit event was not acknowledged."""
        ...

    def token_verified(self, outcome: str) -> None:
        """A token was verified (``ok``) or failed for an unexpected reason."""
        ...

    def decided(
        self, request: AccessRequest, decision: Decision, route: str, seconds: float | None
    ) -> None:
        """Count and log one decision (``seconds``: the decider's own time)."""
        ...

    async def audit_decision(self, request: AccessRequest, decision: Decision, route: str) -> bool:
        """Append the decision's audit event; True once acknowledged (durable, or, for a
        repeated allow while the log keeps up, queued for the next group commit)."""
        ...

    async def token_rejected(self, error: TokenError, *, client_ip: object, route: str) -> None:
        """Count, log and audit a rejected bearer token."""
        ...


class Verdict(enum.Enum):
    """How the enforcement point answers."""

    ALLOWED = "allowed"
    UNAUTHENTICATED = "unauthenticated"
    DENIED = "denied"
    UNAVAILABLE = "unavailable"  # allowed, but the audit log did not acknowledge it: 503


@dataclass(frozen=True, slots=True)
class Outcome:
    """The verdict, its decision (none when the token was rejected) and what to send on."""

    verdict: Verdict
    decision: Decision | None = None
    principal: Principal | None = None
    identity_headers: tuple[tuple[str, str], ...] = ()
    error_description: str | None = None  # the public reason a token was rejected


@dataclass(frozen=True, slots=True)
class Subject:
    """The request being authorised, as the enforcement point resolved it."""

    route: RouteConfig
    http: HttpTarget
    client: ClientAddress
    headers: RawHeaders = field(repr=False)
    peer: PeerCertificate | None = None  # the client certificate (routes with ``mtls``)
    # The path the upstream receives, in ``canonical_request_path`` form, when it is not
    # ``http.path``: an upstream base path, or forward-auth's raw target on a route whose
    # ``path_matching`` changed the path decided. The assertion binds it (the app verifies
    # the request it receives).
    bound_path: str | None = None


def header_value(value: str) -> str:
    """A header-safe rendering of an identity value (UTF-8, percent-encoded)."""
    return quote(value, safe=_SAFE)


SESSION_ISSUER_NOT_ACCEPTED = Reason(
    "session.issuer_not_accepted",
    "access denied: you signed in through an identity provider this application does not accept",
    hint="sign out, then sign in with a provider this application accepts",
)


def _internal_error(decision: Decision) -> bool:
    """A deny the engine gave because deciding failed (not a policy's answer)."""
    return any(reason.code == "internal_error" for reason in decision.reasons)


def internal_deny(version: str = "") -> Decision:
    """The decision for a failure on the decision path."""
    reason = Reason("internal_error", "access denied: internal error while deciding")
    return Decision(Effect.DENY, None, new_decision_id(), version, (reason,))


class Enforcer:
    """Authenticates, gathers facts, asks the decider and signs the assertion."""

    def __init__(
        self,
        *,
        authenticator: Authenticator,
        decider: Decider,
        signer: AssertionSigner,
        fact_sources: Sequence[FactSource] = (),
        listeners: Sequence[DecisionListener] = (),
        observer: Observer | None = None,
        clock: Clock = time.time,
        decisions: DecisionCache | None = None,
        reuse: AssertionReuse | None = None,
    ) -> None:
        """``decisions``: the node's decision cache (none: every request is decided);
        its entries are timed with ``clock``. ``reuse``: reused assertions and their
        companions on the routes with a companion key (none: one assertion per request
        on every route)."""
        self.authenticator = authenticator
        self.decider = decider
        self.signer = signer
        self.fact_sources = tuple(fact_sources)
        self.listeners = tuple(listeners)
        self.observer = observer
        self._clock = clock
        self.decisions = decisions if decisions is not None and decisions.enabled else None
        self.reuse = reuse

    async def authorize(self, subject: Subject) -> Outcome:
        """The outcome for ``subject``. Never raises."""
        epoch = invalidation.current()  # before authenticating: see the module doc
        if subject.route.mtls != "off":
            return await self._authorize_mtls(subject, epoch)
        return await self._authorize_token(subject, epoch)

    async def _authorize_token(self, subject: Subject, epoch: int) -> Outcome:
        """Identify by bearer token or session, then decide. Never raises."""
        try:
            principal = await self.authenticator.authenticate(
                subject.headers, subject.route.issuers
            )
        except SessionIssuerNotAcceptedError as exc:
            return await self.refuse(subject, SESSION_ISSUER_NOT_ACCEPTED, exc.principal)
        except TokenError as exc:
            log.info("401 route=%s: %s", subject.route.name, exc.operator_message)
            if self.observer is not None:
                await self.observer.token_rejected(
                    exc, client_ip=subject.client.ip, route=subject.route.name
                )
            return Outcome(Verdict.UNAUTHENTICATED, error_description=exc.public_message)
        except Exception:  # noqa: BLE001 - fail closed on anything
            return await self._failed(subject, "identity")
        try:
            if self.observer is not None and principal.authenticated:
                self.observer.token_verified("ok")
            return await self._decide(subject, principal, epoch)
        except Exception:  # noqa: BLE001 - fail closed on anything
            return await self._failed(subject, "decision", principal)

    async def _authorize_mtls(self, subject: Subject, epoch: int) -> Outcome:
        """A route with ``mtls``: the certificate's workload, a refusal, or (``optional``
        without a certificate) the token path. Never raises."""
        try:
            identity = certificate_identity(subject.route.mtls, subject.peer, subject.headers)
        except Exception:  # noqa: BLE001 - fail closed on anything
            return await self._failed(subject, "identity")
        if identity is None:
            return await self._authorize_token(subject, epoch)
        if isinstance(identity, Reason):
            return await self.refuse(subject, identity)
        try:
            return await self._decide(subject, identity, epoch)
        except Exception:  # noqa: BLE001 - fail closed on anything
            return await self._failed(subject, "decision", identity)

    async def refuse(
        self, subject: Subject, reason: Reason, principal: Principal | None = None
    ) -> Outcome:
        """An audited deny decided before the policy (no acceptable client certificate,
        a cross-site WebSocket, a session from an issuer the route does not accept).
        Never raises."""
        decision = Decision(Effect.DENY, None, new_decision_id(), "", (reason,))
        log.info("403 route=%s: %s (decision %s)", subject.route.name, reason.code,
                 decision.decision_id)  # fmt: skip
        request = AccessRequest(
            principal=principal or Principal.anonymous(), time=self._clock(),
            http=subject.http, network=NetworkContext(ip=subject.client.ip),
            context=MappingProxyType({"route": subject.route.name}),
        )  # fmt: skip
        self._notify(request, decision, subject.route.name)
        if self.observer is not None:
            self.observer.decided(request, decision, subject.route.name, None)
            await self.observer.audit_decision(request, decision, subject.route.name)
        return Outcome(Verdict.DENIED, decision)

    async def _failed(
        self, subject: Subject, stage: str, principal: Principal | None = None
    ) -> Outcome:
        decision = internal_deny()
        log.exception(
            "fail closed: %s error on route %s (decision %s)",
            stage,
            subject.route.name,
            decision.decision_id,
        )
        if self.observer is not None:  # audited too; a deny whatever the audit log does
            if stage == "identity":
                self.observer.token_verified("error")
            request = AccessRequest(
                principal=principal or Principal.anonymous(), time=self._clock(),
                http=subject.http, network=NetworkContext(ip=subject.client.ip),
            )  # fmt: skip
            self.observer.decided(request, decision, subject.route.name, None)
            await self.observer.audit_decision(request, decision, subject.route.name)
        return Outcome(Verdict.DENIED, decision)

    async def _decide(self, subject: Subject, principal: Principal, epoch: int) -> Outcome:
        network = NetworkContext(ip=subject.client.ip)
        query = FactQuery(principal, subject.http, network, subject.route.name)
        facts = await gather_facts(self.fact_sources, query)
        request = self._request(subject, principal, network, facts)
        started = time.perf_counter()
        decision = self._decision(request, subject, epoch)
        elapsed = time.perf_counter() - started
        self._notify(request, decision, subject.route.name)
        acknowledged = await self._observe(request, decision, subject.route.name, elapsed)
        if decision.effect is not Effect.ALLOW:  # a deny stays a deny, audited or not
            # 401 / sign-in only when the decision says signing in could change it
            # (never for a signed-in caller: no sign-in loop)
            needs = decision.requires_authentication and not principal.authenticated
            verdict = Verdict.UNAUTHENTICATED if needs else Verdict.DENIED
            return Outcome(verdict, decision, principal)
        if not acknowledged and self.observer is not None and self.observer.fail_closed:
            return Outcome(Verdict.UNAVAILABLE, decision, principal)
        headers = self._identity_headers(subject, principal, decision, facts, epoch)
        return Outcome(Verdict.ALLOWED, decision, principal, headers)

    def _policy(self) -> Decider:
        """The decider in force now (a ``LivePolicy``'s current engine)."""
        decider = self.decider
        return decider.engine if isinstance(decider, LivePolicy) else decider

    def _decision(self, request: AccessRequest, subject: Subject, epoch: int) -> Decision:
        """The policy's decision for ``request``: reused from the cache under a new
        decision id when every input matches a recent request's, else decided."""
        policy = self._policy()
        case = subject.route.path_matching.case
        cache = self.decisions
        key = None
        if cache is not None and isinstance(policy, Engine):  # only a known-pure decider
            key = cache.key(request, case=case, policy=policy)
            if key is not None:
                try:
                    cached = cache.get(key, request.time)
                except TypeError:  # an input that is not hashable: decide, do not cache
                    cached = key = None
                if cached is not None:  # the same answer, under this request's own id
                    effect, rule, _, version, reasons, obligations = cached
                    return Decision(effect, rule, new_decision_id(), version, reasons, obligations)
        decision = policy.decide(request)
        if decision.effect is Effect.ALLOW and case == "consistent":
            decision = self._case_consistent(request, subject.http, decision, policy)
        if cache is not None and key is not None and not _internal_error(decision):
            cache.put(key, decision, request, epoch=epoch)  # (a failure is not remembered)
        return decision

    def _case_consistent(
        self, request: AccessRequest, http: HttpTarget, decision: Decision, policy: Decider
    ) -> Decision:
        """``path_matching.case: consistent``: an allowed path with upper-case letters
        stays allowed only if its lower-cased form is allowed too (an upstream that
        ignores case serves ``/ADMIN`` as ``/admin``). Otherwise the deny of the
        lower-cased form, first saying why."""
        folded = http.path.lower()
        if folded == http.path:
            return decision
        lowered = HttpTarget.canonical(
            host=http.host, method=http.method, path=folded, headers=http.headers
        )
        other = policy.decide(replace(request, http=lowered))
        if other.effect is Effect.ALLOW:
            return decision
        why = Reason(
            "path.case_ambiguous",
            f"An upstream that ignores case reads this path as {folded}, which is not "
            "allowed for you.",
            other.rule,
            "Use the path in its usual (lower-case) spelling, or ask for access to it.",
        )
        return other._replace(reasons=(why, *other.reasons))

    def _request(
        self, subject: Subject, principal: Principal, network: NetworkContext, facts: Facts
    ) -> AccessRequest:
        # Every part is an instance of its (normalising) class, the grants are copied into
        # a read-only mapping and the context is a new one holding a str: the preconditions
        # of ``AccessRequest.trusted`` hold, and the test-suite checks them on every call.
        return AccessRequest.trusted(
            principal,
            self._clock(),
            http=subject.http,
            device=facts.device,
            network=network,
            trust_score=facts.trust_score,
            grants=MappingProxyType(dict(facts.grants)),
            context=MappingProxyType({"route": subject.route.name}),
        )

    async def _observe(
        self, request: AccessRequest, decision: Decision, route: str, seconds: float
    ) -> bool:
        if self.observer is None:
            return True
        self.observer.decided(request, decision, route, seconds)
        return await self.observer.audit_decision(request, decision, route)

    def _notify(self, request: AccessRequest, decision: Decision, route: str) -> None:
        for listener in self.listeners:
            listener(request, decision, route)

    def _identity_headers(
        self,
        subject: Subject,
        principal: Principal,
        decision: Decision,
        facts: Facts,
        epoch: int,
    ) -> tuple[tuple[str, str], ...]:
        route = subject.route
        headers = [("x-verity-decision-id", decision.decision_id)]
        if not principal.authenticated:
            return tuple(headers)
        device_id = facts.device.id if facts.device is not None else None
        method = subject.http.method  # the request decided: the assertion binds it
        path = subject.bound_path or subject.http.path
        companion = None
        if self.reuse is not None and self.reuse.covers(route.name):
            assertion, companion = self.reuse.headers(
                route.name, principal,
                ReusableFacts(route.assertion_audience, device_id, facts.trust_score),
                decision_id=decision.decision_id, method=method, path=path, epoch=epoch,
            )  # fmt: skip
        else:
            assertion = self.signer.sign(
                principal,
                AssertionFacts(
                    audience=route.assertion_audience, decision_id=decision.decision_id,
                    method=method, path=path, device_id=device_id,
                    trust_score=facts.trust_score,
                ),
            )  # fmt: skip
        headers.append(("x-verity-user", header_value(principal.id)))
        if principal.email:
            headers.append(("x-verity-email", header_value(principal.email)))
        groups = ",".join(header_value(group) for group in sorted(principal.groups))
        headers.append(("x-verity-groups", groups))
        headers.append(("x-verity-assertion", assertion))
        if companion is not None:
            headers.append(("x-verity-request", companion))
        return tuple(headers)
