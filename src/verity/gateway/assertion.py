"""The signed identity assertion (``X-Verity-Assertion``): a short-lived ES256 JWT.

On every allowed request the gateway tells the upstream who is calling with a JWT that
upstreams verify against the gateway's JWKS (``/.well-known/verity/jwks.json``), as
IAP and Pomerium do. Claims: ``iss`` (the gateway URL), ``aud`` (the route), ``sub``,
``email``, ``groups``, ``device_id``, ``trust_score``, ``decision_id``, ``req`` (the
request binding: a hash of the method and canonical path decided,
``verity.request_binding``), ``iat``, ``nbf``, ``exp``, ``jti``; header ``kid`` and
``typ: verity-assertion+jwt`` (a distinct type, so an assertion is never mistaken for an
access token, RFC 8725 3.11).

Every allowed request gets its own assertion: it names that request's ``decision_id``
(the audit event an upstream log line can be joined to), binds its method and path
(``req``: not usable for another request) and has a fresh ``jti`` (upstreams refuse a
second use). A cached assertion would name another request's decision, so none is
cached. The cost is one ECDSA P-256 signature in OpenSSL, ~25 us of the
~30 us ``sign`` takes on the benchmark machine (8.5% of the proxy's event-loop CPU).

A route with a companion key reuses one assertion instead (``reusable_claims``: no
``req``, no ``decision_id``, ``cmp: 1``) and binds each request in an HMAC'd companion
value (``verity.assertion_companion``, ``verity.gateway.assertion_reuse``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from ..assertion_companion import COMPANION_CLAIM
from ..ids import new_event_uid
from ..model import Principal
from ..request_binding import BINDING_CLAIM, request_binding
from .errors import AssertionKeyError
from .settings import AssertionConfig

log = logging.getLogger("verity.gateway")

ALGORITHM = "ES256"
TOKEN_TYPE = "verity-assertion+jwt"  # noqa: S105 - a JWT `typ`, not a secret
JWKS_PATH = "/.well-known/verity/jwks.json"
Clock = Callable[[], float]
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _coordinate(value: int) -> str:
    return _b64(value.to_bytes(32, "big"))


def load_signing_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """An EC P-256 private key from a PEM file. Raises ``AssertionKeyError``."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise AssertionKeyError(f"{path}: not a readable PEM private key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise AssertionKeyError(f"{path}: the assertion key must be an EC P-256 key (ES256)")
    return key


def public_jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    """The public JWK of ``key`` with ``kid`` = its RFC 7638 thumbprint."""
    numbers = key.public_key().public_numbers()
    jwk = {"crv": "P-256", "kty": "EC", "x": _coordinate(numbers.x), "y": _coordinate(numbers.y)}
    canonical = json.dumps(jwk, separators=(",", ":"), sort_keys=True).encode()
    kid = _b64(hashlib.sha256(canonical).digest())
    return {**jwk, "alg": ALGORITHM, "use": "sig", "kid": kid}


@dataclass(frozen=True, slots=True)
class AssertionFacts:
    """What an assertion says besides the principal; ``method`` and ``path`` are the
    request decided (the canonical path: what the policy saw and the upstream receives)."""

    audience: str
    decision_id: str
    method: str
    path: str
    device_id: str | None = None
    trust_score: int | None = None


@dataclass(frozen=True, slots=True)
class ReusableFacts:
    """What a reusable assertion says besides the principal (nothing per request)."""

    audience: str
    device_id: str | None = None
    trust_score: int | None = None


class AssertionSigner:
    """Signs identity assertions with one ES256 key and publishes its JWKS."""

    def __init__(
        self,
        key: ec.EllipticCurvePrivateKey,
        *,
        issuer: str,
        ttl_seconds: int = 60,
        clock: Clock = time.time,
    ) -> None:
        """``issuer`` is the gateway's public URL (the ``iss`` claim)."""
        if key.curve.name != "secp256r1":
            raise AssertionKeyError("the assertion key must be an EC P-256 key (ES256)")
        self._key = key
        self.issuer = issuer
        self.ttl = ttl_seconds
        self._clock = clock
        self.jwk = public_jwk(key)
        self.kid = self.jwk["kid"]
        header = {"alg": ALGORITHM, "kid": self.kid, "typ": TOKEN_TYPE}
        self._header = _b64(json.dumps(header, separators=(",", ":")).encode())

    @classmethod
    def from_config(cls, config: AssertionConfig, *, issuer: str) -> AssertionSigner:
        """The configured key, or a new per-process key (logged: fine for one node only)."""
        if config.signing_key is not None:
            key = load_signing_key(config.signing_key)
        else:
            log.warning(
                "gateway.assertion.signing_key is not set: assertions are signed with a new "
                "key for this process only; set it when more than one gateway node runs"
            )
            key = ec.generate_private_key(ec.SECP256R1())
        return cls(key, issuer=issuer, ttl_seconds=config.ttl_seconds)

    def jwks(self) -> dict[str, Any]:
        """The JWK Set upstreams verify assertions with."""
        return {"keys": [dict(self.jwk)]}

    def claims(self, principal: Principal, facts: AssertionFacts) -> dict[str, Any]:
        """The claims of an assertion for ``principal`` (no signing)."""
        specific = {
            "decision_id": facts.decision_id,
            BINDING_CLAIM: request_binding(facts.method, facts.path),
        }
        return self._claims(principal, facts, specific, self.ttl)

    def sign(self, principal: Principal, facts: AssertionFacts) -> str:
        """A compact ES256 JWS of ``claims(principal, facts)``."""
        return self.sign_claims(self.claims(principal, facts))

    def reusable_claims(
        self, principal: Principal, facts: ReusableFacts, *, lifetime: int
    ) -> dict[str, Any]:
        """The claims of a reusable assertion (``verity.gateway.assertion_reuse``): no
        ``req`` and no ``decision_id`` (both travel in each request's companion), and
        ``cmp: 1``, so that a verifier accepts it only with a valid companion."""
        return self._claims(principal, facts, {COMPANION_CLAIM: 1}, min(lifetime, self.ttl))

    def _claims(
        self,
        principal: Principal,
        facts: AssertionFacts | ReusableFacts,
        specific: dict[str, Any],
        lifetime: int,
    ) -> dict[str, Any]:
        """The claims every assertion has, ``specific`` among them; a fresh ``jti``
        (the process prefix and a counter: unique, and no system call per request)."""
        now = int(self._clock())
        return {
            "iss": self.issuer,
            "aud": facts.audience,
            "sub": principal.id,
            "email": principal.email,
            "groups": sorted(principal.groups),
            "device_id": facts.device_id,
            "trust_score": facts.trust_score,
            **specific,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "jti": new_event_uid(),
        }

    def sign_claims(self, claims: dict[str, Any]) -> str:
        """A compact ES256 JWS of ``claims``."""
        try:
            payload = orjson.dumps(claims)  # compact UTF-8 JSON, ~6x faster than json
        except orjson.JSONEncodeError:  # e.g. a lone surrogate from a token: escaped instead
            payload = json.dumps(claims, separators=(",", ":")).encode()
        signing_input = f"{self._header}.{_b64(payload)}".encode("ascii")
        der = self._key.sign(signing_input, _ECDSA_SHA256)
        r, s = decode_dss_signature(der)
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return f"{signing_input.decode('ascii')}.{_b64(signature)}"
