"""``Provider``: one configured OpenID Provider, as the relying party sees it.

Metadata comes from discovery (cached, kept if a later refresh fails); ID tokens and
back-channel logout tokens are verified by two ``TokenVerifier``s sharing one JWKS
source, so algorithms, issuer, audience and times are checked exactly as for bearer
tokens. Token-endpoint calls authenticate the client and send the PKCE verifier.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from urllib.parse import quote, urlencode

import httpx

from ..config import IssuerConfig
from ..core import VerifiedToken
from ..errors import TokenError
from ..fetch import JwksFetcher
from ..source import JwksSource
from ..verifier import TokenVerifier
from .config import ProviderConfig
from .discovery import ProviderMetadata, TokenResponse, fetch_metadata, token_request
from .errors import IdTokenError, ProviderError
from .idtoken import check_access_token_hash, check_authorized_party, check_nonce

log = logging.getLogger("verity.identity.oidc")
Clock = Callable[[], float]


def random_token(nbytes: int = 32) -> str:
    """A URL-safe random string (``state``, ``nonce``, PKCE verifier, cookie secrets)."""
    return secrets.token_urlsafe(nbytes)


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge of a PKCE verifier (RFC 7636 4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class Provider:
    """Discovery, token calls and token verification for one ``ProviderConfig``."""

    def __init__(
        self,
        config: ProviderConfig,
        *,
        clock: Clock = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
        metadata_ttl: float = 3600.0,
    ) -> None:
        """``transport`` replaces httpx's network transport (tests, proxies)."""
        self.config = config
        issuer = IssuerConfig(
            issuer=config.issuer,
            audiences=(config.client_id,),
            algorithms=config.algorithms,
            leeway_seconds=config.leeway_seconds,
            required_claims=("sub", "iat"),
            claims=config.claims,
            jwks=config.jwks,
        )
        source = JwksSource(JwksFetcher(issuer, async_transport=transport), clock=clock)
        self.id_tokens = TokenVerifier(issuer, keys=source, clock=clock)
        logout = issuer.model_copy(update={"required_claims": ("iat", "jti", "events")})
        self.logout_tokens = TokenVerifier(logout, keys=source, clock=clock)
        self._clock = clock
        self._transport = transport
        self._ttl = metadata_ttl
        self._metadata: ProviderMetadata | None = None
        self._metadata_expires = 0.0

    @property
    def name(self) -> str:
        """The provider's configured name."""
        return self.config.name

    async def metadata(self) -> ProviderMetadata:
        """The discovery metadata (cached; a failed refresh keeps the previous document)."""
        now = self._clock()
        if self._metadata is not None and now < self._metadata_expires:
            return self._metadata
        try:
            self._metadata = await fetch_metadata(
                self.config.issuer, timeout=self.config.timeout_seconds, transport=self._transport
            )
        except ProviderError:
            if self._metadata is None:
                raise
            log.warning("provider %s: discovery failed, using cached metadata", self.name)
        self._metadata_expires = now + self._ttl
        return self._metadata

    def authorization_url(
        self,
        metadata: ProviderMetadata,
        *,
        redirect_uri: str,
        state: str,
        nonce: str,
        verifier: str,
    ) -> str:
        """The authorization request (code flow, PKCE S256, state and nonce)."""
        params = {
            **self.config.extra_authorize_params,
            "response_type": "code",
            "client_id": self.config.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(self.config.scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": pkce_challenge(verifier),
            "code_challenge_method": "S256",
        }
        separator = "&" if "?" in metadata.authorization_endpoint else "?"
        return metadata.authorization_endpoint + separator + urlencode(params)

    def _client_auth(self, form: dict[str, str]) -> tuple[str, str] | None:
        form["client_id"] = self.config.client_id
        secret = self.config.client_secret
        if secret is None:
            return None
        if self.config.token_auth_method == "client_secret_post":  # noqa: S105 - a method name
            form["client_secret"] = secret.get_secret_value()
            return None
        # RFC 6749 2.3.1: both parts are form-urlencoded before Basic encoding.
        return quote(self.config.client_id, safe=""), quote(secret.get_secret_value(), safe="")

    async def _token(self, form: dict[str, str]) -> TokenResponse:
        metadata = await self.metadata()
        auth = self._client_auth(form)
        return await token_request(
            metadata.token_endpoint,
            form,
            auth=auth,
            timeout=self.config.timeout_seconds,
            transport=self._transport,
        )

    async def exchange_code(self, *, code: str, redirect_uri: str, verifier: str) -> TokenResponse:
        """Redeem an authorization code (with the PKCE verifier)."""
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        form["code_verifier"] = verifier
        return await self._token(form)

    async def refresh(self, refresh_token: str) -> TokenResponse:
        """Use a refresh token (RFC 6749 section 6)."""
        return await self._token({"grant_type": "refresh_token", "refresh_token": refresh_token})

    async def verify_id_token(
        self, untrusted: str, *, nonce: str | None, access_token: str | None
    ) -> VerifiedToken:
        """Verify an ID token: signature and claims, ``azp``, ``nonce`` (unless ``None``,
        for refreshes) and ``at_hash`` when present. Raises a ``LoginError``."""
        try:
            token = await self.id_tokens.averify(untrusted)
        except TokenError as exc:
            raise IdTokenError(
                f"ID token rejected: {exc.reason.value}", reason=exc.reason
            ) from None
        check_authorized_party(token, self.config.client_id)
        if nonce is not None:
            check_nonce(token.claims, nonce)
        check_access_token_hash(token, access_token)
        return token
