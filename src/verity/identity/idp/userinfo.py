"""``/userinfo``: the claims of the user a valid, unrevoked access token stands for.

The claims are those the token's ``scope`` releases (``tokens.user_claims``), read from
the user's current record. A token is refused (401 ``invalid_token``) when its ``jti`` is
revoked, when the token itself is revoked (``TOKEN``, by the SHA-256 of its JWS signing
input), or when its subject is revoked (``SUBJECT``) at or after the token's ``iat``. If
the revocation store cannot be read, the request fails (503 from the app), never answers
with claims.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ...store.protocols import RevocationStore
from ...store.records import RevocationKind, token_hash
from ..core import VerifiedToken
from .errors import OAuthError
from .provider import IdentityProvider
from .tokens import user_claims


def signing_input_hash(untrusted_token: str) -> str:
    """SHA-256 (hex) of a JWS's signing input (``header.payload``, everything before the
    last ``.``): the same for every encoding of the signature of one token."""
    return hashlib.sha256(untrusted_token.rpartition(".")[0].encode()).hexdigest()


def _revoked(
    revocations: RevocationStore, untrusted_token: str, token: VerifiedToken, *, now: float
) -> bool:
    if revocations.is_revoked(RevocationKind.JTI, token.jti or "", now=now):
        return True
    # the signing-input hash, and the whole-token hash of revocations recorded before
    # TOKEN revocations were keyed on the signing input
    for value in dict.fromkeys((signing_input_hash(untrusted_token), token_hash(untrusted_token))):
        if revocations.is_revoked(RevocationKind.TOKEN, value, now=now):
            return True
    subject = revocations.lookup(RevocationKind.SUBJECT, token.subject or "", now=now)
    if subject is None:
        return False
    return token.issued_at is None or token.issued_at <= subject.revoked_at


def userinfo(provider: IdentityProvider, untrusted_token: str) -> dict[str, Any]:
    """Verify the access token and return the user's current claims that its scope
    releases.

    Raises ``TokenError`` (bad token), ``OAuthError`` (revoked, user gone or disabled) or
    ``StoreError`` (revocations or users cannot be read)."""
    if not untrusted_token:
        raise OAuthError("invalid_token", "A bearer access token is required.", status=401)
    now = provider.clock()
    token = provider.minter.verify_access_token(untrusted_token, now=now)
    revoked = OAuthError("invalid_token", "The access token is invalid.", status=401)
    if provider.revocations is not None and _revoked(
        provider.revocations, untrusted_token, token, now=now
    ):
        raise revoked
    user = provider.users.get(token.subject or "")
    if user is None or user.disabled:
        raise revoked
    scope = token.claims.get("scope")
    granted = tuple(scope.split()) if isinstance(scope, str) else ()
    return user_claims(user, granted)
