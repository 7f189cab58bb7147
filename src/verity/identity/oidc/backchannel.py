"""OpenID Connect Back-Channel Logout 1.0: verifying a logout token (section 2.6).

The token is a JWT from the provider: signature, ``iss``, ``aud`` (our client id),
``iat``, ``exp`` and ``jti`` are checked by the provider's ``TokenVerifier``; here come
the logout-specific rules: the ``events`` claim names the back-channel-logout event,
there is a ``sub`` and/or a ``sid``, there is no ``nonce``, the token is recent, and its
``jti`` was never seen before (an atomic counter in the shared ``CounterStore``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

from ...store import CounterStore
from ..errors import TokenError
from .errors import LogoutTokenError
from .provider import Provider

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
MAX_LOGOUT_TOKEN = 8192


@dataclass(frozen=True, slots=True)
class LogoutRequest:
    """Whose sessions a verified logout token ends: by ``sid``, ``sub`` or both."""

    issuer: str
    sub: str | None
    sid: str | None


def unverified_issuer(untrusted: str) -> str | None:
    """The ``iss`` of a JWT, unverified: only used to choose which provider verifies it."""
    parts = untrusted.split(".")
    if len(parts) != 3 or len(untrusted) > MAX_LOGOUT_TOKEN:
        return None
    segment = parts[1]
    try:
        payload = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        return None
    issuer = payload.get("iss") if isinstance(payload, dict) else None
    return issuer if isinstance(issuer, str) else None


def _optional_text(claims: Mapping[str, object], name: str) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise LogoutTokenError(f"logout token: '{name}' is not a non-empty string")
    return value


async def verify_logout_token(
    provider: Provider, untrusted: str, *, counters: CounterStore, max_age: float, now: float
) -> LogoutRequest:
    """The verified logout request, or ``LogoutTokenError`` naming the failed rule."""
    try:
        token = await provider.logout_tokens.averify(untrusted)
    except TokenError as exc:
        raise LogoutTokenError(f"logout token rejected: {exc.reason.value}") from None
    claims = token.claims
    events = claims.get("events")
    if not isinstance(events, Mapping) or not isinstance(events.get(BACKCHANNEL_EVENT), Mapping):
        raise LogoutTokenError("logout token: 'events' lacks the back-channel logout event")
    if "nonce" in claims:
        raise LogoutTokenError("logout token: a 'nonce' is forbidden")
    sub, sid = _optional_text(claims, "sub"), _optional_text(claims, "sid")
    if sub is None and sid is None:
        raise LogoutTokenError("logout token: neither 'sub' nor 'sid'")
    leeway = provider.config.leeway_seconds
    if token.issued_at is None or now - token.issued_at > max_age + leeway:
        raise LogoutTokenError("logout token: 'iat' is too old")
    if not token.jti:
        raise LogoutTokenError("logout token: no 'jti'")
    window = max_age + 2 * leeway
    if counters.hit(_jti_key(token.issuer, token.jti), window=window, now=now) > 1:
        raise LogoutTokenError("logout token: 'jti' was already used (replay)")
    return LogoutRequest(issuer=token.issuer, sub=sub, sid=sid)


def _jti_key(issuer: str, jti: str) -> str:
    digest = hashlib.sha256(f"{issuer}\x00{jti}".encode()).hexdigest()
    return f"verity:oidc:logout-jti:{digest}"
