"""Decisions the gateway makes before the policy: no route, a malformed forward-auth check.

They are decisions all the same, so each is counted (``verity_decisions_total{effect=
"deny",rule="none"}``), logged (``access.denied``) and appended to the audit log with its
decision id, no rule, and a reason, exactly as the policy's denies are:

=====================  ======================================================
reason code            when
=====================  ======================================================
``no_route``           no route for the host and path (proxy 404, forward-auth 403)
``untrusted_caller``   forward-auth called by a peer outside ``trusted_proxies``
``bad_request``        forward-auth check without a usable original request, or
                       carrying another dialect's headers
``ambiguous_target``   a request target refused by the canonical target rule
                       (``verity.gateway.target``): proxy, WebSocket and forward-auth
``method_not_allowed`` forward-auth check for ``TRACE``/``CONNECT``
``headers_too_large``  the check's header block is over the limits
``internal_error``     an unexpected failure while answering (fail closed)
=====================  ======================================================

The principal is anonymous (nothing was authenticated); the client IP is the resolved
one. A refusal never waits for more than the audit timeout and never becomes an allow.
"""

from __future__ import annotations

import time
from types import MappingProxyType

from starlette.responses import Response

from ..ids import new_decision_id
from ..model import (
    AccessRequest,
    Decision,
    Effect,
    HttpTarget,
    NetworkContext,
    Principal,
    Reason,
    Resource,
)
from . import responses
from .enforce import Enforcer
from .errors import BadRequestError
from .headers import ClientAddress

NO_ROUTE = "none"
"""The route name in logs for a request that matched no route."""
_REFUSAL_CODES = {403: "untrusted_caller", 405: "method_not_allowed", 431: "headers_too_large"}
_NO_ROUTE_MESSAGE = "no application is configured at this address"


def deny(code: str, message: str) -> Decision:
    """A deny without a rule (the policy was not asked), with a fresh decision id."""
    return Decision(Effect.DENY, None, new_decision_id(), "", (Reason(code, message),))


def no_route() -> Decision:
    """The deny for a request whose host and path match no route."""
    return deny("no_route", _NO_ROUTE_MESSAGE)


def refused(error: BadRequestError) -> Decision:
    """The deny for a refused request or check (its public message as the reason)."""
    code = error.reason_code or _REFUSAL_CODES.get(error.status, "bad_request")
    return deny(code, error.public_message)


async def record(
    enforcer: Enforcer,
    decision: Decision,
    client: ClientAddress,
    *,
    http: HttpTarget | None = None,
    endpoint: str | None = None,
    route: str = NO_ROUTE,
) -> None:
    """Count, log and audit ``decision`` for an anonymous request from ``client`` to
    ``http`` (or, when the request could not be read, to the gateway ``endpoint``)."""
    observer = enforcer.observer
    if observer is None:
        return
    request = AccessRequest(
        principal=Principal.anonymous(),
        time=time.time(),
        action=None if http is not None else "forward_auth",
        resource=Resource("endpoint", endpoint) if http is None and endpoint else Resource(),
        http=http,
        network=NetworkContext(ip=client.ip),
        context=MappingProxyType({"route": route}),
    )
    observer.decided(request, decision, route, None)  # never raises
    await observer.audit_decision(request, decision, route)  # never raises; a deny anyway


async def unrouted(
    enforcer: Enforcer,
    client: ClientAddress,
    *,
    host: str,
    method: str,
    path: str,
    route: str = NO_ROUTE,
) -> Decision:
    """Deny, count and audit a request to ``host`` + ``path`` that matched no route (or,
    for the proxy, a ``route`` without an upstream); returns the decision."""
    decision = no_route()
    target = HttpTarget.canonical(host=host, method=method, path=path)  # no headers audited
    await record(enforcer, decision, client, http=target, route=route)
    return decision


async def refused_target(
    enforcer: Enforcer,
    error: BadRequestError,
    client: ClientAddress,
    *,
    host: str,
    method: str,
    untrusted_target: str,
    route: str = NO_ROUTE,
) -> Decision:
    """Deny, count and audit a request refused for its target (``ambiguous_target``) or
    method override; the audit event carries the target exactly as it was sent."""
    decision = refused(error)
    target = HttpTarget.canonical(host=host, method=method, path=untrusted_target)
    await record(enforcer, decision, client, http=target, route=route)
    return decision


def not_found(decision: Decision, *, html: bool) -> Response:
    """The proxy's 404 for ``decision`` (``no_route``), with its decision id."""
    response = responses.error(404, "No application is configured here.", html=html)
    return with_decision_id(response, decision)


def with_decision_id(response: Response, decision: Decision) -> Response:
    """``response`` carrying ``X-Verity-Decision-Id`` (what a person quotes)."""
    response.headers["x-verity-decision-id"] = decision.decision_id
    return response
