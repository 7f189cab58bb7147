"""Registered-claim validation (RFC 7519 4.1) after the signature has been verified."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import (
    InvalidAudienceError,
    InvalidClaimError,
    InvalidIssuerError,
    MissingClaimError,
    TokenExpiredError,
    TokenIssuedInFutureError,
    TokenNotYetValidError,
    shown,
)

ALWAYS_REQUIRED = ("exp", "iss", "aud")


@dataclass(frozen=True, slots=True)
class ClaimRules:
    """The claim checks of one issuer, precomputed from its ``IssuerConfig``."""

    issuer: str
    audiences: frozenset[str]
    required: tuple[str, ...]
    leeway: float


@dataclass(frozen=True, slots=True)
class Checked:
    """The registered claims, validated."""

    subject: str | None
    audience: tuple[str, ...]
    expires_at: float
    issued_at: float | None
    not_before: float | None
    jti: str | None


def _time(claims: Mapping[str, Any], name: str, token_hash: str | None) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidClaimError(name, "must be a finite NumericDate", token_hash=token_hash)
    return float(value)


def _optional_str(claims: Mapping[str, Any], name: str, token_hash: str | None) -> str | None:
    value = claims.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidClaimError(name, "must be a string", token_hash=token_hash)
    return value


def _audience(
    claims: Mapping[str, Any], rules: ClaimRules, token_hash: str | None
) -> tuple[str, ...]:
    aud = claims["aud"]
    values = (aud,) if isinstance(aud, str) else aud
    if not isinstance(values, list | tuple) or not values:
        raise InvalidClaimError(
            "aud", "must be a string or a non-empty list", token_hash=token_hash
        )
    if not all(isinstance(value, str) for value in values):
        raise InvalidClaimError("aud", "must contain only strings", token_hash=token_hash)
    if rules.audiences.isdisjoint(values):
        raise InvalidAudienceError(
            f"aud {shown(values)} contains none of the accepted audiences", token_hash=token_hash
        )
    return tuple(values)


def check_claims(
    claims: Mapping[str, Any], rules: ClaimRules, now: float, token_hash: str | None
) -> Checked:
    """Validate required, issuer, audience and time claims; returns their values."""
    for name in rules.required:
        if name not in claims:
            raise MissingClaimError(name, token_hash=token_hash)
    issuer = claims["iss"]
    if issuer != rules.issuer:
        raise InvalidIssuerError(
            f"iss {shown(issuer)} is not {rules.issuer!r}", token_hash=token_hash
        )
    audience = _audience(claims, rules, token_hash)
    expires_at = _time(claims, "exp", token_hash)
    if expires_at is None:
        raise MissingClaimError("exp", token_hash=token_hash)
    if now - rules.leeway >= expires_at:
        raise TokenExpiredError(
            f"expired at {expires_at:.0f}, now {now:.0f} (leeway {rules.leeway:g}s)",
            token_hash=token_hash,
        )
    not_before = _time(claims, "nbf", token_hash)
    if not_before is not None and now + rules.leeway < not_before:
        raise TokenNotYetValidError(
            f"not before {not_before:.0f}, now {now:.0f} (leeway {rules.leeway:g}s)",
            token_hash=token_hash,
        )
    issued_at = _time(claims, "iat", token_hash)
    if issued_at is not None and issued_at > now + rules.leeway:
        raise TokenIssuedInFutureError(
            f"issued at {issued_at:.0f}, now {now:.0f} (leeway {rules.leeway:g}s)",
            token_hash=token_hash,
        )
    subject = _optional_str(claims, "sub", token_hash)
    jti = _optional_str(claims, "jti", token_hash)
    return Checked(subject, audience, expires_at, issued_at, not_before, jti)
