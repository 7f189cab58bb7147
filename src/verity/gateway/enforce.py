"""The decision path shared by the proxy and forward-auth: identify, gather, decide, sign.

``Enforcer.authorize`` never raises and never allows by accident: a bad token is
``UNAUTHENTICATED``; an exception anywhere (identity, a fact source, the engine, the
signer) is ``DENIED`` with reason ``internal_error`` (fail closed). Only an ``ALLOWED``
outcome carries identity headers for the upstream.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol
from urllib.parse import quote

from ..identity import TokenError
from ..ids import new_decision_id
from ..model import AccessRequest, Decision, Effect, HttpTarget, NetworkContext, Principal, Reason
from .assertion import AssertionFacts, AssertionSigner
from .authn import Authenticator
from .facts import FactQuery, Facts, FactSource, gather_facts
from .headers import ClientAddress, RawHeaders
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


class Verdict(enum.Enum):
    """How the enforcement point answers."""

    ALLOWED = "allowed"
    UNAUTHENTICATED = "unauthenticated"
    DENIED = "denied"


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


def header_value(value: str) -> str:
    """A header-safe rendering of an identity value (UTF-8, percent-encoded)."""
    return quote(value, safe=_SAFE)


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
        clock: Clock = time.time,
    ) -> None:
        self.authenticator = authenticator
        self.decider = decider
        self.signer = signer
        self.fact_sources = tuple(fact_sources)
        self.listeners = tuple(listeners)
        self._clock = clock

    async def authorize(self, subject: Subject) -> Outcome:
        """The outcome for ``subject``. Never raises."""
        try:
            principal = await self.authenticator.authenticate(
                subject.headers, subject.route.issuers
            )
        except TokenError as exc:
            log.info("401 route=%s: %s", subject.route.name, exc.operator_message)
            return Outcome(Verdict.UNAUTHENTICATED, error_description=exc.public_message)
        except Exception:  # noqa: BLE001 - fail closed on anything
            return self._failed(subject, "identity")
        try:
            return await self._decide(subject, principal)
        except Exception:  # noqa: BLE001 - fail closed on anything
            return self._failed(subject, "decision")

    def _failed(self, subject: Subject, stage: str) -> Outcome:
        decision = internal_deny()
        log.exception(
            "fail closed: %s error on route %s (decision %s)",
            stage,
            subject.route.name,
            decision.decision_id,
        )
        return Outcome(Verdict.DENIED, decision)

    async def _decide(self, subject: Subject, principal: Principal) -> Outcome:
        network = NetworkContext(ip=subject.client.ip)
        query = FactQuery(principal, subject.http, network, subject.route.name)
        facts = await gather_facts(self.fact_sources, query)
        request = self._request(subject, principal, network, facts)
        decision = self.decider.decide(request)
        self._notify(request, decision, subject.route.name)
        if decision.effect is not Effect.ALLOW:
            verdict = Verdict.DENIED if principal.authenticated else Verdict.UNAUTHENTICATED
            return Outcome(verdict, decision, principal)
        headers = self._identity_headers(subject.route, principal, decision, facts)
        return Outcome(Verdict.ALLOWED, decision, principal, headers)

    def _request(
        self, subject: Subject, principal: Principal, network: NetworkContext, facts: Facts
    ) -> AccessRequest:
        return AccessRequest(
            principal=principal,
            time=self._clock(),
            http=subject.http,
            device=facts.device,
            network=network,
            trust_score=facts.trust_score,
            grants=facts.grants,
            context=MappingProxyType({"route": subject.route.name}),
        )

    def _notify(self, request: AccessRequest, decision: Decision, route: str) -> None:
        for listener in self.listeners:
            listener(request, decision, route)

    def _identity_headers(
        self, route: RouteConfig, principal: Principal, decision: Decision, facts: Facts
    ) -> tuple[tuple[str, str], ...]:
        headers = [("x-verity-decision-id", decision.decision_id)]
        if not principal.authenticated:
            return tuple(headers)
        assertion = self.signer.sign(
            principal,
            AssertionFacts(
                audience=route.assertion_audience,
                decision_id=decision.decision_id,
                device_id=facts.device.id if facts.device is not None else None,
                trust_score=facts.trust_score,
            ),
        )
        headers.append(("x-verity-user", header_value(principal.id)))
        if principal.email:
            headers.append(("x-verity-email", header_value(principal.email)))
        groups = ",".join(header_value(group) for group in sorted(principal.groups))
        headers.append(("x-verity-groups", groups))
        headers.append(("x-verity-assertion", assertion))
        return tuple(headers)
