"""Identity errors: one class per reason a token is rejected, plus key and JWKS failures.

IdentityError (a VerityError)
 ├── TokenError                    a bearer token was rejected: answer 401
 │    ├── TokenMalformedError       not a compact JWS with JSON header and claims
 │    ├── TokenTooLargeError        longer than the issuer's size cap
 │    ├── ForbiddenHeaderError      jku / x5u / jwk / x5c in the header
 │    ├── UnsupportedCriticalHeaderError   a ``crit`` extension nobody here processes
 │    ├── WrongTokenTypeError       ``typ`` is not the configured one
 │    ├── AlgorithmNotAllowedError  ``none``, not configured, or not the key's algorithm
 │    ├── UnknownKeyError           no trusted key for the ``kid`` (or no unambiguous key)
 │    ├── BadSignatureError         the signature does not verify
 │    ├── MissingClaimError         a required claim is absent
 │    ├── InvalidClaimError         a claim has the wrong type or shape
 │    ├── InvalidIssuerError        ``iss`` is not the configured issuer
 │    ├── InvalidAudienceError      no ``aud`` value is one of ours
 │    ├── TokenExpiredError         now is past ``exp`` (+ leeway)
 │    ├── TokenNotYetValidError     now is before ``nbf`` (- leeway)
 │    ├── TokenIssuedInFutureError  ``iat`` is later than now (+ leeway)
 │    ├── TokenRevokedError         revoked by hash, ``jti`` or subject
 │    └── KeysUnavailableError      no usable keys (IdP unreachable and cache aged out)
 ├── KeyBindingError               a key cannot be bound to exactly one allowed algorithm
 │    └── WeakKeyError              an RSA key too short or with the ROCA fingerprint
 └── JwksError                     discovery or JWKS fetch failed
      └── InsecureUrlError          a non-HTTPS URL for a host that is not loopback

Every ``TokenError`` has a stable ``reason`` (an enum, for metrics and audit), a short
``public_message`` that is safe to show to any client, and ``detail``, the operator's
message. Untrusted values (kid, alg, typ, claims) appear in ``detail`` only through
``shown()``: quoted, truncated, one line. The raw token never appears in any message.
"""

from __future__ import annotations

import enum
from typing import ClassVar

from ..errors import VerityError

_SHOWN_MAX = 64


def shown(untrusted: object) -> str:
    """An untrusted value as a short, quoted, single-line string for operator messages."""
    text = repr(untrusted)
    return text if len(text) <= _SHOWN_MAX else text[: _SHOWN_MAX - 3] + "..."


class RejectionReason(enum.Enum):
    """Why a token was rejected (stable codes for metrics, audit and ``--json``)."""

    MALFORMED = "malformed"
    OVERSIZED = "oversized"
    FORBIDDEN_HEADER = "forbidden_header"
    UNSUPPORTED_CRIT = "unsupported_crit"
    WRONG_TYPE = "wrong_typ"
    DISALLOWED_ALGORITHM = "disallowed_algorithm"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    MISSING_CLAIM = "missing_claim"
    INVALID_CLAIM = "invalid_claim"
    BAD_ISSUER = "bad_issuer"
    BAD_AUDIENCE = "bad_audience"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    ISSUED_IN_FUTURE = "issued_in_future"
    REVOKED = "revoked"
    KEYS_UNAVAILABLE = "keys_unavailable"


class IdentityError(VerityError):
    """Root of every identity error."""


_INVALID = "The access token is invalid."


class TokenError(IdentityError):
    """A bearer token was rejected; enforcement points answer 401 with ``public_message``."""

    reason: ClassVar[RejectionReason] = RejectionReason.MALFORMED
    public_message: ClassVar[str] = _INVALID

    def __init__(self, detail: str, *, token_hash: str | None = None) -> None:
        self.detail = detail
        self.token_hash = token_hash
        super().__init__(detail)

    @property
    def operator_message(self) -> str:
        """The detailed message for logs: reason, detail and a short token fingerprint."""
        tag = f" [token sha256:{self.token_hash[:16]}]" if self.token_hash else ""
        return f"token rejected ({self.reason.value}): {self.detail}{tag}"

    def __str__(self) -> str:
        return self.operator_message


class TokenMalformedError(TokenError):
    """The token is not a compact JWS whose header and payload are JSON objects."""

    reason = RejectionReason.MALFORMED


class TokenTooLargeError(TokenError):
    """The token is longer than the configured maximum (checked before any parsing)."""

    reason = RejectionReason.OVERSIZED
    public_message = "The access token is too large."


class ForbiddenHeaderError(TokenError):
    """The header names a key by URL or embeds one (jku, x5u, jwk, x5c): never trusted."""

    reason = RejectionReason.FORBIDDEN_HEADER

    def __init__(self, header: str, *, token_hash: str | None = None) -> None:
        self.header = header
        super().__init__(
            f"header parameter {header!r} is never honoured; keys come only from "
            "the issuer's configured key source",
            token_hash=token_hash,
        )


class UnsupportedCriticalHeaderError(TokenError):
    """``crit`` lists an extension that this verifier does not process (RFC 7515 4.1.11)."""

    reason = RejectionReason.UNSUPPORTED_CRIT


class WrongTokenTypeError(TokenError):
    """The ``typ`` header is not the type this issuer's tokens must carry (RFC 8725 3.11)."""

    reason = RejectionReason.WRONG_TYPE


class AlgorithmNotAllowedError(TokenError):
    """``alg`` is ``none``, not in the issuer's allow-list, or not the key's one algorithm."""

    reason = RejectionReason.DISALLOWED_ALGORITHM


class UnknownKeyError(TokenError):
    """No trusted key matches the token's ``kid`` (or no single key fits a kid-less token)."""

    reason = RejectionReason.UNKNOWN_KEY


class BadSignatureError(TokenError):
    """The signature does not verify with the selected key."""

    reason = RejectionReason.BAD_SIGNATURE


class MissingClaimError(TokenError):
    """A claim the issuer requires is absent."""

    reason = RejectionReason.MISSING_CLAIM
    public_message = "The access token is missing a required claim."

    def __init__(self, claim: str, *, token_hash: str | None = None) -> None:
        self.claim = claim
        super().__init__(f"required claim {claim!r} is missing", token_hash=token_hash)


class InvalidClaimError(TokenError):
    """A claim has the wrong type or shape (e.g. a string ``exp``, an infinite time)."""

    reason = RejectionReason.INVALID_CLAIM

    def __init__(self, claim: str, problem: str, *, token_hash: str | None = None) -> None:
        self.claim = claim
        super().__init__(f"claim {claim!r} {problem}", token_hash=token_hash)


class InvalidIssuerError(TokenError):
    """``iss`` is not the configured issuer."""

    reason = RejectionReason.BAD_ISSUER
    public_message = "The access token was not issued for this service."


class InvalidAudienceError(TokenError):
    """None of the token's audiences is one this verifier accepts."""

    reason = RejectionReason.BAD_AUDIENCE
    public_message = "The access token was not issued for this service."


class TokenExpiredError(TokenError):
    """The current time is at or past ``exp`` plus leeway."""

    reason = RejectionReason.EXPIRED
    public_message = "The access token has expired."


class TokenNotYetValidError(TokenError):
    """The current time is before ``nbf`` minus leeway."""

    reason = RejectionReason.NOT_YET_VALID
    public_message = "The access token is not valid yet."


class TokenIssuedInFutureError(TokenError):
    """``iat`` is later than the current time plus leeway (clock skew or forgery)."""

    reason = RejectionReason.ISSUED_IN_FUTURE
    public_message = "The access token is not valid yet."


class TokenRevokedError(TokenError):
    """The token, its ``jti`` or its subject was revoked."""

    reason = RejectionReason.REVOKED
    public_message = "The access token has been revoked."


class KeysUnavailableError(TokenError):
    """No usable verification keys: the IdP is unreachable and cached keys aged out."""

    reason = RejectionReason.KEYS_UNAVAILABLE
    public_message = "The access token cannot be verified right now."


class KeyBindingError(IdentityError):
    """A key cannot be bound to exactly one allowed algorithm, or is unusable."""


class WeakKeyError(KeyBindingError):
    """An RSA key that must not be trusted: shorter than 2048 bits, or factorable because
    it has the ROCA fingerprint (CVE-2017-15361)."""


class JwksError(IdentityError):
    """OIDC discovery or the JWKS fetch failed (network, HTTP status, content)."""


class InsecureUrlError(JwksError):
    """A key-source URL is not HTTPS and its host is not a loopback address."""


def www_authenticate(error: TokenError) -> str:
    """The RFC 6750 ``WWW-Authenticate`` value for a 401 answering ``error``."""
    message = error.public_message.replace('"', "'")
    return f'Bearer error="invalid_token", error_description="{message}"'
