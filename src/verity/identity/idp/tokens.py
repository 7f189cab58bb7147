"""Minting ID and access tokens (PyJWT), and verifying our own access tokens (userinfo).

ID tokens: ``typ: JWT``, ``aud`` = the client. Access tokens (RFC 9068): ``typ: at+jwt``,
``aud`` = ``access_token_audience``, so an ID token is never accepted as an access token
by a verifier that expects ``at+jwt``. Both carry ``email``, ``groups``, ``roles``,
``amr`` (RFC 8176), ``acr`` and ``auth_time``.
"""

from __future__ import annotations

import secrets
from typing import Any

import jwt

from ..config import IssuerConfig
from ..core import VerificationRules, VerifiedToken, token_bytes, token_hash, verify_token
from ..keys import keyset_from_jwks
from .config import IdpConfig
from .keys import SigningKeys
from .state import Authentication
from .users import User

ACR_PASSWORD = "urn:verity:acr:pwd"  # noqa: S105 - an acr value, not a secret
ACR_MFA = "urn:verity:acr:mfa"
ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - a media type, not a secret


def acr_for(amr: tuple[str, ...]) -> str:
    """The ``acr`` of a login: MFA when a second factor was used."""
    return ACR_MFA if "otp" in amr else ACR_PASSWORD


class TokenMinter:
    """Signs the provider's tokens with the current signing key."""

    def __init__(self, config: IdpConfig, keys: SigningKeys) -> None:
        self._config = config
        self._keys = keys

    def _identity_claims(self, user: User, auth: Authentication) -> dict[str, Any]:
        return {
            "iss": self._config.issuer,
            "sub": user.id,
            "email": user.email,
            "email_verified": True,
            "name": user.display_name or user.email,
            "groups": list(user.groups),
            "roles": list(user.roles),
            "amr": list(auth.amr),
            "acr": acr_for(auth.amr),
            "auth_time": int(auth.auth_time),
        }

    def _sign(self, claims: dict[str, Any], typ: str) -> str:
        key = self._keys.signer()
        headers = {"typ": typ, "kid": key.kid}
        return jwt.encode(claims, key.private, algorithm=key.algorithm, headers=headers)

    def id_token(
        self, user: User, *, client_id: str, nonce: str | None, auth: Authentication, now: float
    ) -> str:
        """A signed ID token for ``client_id``."""
        claims = self._identity_claims(user, auth)
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
        client_id: str,
        scope: tuple[str, ...],
        auth: Authentication,
        now: float,
    ) -> tuple[str, str]:
        """A signed access token for the gateway; returns ``(token, jti)``."""
        jti = secrets.token_hex(16)
        claims = self._identity_claims(user, auth)
        claims.update(
            aud=self._config.access_token_audience,
            client_id=client_id,
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
        issuer = IssuerConfig(
            issuer=self._config.issuer,
            audiences=(self._config.access_token_audience,),
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
