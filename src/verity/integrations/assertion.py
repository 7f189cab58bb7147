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

A reused assertion (routes with ``assertion_companion_key_file``; claim ``cmp: 1``, no
``req``) is accepted only with its ``X-Verity-Request`` companion
(``verity.assertion_companion``) and the route's shared key: the companion's MAC is
checked in constant time, its ``jti`` must be the assertion's, its ``req`` must bind the
request being served, its ``iat`` must be at most ``companion_max_age`` seconds old
(plus the leeway) and not in the future, and its ``n`` is accepted once (the same
replay cache). The assertion itself is then not single-use: it is reused for up to
30 s. With a ``VerifiedAssertions`` cache, its signature is checked once per process and
the verified claims reused until it expires, while the JWKS (``jwks`` or the cached
``jwks_url`` set) still maps its ``kid`` to the key that verified it. An assertion with
``cmp`` and no companion, a companion for another request, a replayed or forged one:
refused.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import jwt

from .. import assertion_companion
from ..assertion_companion import COMPANION_CLAIM
from ..errors import VerityError
from ..identity.config import require_secure_url
from ..request_binding import BINDING_CLAIM, canonical_request_path, request_binding
from .replay import MemoryReplayCache, ReplayCache, ReplayCacheFullError

ALGORITHM = "ES256"
TOKEN_TYPE = "verity-assertion+jwt"  # noqa: S105 - a JWT `typ`, not a secret
REQUIRED = ("iss", "aud", "exp", "iat", "sub", "jti")  # and `req`, or `cmp` and a companion
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


class AssertionCompanionError(AssertionVerificationError):
    """A reused assertion (``cmp``) without a valid companion: none, no key to check it,
    a MAC that does not verify, another assertion's, or too old."""


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
    if not all(isinstance(claims[name], str) for name in ("sub", "jti")):
        raise AssertionMalformedError("claims 'sub' and 'jti' must be strings")
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


def _binding(method: str, path: str) -> bytes:
    try:
        return request_binding(method, canonical_request_path(path)).encode("ascii")
    except ValueError:
        raise AssertionBindingError("the request path cannot be canonicalised") from None


def _same(untrusted: object, expected: bytes) -> bool:
    """Constant-time equality of an untrusted string with ``expected``."""
    if not isinstance(untrusted, str):
        return False
    return hmac.compare_digest(untrusted.encode("utf-8", "surrogatepass"), expected)


def _check_binding(claims: Mapping[str, Any], method: str, path: str) -> None:
    if BINDING_CLAIM not in claims:
        raise AssertionClaimError(BINDING_CLAIM)
    if not isinstance(claims[BINDING_CLAIM], str):
        raise AssertionMalformedError(f"claim {BINDING_CLAIM!r} must be a string")
    if not _same(claims[BINDING_CLAIM], _binding(method, path)):
        raise AssertionBindingError("the assertion was minted for another method or path")


def _companion_mode(claims: Mapping[str, Any]) -> bool:
    """Whether the assertion is a reused one (``cmp: 1``, no ``req``); malformed if
    ``cmp`` has any other value or comes with ``req``."""
    if COMPANION_CLAIM not in claims:
        return False
    value = claims[COMPANION_CLAIM]
    if type(value) is not int or value != 1 or BINDING_CLAIM in claims:
        raise AssertionMalformedError(
            f"claim {COMPANION_CLAIM!r} must be 1, without {BINDING_CLAIM!r}"
        )
    return True


@dataclass(frozen=True, slots=True)
class CompanionCheck:
    """What checking a companion needs: the route's shared key, the request served."""

    key: bytes | None
    value: str | None
    method: str
    path: str
    max_age: float
    now: float


def _check_companion(
    claims: AssertionClaims, check: CompanionCheck, cache: ReplayCache, leeway: float
) -> str:
    """The decision id of a valid companion for ``claims``; raises otherwise."""
    if check.key is None:
        raise AssertionCompanionError("a reused assertion needs the route's companion key")
    if check.value is None:
        raise AssertionCompanionError("a reused assertion came without its companion")
    try:
        payload = assertion_companion.read(check.key, check.value)
    except assertion_companion.CompanionError as exc:
        raise AssertionCompanionError(str(exc)) from None
    if not _same(payload["jti"], claims.jti.encode("utf-8", "surrogatepass")):
        raise AssertionCompanionError("the companion belongs to another assertion")
    if not _same(payload["req"], _binding(check.method, check.path)):
        raise AssertionBindingError("the companion was made for another method or path")
    issued = payload["iat"]
    if issued > check.now + leeway:
        raise AssertionNotYetValidError("the companion's iat is in the future")
    if issued < check.now - check.max_age - leeway:
        raise AssertionCompanionError("the companion is too old")
    key = f"{claims.issuer} {claims.jti} {payload['n']}"
    try:
        fresh = cache.first_use(key, issued + check.max_age + leeway)
    except ReplayCacheFullError as exc:
        raise AssertionReplayError(f"replay cache full: {exc}") from None
    if not fresh:
        raise AssertionReplayError("this companion was already used")
    return str(payload["did"])


class VerifiedAssertions:
    """Reused assertions whose signature and claims verified, by token, until they
    expire (at most ``max_entries``; least recently used dropped). Give one per
    configuration (issuer, audience and keys): an ``AssertionSource`` has its own."""

    def __init__(self, max_entries: int = 10_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, dict[str, Any], str | None, Any]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()

    def get(self, token: str, now: float) -> tuple[dict[str, Any], str | None, Any] | None:
        """(claims, kid, the key that verified them), or None."""
        with self._lock:
            entry = self._entries.get(token)
            if entry is None:
                return None
            if now >= entry[0]:
                del self._entries[token]
                return None
            self._entries.move_to_end(token)
            return entry[1], entry[2], entry[3]

    def put(
        self, token: str, until: float, claims: dict[str, Any], kid: str | None, key: Any
    ) -> None:
        with self._lock:
            self._entries[token] = (until, claims, kid, key)
            self._entries.move_to_end(token)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


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
    companion: str | None = None,
    companion_key: bytes | None = None,
    companion_max_age: float = 30.0,
    verified: VerifiedAssertions | None = None,
    clock: Callable[[], float] = time.time,
) -> AssertionClaims:
    """Verify an ``X-Verity-Assertion`` value for the request it came with.

    Give exactly one of ``jwks_url`` (the gateway's ``/.well-known/verity/jwks.json``;
    https, or http to a loopback host) and ``jwks`` (a JWK Set mapping). ``issuer`` is
    the gateway's public URL and ``audience`` this application's route (its name unless
    the route sets ``audience``). ``method`` and ``path`` are the request being served:
    the path as received (percent-encoded; a query string is ignored). The ``jti`` is
    recorded in ``replay_cache`` (this process's by default) only once everything else
    verified; a second use raises ``AssertionReplayError``.

    A reused assertion (``cmp``) needs ``companion`` (the ``X-Verity-Request`` value)
    and ``companion_key`` (the route's shared key), see the module doc; ``verified``
    caches its verified claims; ``clock`` (UNIX seconds) times the companion.
    """
    if (jwks_url is None) == (jwks is None):
        raise ValueError("give exactly one of jwks_url and jwks")
    now = clock()
    known = verified.get(untrusted_token, now) if verified is not None else None
    if (
        known is not None
        and known[0].get("iss") == issuer
        and known[0].get("aud") == audience
        # the key that verified it is still the JWKS's key for its kid: a key removed or
        # replaced at the gateway (rotation, compromise) stops a cached assertion at once
        and _key({"kid": known[1]}, jwks_url, jwks) == known[2]
    ):
        decoded, kid, key = known
    else:
        known = None
        header = _header(untrusted_token)
        key = _key(header, jwks_url, jwks)
        decoded = _decode(untrusted_token, key, issuer, audience, leeway)
        kid = header.get("kid")
    claims = _claims(decoded, kid)
    if not _companion_mode(decoded):
        _check_binding(decoded, method, path)
        _first_use(replay_cache, claims, leeway)
        return claims
    check = CompanionCheck(companion_key, companion, method, path, companion_max_age, now)
    decision_id = _check_companion(claims, check, replay_cache, leeway)
    if verified is not None and known is None:
        verified.put(untrusted_token, claims.expires_at + leeway, decoded, kid, key)
    return replace(claims, decision_id=decision_id)


__all__ = [
    "DEFAULT_REPLAY_CACHE",
    "AssertionAlgorithmError",
    "AssertionAudienceError",
    "AssertionBindingError",
    "AssertionClaimError",
    "AssertionClaims",
    "AssertionCompanionError",
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
    "VerifiedAssertions",
    "verify",
]
