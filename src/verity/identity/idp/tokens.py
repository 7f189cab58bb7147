"""Minting ID and access tokens (PyJWT), and verifying our own access tokens (userinfo).

ID tokens: ``typ: JWT``, ``aud`` = the client. Access tokens (RFC 9068): ``typ: at+jwt``,
``aud`` = the client's ``token_audiences`` (its client_id unless configured otherwise), so
an ID token is never accepted as an access token by a verifier that expects ``at+jwt``,
and one client's access token is not another audience's credential. Both carry ``sub``,
``amr`` (RFC 8176), ``acr`` and ``auth_time``, and only the user claims the granted scopes
release (``SCOPE_CLAIMS``: ``profile`` -> ``name``, ``email`` -> ``email``,
``email_verified``, ``groups`` -> ``groups``, ``roles`` -> ``roles``).
"""

from __future__ import annotations

import secrets
from typing import Any

import jwt

from ..config import IssuerConfig
from ..core import VerificationRules, VerifiedToken, token_bytes, token_hash, verify_token
from ..errors import TokenError
from ..idp_config import SCOPE_CLAIMS
from ..keys import keyset_from_jwks
from .config import IdpClient, IdpConfig
from .keys import SigningKeys
from .state import Authentication
from .users import User

ACR_PASSWORD = "urn:verity:acr:pwd"  # noqa: S105 - an acr value, not a secret
ACR_MFA = "urn:verity:acr:mfa"
ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - a media type, not a secret


def acr_for(amr: tuple[str, ...]) -> str:
    """The ``acr`` of a login: MFA when a second factor was used."""
    return ACR_MFA if "otp" in amr else ACR_PASSWORD


def user_claims(user: User, scope: tuple[str, ...]) -> dict[str, Any]:
    """The user's claims that ``scope`` releases (OIDC Core 5.4), ``sub`` always."""
    values: dict[str, Any] = {
        "name": user.display_name or user.email,
        "email": user.email,
        "email_verified": True,
        "groups": list(user.groups),
        "roles": list(user.roles),
    }
    claims: dict[str, Any] = {"sub": user.id}
    for name in scope:
        for claim in SCOPE_CLAIMS.get(name, ()):
            claims[claim] = values[claim]
    return claims


class TokenMinter:
    """Signs the provider's tokens with the current signing key."""

    def __init__(self, config: IdpConfig, keys: SigningKeys) -> None:
        self._config = config
        self._keys = keys

    def _identity_claims(
        self, user: User, auth: Authentication, scope: tuple[str, ...]
    ) -> dict[str, Any]:
        return {
            "iss": self._config.issuer,
            **user_claims(user, scope),
            "amr": list(auth.amr),
            "acr": acr_for(auth.amr),
            "auth_time": int(auth.auth_time),
        }

    def _sign(self, claims: dict[str, Any], typ: str) -> str:
        key = self._keys.signer()
        headers = {"typ": typ, "kid": key.kid}
        return jwt.encode(claims, key.private, algorithm=key.algorithm, headers=headers)

    def id_token(
        self,
        user: User,
        *,
        client_id: str,
        scope: tuple[str, ...],
        nonce: str | None,
        auth: Authentication,
        now: float,
    ) -> str:
        """A signed ID token for ``client_id`` with the claims ``scope`` releases."""
        claims = self._identity_claims(user, auth, scope)
        claims.update(
            aud=client_id,
            azp=client_id,
            iat=int(now),
            exp=int(now + self._config.lifetimes.id_token),
        )
        if nonce is not None:
            claims["nonce"] = nonce
        return self._sign(claims, "JWT")

    def access_token(
        self,
        user: User,
        *,
        client: IdpClient,
        scope: tuple[str, ...],
        auth: Authentication,
        now: float,
    ) -> tuple[str, str]:
        """A signed access token for the client's audiences; returns ``(token, jti)``."""
        jti = secrets.token_hex(16)
        claims = self._identity_claims(user, auth, scope)
        audiences = client.token_audiences
        claims.update(
            aud=audiences[0] if len(audiences) == 1 else list(audiences),
            client_id=client.client_id,
            scope=" ".join(scope),
            jti=jti,
            iat=int(now),
            nbf=int(now),
            exp=int(now + self._config.lifetimes.access_token),
        )
        return self._sign(claims, ACCESS_TOKEN_TYPE), jti

    def verify_access_token(self, untrusted_token: str, *, now: float) -> VerifiedToken:
        """Verify one of our access tokens (for userinfo). Raises ``TokenError``."""
        algorithm = self._keys.signer().algorithm
        audiences = self._config.access_token_audiences
        if not audiences:  # no client: no access token of ours can exist
            raise TokenError("no client is registered")
        issuer = IssuerConfig(
            issuer=self._config.issuer,
            audiences=audiences,
            algorithms=(algorithm,),  # type: ignore[arg-type]
            expected_typ=ACCESS_TOKEN_TYPE,
            required_claims=("sub", "jti"),
            leeway_seconds=0,
        )
        data = token_bytes(untrusted_token, issuer.max_token_bytes)
        keys = keyset_from_jwks(self._keys.jwks(), (algorithm,))
        return verify_token(
            data,
            rules=VerificationRules.from_config(issuer),
            keys=keys,
            now=now,
            digest=token_hash(data),
        )
