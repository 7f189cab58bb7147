"""``/token``: client authentication, code exchange with PKCE, refresh-token rotation.

Client secrets are compared in constant time. A code is redeemed once; presenting it
again is answered ``invalid_grant`` and revokes the refresh family and access tokens it
produced (RFC 6749 4.1.2), also when the second presentation races the first one on
another node (then neither gets usable tokens). Refresh tokens are issued only for the
``offline_access`` scope and rotated on every use; a used one presented again revokes its
family and every access token issued from the family (their ``jti``), including one a
rotation racing the reuse (on another node) is still minting: that rotation finds its
family revoked when it stores its new refresh token, revokes its own access token and
answers ``invalid_grant``. Who presents a code
or refresh token (the client; for a code also its ``redirect_uri`` and PKCE verifier) is
checked *before* it is consumed, so presenting it through another client neither burns it
nor triggers reuse detection against its rightful client.

Tokens carry the claims of the granted scopes only (``tokens.user_claims``), intersected
with the client's current registration; a refresh request may narrow the scope.

A refresh family lives at most ``lifetimes.refresh_family`` from the login it came from,
however often it is rotated. A ``SUBJECT`` revocation ("log out everywhere") recorded at
or after that login ends the family: the refresh (or a code exchange of that login) is
answered ``invalid_grant`` and nothing is issued. If the revocation store cannot be read,
the grant is refused the same way (fail closed): by then the refresh token was consumed,
so a retry could not succeed and the client has to log in again.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import unquote_plus

from ...store.errors import StoreError
from ...store.records import RevocationKind
from .authorize import pkce_matches
from .config import IdpClient
from .errors import OAuthError
from .provider import IdentityProvider
from .state import Authentication, CodeGrant, RefreshGrant, digest, new_secret

_INVALID_GRANT = "The grant is invalid, expired, already used or was issued to another client."
_ENDED = "The login this grant comes from has ended; log in again."

log = logging.getLogger("verity.identity.idp")


def _invalid_client() -> OAuthError:
    return OAuthError("invalid_client", "Client authentication failed.", status=401)


def _basic(header: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _invalid_client() from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise _invalid_client()
    return unquote_plus(client_id), unquote_plus(secret)


def authenticate_client(
    provider: IdentityProvider, form: Mapping[str, str], authorization: str | None
) -> IdpClient:
    """The client making the request: ``client_secret_basic``, ``client_secret_post``, or
    a public client naming itself by ``client_id`` (then PKCE is its only proof)."""
    secret: str | None = form.get("client_secret")
    client_id = form.get("client_id")
    if authorization and authorization[:6].lower() == "basic ":
        if secret is not None:
            raise OAuthError("invalid_request", "Use one client authentication method.")
        basic_id, secret = _basic(authorization)
        if client_id is not None and client_id != basic_id:
            raise _invalid_client()
        client_id = basic_id
    client = provider.config.client(client_id or "")
    if client is None:
        raise _invalid_client()
    if client.client_secret is None:
        if secret is not None:
            raise _invalid_client()
        return client
    expected = client.client_secret.get_secret_value().encode()
    if secret is None or not hmac.compare_digest(secret.encode(), expected):
        raise _invalid_client()
    return client


def token_response(
    provider: IdentityProvider, form: Mapping[str, str], authorization: str | None
) -> dict[str, Any]:
    """The JSON body of a successful token response; raises ``OAuthError``."""
    client = authenticate_client(provider, form, authorization)
    grant_type = form.get("grant_type")
    if grant_type == "authorization_code":
        return _exchange_code(provider, client, form)
    if grant_type == "refresh_token":
        return _refresh(provider, client, form)
    raise OAuthError("unsupported_grant_type", "Use authorization_code or refresh_token.")


def _revoke_family(
    provider: IdentityProvider, family: str, *, jtis: tuple[str, ...] = (), reason: str
) -> None:
    """Revoke a refresh family and every access token issued from it: ``jtis`` and the
    ids recorded with the family's refresh tokens (via the revocation store)."""
    provider.state.revoke_family(family)
    if provider.revocations is None:
        return
    expires = provider.clock() + provider.config.lifetimes.access_token + 60
    for jti in dict.fromkeys((*jtis, *provider.state.family_jtis(family))):
        provider.revocations.revoke(RevocationKind.JTI, jti, expires=expires, reason=reason)


def _revoke_results(provider: IdentityProvider, grant: CodeGrant) -> None:
    reason = "authorization code reused"
    if grant.family is not None:
        _revoke_family(provider, grant.family, jtis=grant.jtis, reason=reason)
        return
    if provider.revocations is not None:
        expires = provider.clock() + provider.config.lifetimes.access_token + 60
        for jti in grant.jtis:
            provider.revocations.revoke(RevocationKind.JTI, jti, expires=expires, reason=reason)


def _exchange_code(
    provider: IdentityProvider, client: IdpClient, form: Mapping[str, str]
) -> dict[str, Any]:
    code = form.get("code", "")
    code_hash = digest(code)
    now = provider.clock()
    # who presents the code is checked before it is redeemed: another client, another
    # redirect_uri or a wrong verifier neither burns the code nor counts as its reuse
    seen = provider.state.peek_code(code_hash, now=now)
    if seen is None:
        raise OAuthError("invalid_grant", _INVALID_GRANT)
    if seen.client_id != client.client_id or form.get("redirect_uri") != seen.redirect_uri:
        raise OAuthError("invalid_grant", _INVALID_GRANT)
    if not pkce_matches(form.get("code_verifier", ""), seen.code_challenge):
        raise OAuthError("invalid_grant", "PKCE verification failed.")
    grant = provider.state.redeem_code(code_hash, now=now)
    if grant is None:
        raise OAuthError("invalid_grant", _INVALID_GRANT)
    if grant.used:
        _revoke_results(provider, grant)
        raise OAuthError("invalid_grant", _INVALID_GRANT)
    if _login_ended(provider, grant.auth):
        raise OAuthError("invalid_grant", _ENDED)
    family = new_secret()
    scope = _allowed(client, grant.scope)
    body, jti = _checked_issue(provider, client, scope, scope, grant.auth, grant.nonce, family)
    if provider.state.record_code_result(code_hash, family=family, jtis=(jti,)):
        # presented again (on this node or another) while these tokens were minted
        _revoke_results(provider, replace(grant, family=family, jtis=(jti,)))
        raise OAuthError("invalid_grant", _INVALID_GRANT)
    return body


def _allowed(client: IdpClient, scope: tuple[str, ...]) -> tuple[str, ...]:
    """The granted scopes the client may still have (its registration may have shrunk)."""
    return tuple(name for name in scope if name in client.scopes)


def _narrowed(form: Mapping[str, str], granted: tuple[str, ...]) -> tuple[str, ...]:
    """The scope of a refresh request (RFC 6749 6): the grant's, or a subset of it."""
    requested = form.get("scope")
    if requested is None:
        return granted
    scope = tuple(dict.fromkeys(requested.split()))
    if "openid" not in scope or not set(scope) <= set(granted):
        raise OAuthError("invalid_scope", "The scope must be openid and granted scopes only.")
    return scope


def _refresh(
    provider: IdentityProvider, client: IdpClient, form: Mapping[str, str]
) -> dict[str, Any]:
    token_hash = digest(form.get("refresh_token", ""))
    now = provider.clock()
    # the presenting client is checked before the token is used: a token presented
    # through another client is refused and stays valid for its own client
    seen = provider.state.peek_refresh(token_hash, now=now)
    if seen is None or seen.client_id != client.client_id:
        raise OAuthError("invalid_grant", _INVALID_GRANT)
    granted = _allowed(client, seen.scope)
    scope = _narrowed(form, granted)  # a bad request does not use the token either
    grant = provider.state.redeem_refresh(token_hash, now=now)
    if grant is None:  # used before (reuse: the store revoked the family) or revoked
        _revoke_family(provider, seen.family, reason="refresh token reused")
        raise OAuthError("invalid_grant", _INVALID_GRANT)
    if "offline_access" not in client.scopes:  # the client may no longer refresh
        _revoke_family(provider, grant.family, reason="client may not refresh")
        raise OAuthError("invalid_grant", _INVALID_GRANT)
    if provider.clock() >= _family_deadline(provider, grant.auth) or _login_ended(
        provider, grant.auth
    ):
        provider.state.revoke_family(grant.family)
        raise OAuthError("invalid_grant", _ENDED)
    return _checked_issue(provider, client, scope, granted, grant.auth, None, grant.family)[0]


def _checked_issue(
    provider: IdentityProvider,
    client: IdpClient,
    scope: tuple[str, ...],
    granted: tuple[str, ...],
    auth: Authentication,
    nonce: str | None,
    family: str,
) -> tuple[dict[str, Any], str]:
    """``_issue``, then look for a ``SUBJECT`` revocation again: one recorded between the
    first look and the minting would not cover the new tokens (their ``iat`` can be later),
    so the family is revoked and the tokens are never sent. One recorded after the minting
    covers them by ``iat``."""
    body, jti = _issue(provider, client, scope, granted, auth, nonce, family)
    if _login_ended(provider, auth):
        provider.state.revoke_family(family)
        raise OAuthError("invalid_grant", _ENDED)
    return body, jti


def _family_deadline(provider: IdentityProvider, auth: Authentication) -> float:
    """When every refresh token from the login ``auth`` stops, however often rotated."""
    return auth.auth_time + provider.config.lifetimes.refresh_family


def _unreadable(exc: StoreError) -> None:
    # the message holds the store URL with its password masked, never a token
    log.error("token grant refused: the revocation store cannot be read: %s", exc)


def _login_ended(provider: IdentityProvider, auth: Authentication) -> bool:
    """Whether a ``SUBJECT`` revocation recorded at or after the login ``auth`` is in
    force; ``True`` also when the revocation store cannot be read (fail closed)."""
    if provider.revocations is None:
        return False
    try:
        revocation = provider.revocations.lookup(
            RevocationKind.SUBJECT, auth.user_id, now=provider.clock()
        )
    except StoreError as exc:
        _unreadable(exc)
        return True
    return revocation is not None and revocation.revoked_at >= auth.auth_time


def _issue(
    provider: IdentityProvider,
    client: IdpClient,
    scope: tuple[str, ...],
    granted: tuple[str, ...],
    auth: Authentication,
    nonce: str | None,
    family: str,
) -> tuple[dict[str, Any], str]:
    """Tokens for ``scope``; a refresh token (keeping the whole ``granted`` scope) only
    when ``offline_access`` was granted."""
    user = provider.users.get(auth.user_id)
    if user is None or user.disabled:
        provider.state.revoke_family(family)
        raise OAuthError("invalid_grant", _INVALID_GRANT)
    now = provider.clock()
    lifetimes = provider.config.lifetimes
    access, jti = provider.minter.access_token(user, client=client, scope=scope, auth=auth, now=now)
    id_token = provider.minter.id_token(
        user, client_id=client.client_id, scope=scope, nonce=nonce, auth=auth, now=now
    )
    body: dict[str, Any] = {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": int(lifetimes.access_token),
        "id_token": id_token,
        "scope": " ".join(scope),
    }
    if "offline_access" in granted:
        refresh = new_secret()
        expires = min(now + lifetimes.refresh_token, _family_deadline(provider, auth))
        record = RefreshGrant(family, client.client_id, granted, auth, expires, jti=jti)
        if provider.state.put_refresh(digest(refresh), record):
            # the family was revoked while these tokens were minted (reuse detected on
            # another node between this refresh's redemption and now): the revocation
            # could not see this jti yet, so it is revoked here and nothing is sent
            _revoke_family(provider, family, jtis=(jti,), reason="refresh token reused")
            raise OAuthError("invalid_grant", _INVALID_GRANT)
        body["refresh_token"] = refresh
    return body, jti
