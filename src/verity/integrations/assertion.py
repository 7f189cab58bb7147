"""Verify the gateway's identity assertion (``X-Verity-Assertion``) in an upstream app.

    from verity.integrations.assertion import verify

    claims = verify(request.headers["X-Verity-Assertion"],
                    jwks_url="https://gateway.example/.well-known/verity/jwks.json",
                    issuer="https://gateway.example", audience="wiki",
                    method=request.method, path=raw_request_path)
    claims.subject, claims.email, claims.groups, claims.decision_id

The algorithm is pinned to ES256 (never read from the token); ``typ`` must be
``verity-assertion+jwt``; ``iss``, ``aud``, ``exp``, ``iat``, ``sub``, ``jti`` and
``req`` are required; ``jku``/``x5u``/``jwk`` headers are never followed. Keys come only
from the JWKS you pass or the URL you configure (fetched with PyJWT's ``PyJWKClient``,
cached). ``req`` must bind the request being served (``verity.request_binding``), and
each ``jti`` is accepted once (a ``ReplayCache``, in-process by default). Each failure
raises its own ``AssertionVerificationError`` subclass.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import jwt

from ..errors import VerityError
from ..identity.config import require_secure_url
from ..request_binding import BINDING_CLAIM, canonical_request_path, request_binding
from .replay import MemoryReplayCache, ReplayCache, ReplayCacheFullError

ALGORITHM = "ES256"
TOKEN_TYPE = "verity-assertion+jwt"  # noqa: S105 - a JWT `typ`, not a secret
REQUIRED = ("iss", "aud", "exp", "iat", "sub", "jti", BINDING_CLAIM)
DEFAULT_REPLAY_CACHE: ReplayCache = MemoryReplayCache()  # this process's, shared by all calls
_MAX_TOKEN_BYTES = 16384


class AssertionVerificationError(VerityError):
    """The assertion was rejected; the request must not be treated as authenticated."""


class AssertionMalformedError(AssertionVerificationError):
    """Not a compact JWS, or a header/claim of the wrong shape or type."""


class AssertionAlgorithmError(AssertionVerificationError):
    """``alg`` is not ES256."""


class AssertionKeyError(AssertionVerificationError):
    """No key for the ``kid``, or the JWKS could not be fetched."""


class AssertionSignatureError(AssertionVerificationError):
    """The signature does not verify."""


class AssertionExpiredError(AssertionVerificationError):
    """``exp`` has passed (beyond the leeway)."""


class AssertionNotYetValidError(AssertionVerificationError):
    """``nbf`` or ``iat`` is in the future (beyond the leeway)."""


class AssertionIssuerError(AssertionVerificationError):
    """``iss`` is not the expected gateway."""


class AssertionAudienceError(AssertionVerificationError):
    """``aud`` is not this application."""


class AssertionBindingError(AssertionVerificationError):
    """``req`` does not bind this request: the assertion was minted for another method
    or path."""


class AssertionReplayError(AssertionVerificationError):
    """This ``jti`` was accepted before (or the replay cache is full)."""


class AssertionClaimError(AssertionVerificationError):
    """A required claim is missing."""

    def __init__(self, claim: str) -> None:
        self.claim = claim
        super().__init__(f"required claim {claim!r} is missing")


@dataclass(frozen=True, slots=True)
class AssertionClaims:
    """The verified identity the gateway asserted for one request."""

    subject: str
    email: str | None
    groups: frozenset[str]
    device_id: str | None
    trust_score: int | None
    decision_id: str | None
    issuer: str
    audience: str
    issued_at: int
    expires_at: int
    jti: str
    key_id: str | None
    claims: Mapping[str, Any] = field(repr=False)


_clients: dict[str, jwt.PyJWKClient] = {}
_clients_lock = threading.Lock()


def _client(jwks_url: str) -> jwt.PyJWKClient:
    with _clients_lock:
        client = _clients.get(jwks_url)
        if client is None:
            url = require_secure_url(jwks_url)
            client = jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=5)
            _clients[jwks_url] = client
        return client


def _key(header: Mapping[str, Any], jwks_url: str | None, jwks: Mapping[str, Any] | None) -> Any:
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise AssertionKeyError("the assertion has no 'kid'")
    try:
        if jwks is not None:
            return jwt.PyJWKSet.from_dict(dict(jwks))[kid].key
        if jwks_url is None:
            raise AssertionKeyError("give jwks_url or jwks")
        return _client(jwks_url).get_signing_key(kid).key
    except KeyError:
        raise AssertionKeyError("no key in the JWKS has this 'kid'") from None
    except jwt.PyJWKClientError as exc:
        raise AssertionKeyError(f"cannot get the gateway's keys: {exc}") from None
    except jwt.PyJWTError as exc:
        raise AssertionKeyError(f"unusable JWKS: {exc}") from None


def _header(token: str) -> dict[str, Any]:
    if len(token) > _MAX_TOKEN_BYTES:
        raise AssertionMalformedError("the assertion is too large")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise AssertionMalformedError("not a compact JWS") from None
    if header.get("alg") != ALGORITHM:
        raise AssertionAlgorithmError(f"alg must be {ALGORITHM}")
    if header.get("typ") != TOKEN_TYPE:
        raise AssertionMalformedError(f"typ must be {TOKEN_TYPE}")
    return header


_ERRORS: tuple[tuple[type[jwt.PyJWTError], type[AssertionVerificationError]], ...] = (
    (jwt.ExpiredSignatureError, AssertionExpiredError),
    (jwt.ImmatureSignatureError, AssertionNotYetValidError),
    (jwt.InvalidIssuerError, AssertionIssuerError),
    (jwt.InvalidAudienceError, AssertionAudienceError),
    (jwt.InvalidSignatureError, AssertionSignatureError),
    (jwt.InvalidAlgorithmError, AssertionAlgorithmError),
)


def _decode(token: str, key: Any, issuer: str, audience: str, leeway: float) -> dict[str, Any]:
    try:
        return jwt.decode(
            token, key, algorithms=[ALGORITHM], audience=audience, issuer=issuer,
            leeway=leeway, options={"require": list(REQUIRED), "strict_aud": True},
        )  # fmt: skip
    except jwt.MissingRequiredClaimError as exc:
        raise AssertionClaimError(exc.claim) from None
    except jwt.PyJWTError as exc:
        for source, target in _ERRORS:
            if isinstance(exc, source):
                raise target(str(exc)) from None
        raise AssertionMalformedError(str(exc)) from None


def _optional(claims: Mapping[str, Any], name: str, kind: type) -> Any:
    value = claims.get(name)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise AssertionMalformedError(f"claim {name!r} has the wrong type")
    return value


def _claims(claims: dict[str, Any], key_id: str | None) -> AssertionClaims:
    groups = claims.get("groups", [])
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise AssertionMalformedError("claim 'groups' must be a list of strings")
    if not all(isinstance(claims[name], str) for name in ("sub", "jti", BINDING_CLAIM)):
        raise AssertionMalformedError(f"claims 'sub', 'jti' and {BINDING_CLAIM!r} must be strings")
    return AssertionClaims(
        subject=claims["sub"],
        email=_optional(claims, "email", str),
        groups=frozenset(groups),
        device_id=_optional(claims, "device_id", str),
        trust_score=_optional(claims, "trust_score", int),
        decision_id=_optional(claims, "decision_id", str),
        issuer=claims["iss"],
        audience=claims["aud"],
        issued_at=int(claims["iat"]),
        expires_at=int(claims["exp"]),
        jti=claims["jti"],
        key_id=key_id,
        claims=MappingProxyType(claims),
    )


def _check_binding(claims: Mapping[str, Any], method: str, path: str) -> None:
    try:
        expected = request_binding(method, canonical_request_path(path))
    except ValueError:
        raise AssertionBindingError("the request path cannot be canonicalised") from None
    if not hmac.compare_digest(str(claims[BINDING_CLAIM]), expected):
        raise AssertionBindingError("the assertion was minted for another method or path")


def _first_use(cache: ReplayCache, claims: AssertionClaims, leeway: float) -> None:
    try:
        fresh = cache.first_use(f"{claims.issuer} {claims.jti}", claims.expires_at + leeway)
    except ReplayCacheFullError as exc:
        raise AssertionReplayError(f"replay cache full: {exc}") from None
    if not fresh:
        raise AssertionReplayError("this assertion (jti) was already used")


def verify(
    untrusted_token: str,
    *,
    issuer: str,
    audience: str,
    method: str,
    path: str,
    jwks_url: str | None = None,
    jwks: Mapping[str, Any] | None = None,
    leeway: float = 5.0,
    replay_cache: ReplayCache = DEFAULT_REPLAY_CACHE,
) -> AssertionClaims:
    """Verify an ``X-Verity-Assertion`` value for the request it came with.

    Give exactly one of ``jwks_url`` (the gateway's ``/.well-known/verity/jwks.json``;
    https, or http to a loopback host) and ``jwks`` (a JWK Set mapping). ``issuer`` is
    the gateway's public URL and ``audience`` this application's route (its name unless
    the route sets ``audience``). ``method`` and ``path`` are the request being served:
    the path as received (percent-encoded; a query string is ignored). The ``jti`` is
    recorded in ``replay_cache`` (this process's by default) only once everything else
    verified; a second use raises ``AssertionReplayError``.
    """
    if (jwks_url is None) == (jwks is None):
        raise ValueError("give exactly one of jwks_url and jwks")
    header = _header(untrusted_token)
    key = _key(header, jwks_url, jwks)
    decoded = _decode(untrusted_token, key, issuer, audience, leeway)
    claims = _claims(decoded, header.get("kid"))
    _check_binding(decoded, method, path)
    _first_use(replay_cache, claims, leeway)
    return claims


__all__ = [
    "DEFAULT_REPLAY_CACHE",
    "AssertionAlgorithmError",
    "AssertionAudienceError",
    "AssertionBindingError",
    "AssertionClaimError",
    "AssertionClaims",
    "AssertionExpiredError",
    "AssertionIssuerError",
    "AssertionKeyError",
    "AssertionMalformedError",
    "AssertionNotYetValidError",
    "AssertionReplayError",
    "AssertionSignatureError",
    "AssertionVerificationError",
    "MemoryReplayCache",
    "ReplayCache",
    "verify",
]
