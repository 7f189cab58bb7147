"""The enforcement logic shared by the FastAPI, Starlette and Flask integrations.

An adapter turns its request into ``Incoming`` and asks a ``Guard``, which identifies the
caller (a bearer token via ``TokenVerifier``, or the gateway's signed ``X-Verity-Assertion``;
never ``X-Verity-User`` or another client-set header), builds the ``AccessRequest`` and asks
the decider. It never raises: a bad token is a 401 ``Rejection``; any exception on the
decision path (attribute loader, decider, listener) a 403 deny, reason ``internal_error``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from ..assertion_companion import check_key
from ..gateway.authn import bearer_token
from ..gateway.enforce import Decider, internal_deny
from ..gateway.errors import BadRequestError
from ..gateway.headers import (
    ClientResolver,
    RawHeaders,
    is_identity_header,
    policy_headers,
    single_header,
    valid_host,
)
from ..identity import TokenError, TokenVerifier
from ..model import (
    AccessRequest,
    Decision,
    HttpTarget,
    NetworkContext,
    Principal,
    Resource,
    normalize_path,
)
from . import assertion as _assertion
from .replay import MemoryReplayCache, ReplayCache

log = logging.getLogger("verity.integrations")
Attributes = Mapping[str, Any]
_EMPTY: Attributes = MappingProxyType({})
ASSERTION_HEADER = b"x-verity-assertion"
COMPANION_HEADER = b"x-verity-request"
MISSING_CHALLENGE = 'Bearer realm="verity"'
INTERNAL_MESSAGE = "access denied: internal error while deciding"
Listener = Callable[[AccessRequest, Decision], None]  # audit/metrics; an exception denies


@dataclass(frozen=True, slots=True)
class AssertionSource:
    """Trust the gateway's ``X-Verity-Assertion`` (apps behind the gateway): one of
    ``jwks_url`` (its ``/.well-known/verity/jwks.json``) or ``jwks``; ``audience``: the route.
    ``replay_cache`` remembers used ``jti``s (in-process by default; several processes
    need a shared one such as ``RedisReplayCache``). ``companion_key``: the route's
    ``assertion_companion_key_file`` content (at least 32 bytes), to accept the reused
    assertions of such a route with their ``X-Verity-Request`` companion; without it,
    a reused assertion is refused."""

    issuer: str
    audience: str
    jwks_url: str | None = None
    jwks: Mapping[str, Any] | None = None
    leeway: float = 5.0
    replay_cache: ReplayCache = field(default_factory=MemoryReplayCache, repr=False)
    companion_key: bytes | None = field(default=None, repr=False)
    verified: _assertion.VerifiedAssertions = field(
        default_factory=_assertion.VerifiedAssertions, repr=False
    )

    def __post_init__(self) -> None:
        if (self.jwks_url is None) == (self.jwks is None):
            raise ValueError("AssertionSource: give exactly one of jwks_url and jwks")
        if self.companion_key is not None:
            check_key(self.companion_key)

    @property
    def blocking(self) -> bool:
        """Whether ``verify`` may do I/O (a JWKS fetch, a shared replay cache)."""
        return self.jwks_url is not None or not isinstance(self.replay_cache, MemoryReplayCache)

    def verify(
        self, untrusted: str, method: str, path: str, companion: str | None = None
    ) -> _assertion.AssertionClaims:
        """The verified claims of an assertion for this request (``path`` as received;
        ``companion``: its ``X-Verity-Request`` value); raises
        ``AssertionVerificationError``."""
        return _assertion.verify(
            untrusted, issuer=self.issuer, audience=self.audience, method=method, path=path,
            jwks_url=self.jwks_url, jwks=self.jwks, leeway=self.leeway,
            replay_cache=self.replay_cache, companion=companion,
            companion_key=self.companion_key, verified=self.verified,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Incoming:
    """A request as the adapter saw it; all untrusted but ``peer`` and ``routed_path``."""

    method: str
    raw_path: str
    routed_path: str
    headers: RawHeaders = field(repr=False)
    peer: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """What a route protects: the application action and resource (``None``: HTTP only)."""

    action: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    attributes: Attributes = field(default_factory=lambda: _EMPTY)


Loader = Callable[[Principal], Target]
AsyncLoader = Callable[[Principal], Awaitable[Target]]


@dataclass(frozen=True, slots=True)
class Rejection:
    """A response the adapter sends instead of calling the handler (400, 401 or 403)."""

    status: int
    body: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class Outcome:
    """Allowed (``rejection is None``) with the principal and decision, or a rejection;
    ``identity``: the verified caller, reused by a second check of the same request."""

    principal: Principal | None = None
    decision: Decision | None = None
    rejection: Rejection | None = None
    identity: Identity | None = None


def unauthenticated(error: TokenError | _assertion.AssertionVerificationError | None) -> Rejection:
    """401: ``missing_token`` without credentials, else ``invalid_token`` with the reason."""
    if error is None:
        body = {"error": "missing_token", "error_description": "Authentication is required."}
        return Rejection(401, body, {"WWW-Authenticate": MISSING_CHALLENGE})
    if isinstance(error, TokenError):
        reason, message = error.reason.value, error.public_message
    else:
        reason, message = "bad_assertion", "The identity assertion is invalid."
    challenge = f'Bearer error="invalid_token", error_description="{message}"'
    body = {"error": "invalid_token", "reason": reason, "error_description": message}
    return Rejection(401, body, {"WWW-Authenticate": challenge})


def denied(decision: Decision) -> Rejection:
    """403 with the decision id, the human reason and the hint (nothing internal)."""
    first = decision.reasons[0] if decision.reasons else None
    internal = first is not None and first.code == "internal_error"
    body = {"error": "access_denied", "decision_id": decision.decision_id,
            "reason": INTERNAL_MESSAGE if internal else first.summary if first else "",
            "code": first.code if first else "denied",
            "hint": first.hint if first else None}  # fmt: skip
    return Rejection(403, body, {"Cache-Control": "no-store"})


def strip_identity_headers(headers: RawHeaders) -> list[tuple[bytes, bytes]]:
    """``headers`` without the identity headers a client could forge (``X-Verity-*``,
    ``X-Forwarded-User``, ``Remote-User``...): what a handler may see once allowed."""
    return [(name, value) for name, value in headers
            if not is_identity_header(name.decode("latin-1"))]  # fmt: skip


def strip_identity_environ(environ: MutableMapping[str, Any]) -> None:
    """``strip_identity_headers`` for a WSGI environ (``HTTP_X_VERITY_USER``...)."""
    for key in [key for key in environ if key.startswith("HTTP_")]:
        if not strip_identity_headers([(key[5:].encode("latin-1"), b"")]):
            del environ[key]


def canonical_path(incoming: Incoming) -> str:
    """The path the policy sees; 400 unless it is exactly the path the app routes on.

    The policy decodes the path once and resolves dot segments; apps route on the decoded
    path as is. A request whose two views differ (``/public/../admin``, ``//admin``)
    could be decided as one path and served as another, so it is refused.
    """
    raw = incoming.raw_path.split("?", 1)[0] or "/"
    if raw.lower().startswith(("http://", "https://")):
        raw = urlsplit(raw).path or "/"
    canonical = normalize_path(raw)
    if canonical != incoming.routed_path or any(ord(c) < 0x20 or ord(c) == 0x7F for c in canonical):
        raise BadRequestError(400, "The request path is not in canonical form.")
    return canonical


@dataclass(frozen=True, slots=True)
class Identity:
    """Who calls and, from a gateway assertion, the trust score and device it vouched for."""

    principal: Principal
    trust_score: int | None = None
    context: Attributes = field(default_factory=lambda: _EMPTY)


_ANONYMOUS = Identity(Principal.anonymous(), context={"identity_source": "none"})


def _asserted(claims: _assertion.AssertionClaims) -> Identity:
    principal = Principal(
        id=claims.subject, email=claims.email, groups=claims.groups, claims=claims.claims
    )
    context = {"identity_source": "assertion", "device_id": claims.device_id,
               "gateway_decision_id": claims.decision_id}  # fmt: skip
    return Identity(principal, claims.trust_score, context)


def _token(principal: Principal) -> Identity:
    """A bearer token's caller (the principal is cached with the verified token)."""
    return Identity(principal, context={"identity_source": "token"})


class Guard:
    """Identifies callers and decides requests for one app. Thread-safe; never raises."""

    def __init__(
        self,
        *,
        engine: Decider,
        verifier: TokenVerifier | None = None,
        assertion: AssertionSource | None = None,
        trusted_proxies: Sequence[str] = (),
        trusted_hops: int = 1,
        policy_host: str | None = None,
        listeners: Sequence[Listener] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``verifier`` (bearer tokens) and/or ``assertion`` (behind the gateway) say who
        calls. The client IP is the socket peer unless it is in ``trusted_proxies``.
        ``policy_host`` is the host the policy sees (default: the ``Host`` header)."""
        if verifier is None and assertion is None:
            raise ValueError("Guard needs a verifier, an assertion source, or both")
        self.engine = engine
        self.verifier = verifier
        self.assertion = assertion
        self.resolver = ClientResolver(trusted_proxies, trusted_hops)
        self.policy_host = policy_host
        self.listeners = tuple(listeners)
        self._clock = clock

    def _credentials(self, headers: RawHeaders) -> tuple[str | None, str | None]:
        # (assertion, bearer token): a trusted assertion, when present, wins.
        asserted = single_header(headers, ASSERTION_HEADER) if self.assertion else None
        if asserted is not None:
            return asserted, None
        return None, bearer_token(headers) if self.verifier is not None else None

    def identify(self, incoming: Incoming) -> Identity:
        """The verified caller (anonymous without credentials); raises on bad ones. An
        assertion must be bound to this request's method and path, and unused."""
        asserted, token = self._credentials(incoming.headers)
        if asserted is not None and self.assertion is not None:
            companion = single_header(incoming.headers, COMPANION_HEADER)
            claims = self.assertion.verify(asserted, incoming.method, incoming.raw_path, companion)
            return _asserted(claims)
        if token is not None and self.verifier is not None:
            return _token(self.verifier.verify_principal(token))
        return _ANONYMOUS

    async def aidentify(self, incoming: Incoming) -> Identity:
        """``identify`` without blocking the event loop (JWKS fetches happen off-loop)."""
        asserted, token = self._credentials(incoming.headers)
        if token is not None and self.verifier is not None:
            return _token(await self.verifier.aprincipal(token))
        if asserted is not None and self.assertion is not None and self.assertion.blocking:
            return await asyncio.to_thread(self.identify, incoming)
        return self.identify(incoming)

    def http_target(self, incoming: Incoming) -> HttpTarget:
        """The ``HttpTarget`` (validated host, method, canonical path); raises 400."""
        host = self.policy_host or valid_host(single_header(incoming.headers, b"host"))
        return HttpTarget(
            host=host, method=incoming.method, path=canonical_path(incoming),
            headers=policy_headers(incoming.headers),
        )  # fmt: skip

    def decide(self, incoming: Incoming, identity: Identity, target: Target) -> Outcome:
        """Ask the decider and tell the listeners (exceptions propagate to the caller)."""
        principal = identity.principal
        client = self.resolver.resolve(incoming.peer, incoming.headers)
        request = AccessRequest(
            principal=principal, time=self._clock(), action=target.action,
            resource=Resource(target.resource_type, target.resource_id, target.attributes),
            http=self.http_target(incoming), network=NetworkContext(ip=client.ip),
            trust_score=identity.trust_score, context=identity.context,
        )  # fmt: skip
        decision = self.engine.decide(request)
        for listener in self.listeners:
            listener(request, decision)
        if decision.allowed:
            return Outcome(principal, decision, identity=identity)
        if decision.requires_authentication and not principal.authenticated:  # authenticate: 401
            return Outcome(principal, decision, unauthenticated(None), identity)
        return Outcome(principal, decision, denied(decision), identity)

    def authorize(
        self, incoming: Incoming, target: Loader | None = None, *, anonymous_ok: bool = False,
        identity: Identity | None = None,
    ) -> Outcome:  # fmt: skip
        """Sync enforcement (Flask): identify, load the target, decide. Never raises.

        Without ``anonymous_ok`` a caller without credentials gets 401 before ``target``
        (which may load resource attributes) runs or the policy is asked. ``identity``:
        the caller an earlier check of this same request verified (an assertion is
        single-use, and its header is gone once a check allowed the request)."""
        try:
            identity = identity or self.identify(incoming)
            if not identity.principal.authenticated and not anonymous_ok:
                return Outcome(rejection=unauthenticated(None))
            resolved = target(identity.principal) if target is not None else Target()
            return self.decide(incoming, identity, resolved)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a rejection
            return _failed(exc)

    async def aauthorize(
        self, incoming: Incoming, target: AsyncLoader | None = None, *, anonymous_ok: bool = False,
        identity: Identity | None = None,
    ) -> Outcome:  # fmt: skip
        """Async ``authorize`` (FastAPI, Starlette). Never raises."""
        try:
            identity = identity or await self.aidentify(incoming)
            if not identity.principal.authenticated and not anonymous_ok:
                return Outcome(rejection=unauthenticated(None))
            resolved = await target(identity.principal) if target is not None else Target()
            return self.decide(incoming, identity, resolved)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a rejection
            return _failed(exc)


def _failed(exc: Exception) -> Outcome:
    """The rejection for an exception on the decision path (fail closed)."""
    if isinstance(exc, TokenError | _assertion.AssertionVerificationError):
        detail = exc.operator_message if isinstance(exc, TokenError) else type(exc).__name__
        log.info("401: %s", detail)
        return Outcome(rejection=unauthenticated(exc))
    if isinstance(exc, BadRequestError):
        body = {"error": "bad_request", "error_description": exc.public_message}
        return Outcome(rejection=Rejection(exc.status, body))
    decision = internal_deny()
    log.exception("fail closed: error on the decision path (decision %s)", decision.decision_id)
    return Outcome(decision=decision, rejection=denied(decision))
