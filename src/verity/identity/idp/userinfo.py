"""``/userinfo``: the claims of the user a valid, unrevoked access token stands for."""

from __future__ import annotations

from typing import Any

from ...store.records import RevocationKind
from .errors import OAuthError
from .provider import IdentityProvider


def userinfo(provider: IdentityProvider, untrusted_token: str) -> dict[str, Any]:
    """Verify the access token and return the user's current claims.

    Raises ``TokenError`` (bad token) or ``OAuthError`` (revoked, user gone or disabled)."""
    if not untrusted_token:
        raise OAuthError("invalid_token", "A bearer access token is required.", status=401)
    token = provider.minter.verify_access_token(untrusted_token, now=provider.clock())
    revoked = OAuthError("invalid_token", "The access token is invalid.", status=401)
    jti = token.jti or ""
    if provider.revocations is not None and provider.revocations.is_revoked(
        RevocationKind.JTI, jti
    ):
        raise revoked
    user = provider.users.get(token.subject or "")
    if user is None or user.disabled:
        raise revoked
    return {
        "sub": user.id,
        "email": user.email,
        "email_verified": True,
        "name": user.display_name or user.email,
        "groups": list(user.groups),
        "roles": list(user.roles),
    }
