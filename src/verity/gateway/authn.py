"""Who is calling: the bearer token from ``Authorization``, verified by its issuer.

With one issuer every token goes to its verifier. With several, the unverified ``iss``
only chooses which verifier (and so which keys and algorithms, all from configuration)
checks the token; the verifier then checks ``iss`` again with everything else. No
credentials at all is the anonymous principal; bad credentials are a ``TokenError``.

A route's ``issuers:`` applies to browser sessions too: a session carries the verified
``iss`` of the ID token it was created from, and a session from any other issuer is
``SessionIssuerNotAcceptedError`` (the gateway answers 403 with a hint), never accepted.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence

from ..identity import (
    IdentityError,
    InvalidIssuerError,
    TokenError,
    TokenMalformedError,
    TokenTooLargeError,
    TokenVerifier,
)
from ..model import Principal
from .headers import RawHeaders, header_values

_TOKEN68 = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")
SessionAuthenticator = Callable[[RawHeaders], Awaitable[Principal | None]]
"""Finds the principal of a browser session cookie (``LoginService.authenticate_cookie``)."""


class MalformedCredentialsError(TokenMalformedError):
    """The ``Authorization`` header is not one well-formed ``Bearer`` credential."""

    public_message = "The Authorization header must be one Bearer token."


class SessionIssuerNotAcceptedError(IdentityError):
    """A browser session signed in through an issuer the route's ``issuers:`` leaves out."""

    def __init__(self, principal: Principal, issuer: str | None) -> None:
        self.principal = principal
        self.issuer = issuer
        super().__init__(f"session issuer {issuer!r} is not accepted on this route")


def session_issuer(principal: Principal) -> str | None:
    """The ``iss`` of the verified ID token a session was created from (None: unknown)."""
    issuer = principal.claims.get("iss")
    return issuer if isinstance(issuer, str) else None


def bearer_token(raw: RawHeaders) -> str | None:
    """The bearer token in ``Authorization``, ``None`` without one; malformed: error."""
    values = header_values(raw, b"authorization")
    if not values:
        return None
    if len(values) > 1:
        raise MalformedCredentialsError("more than one Authorization header")
    scheme, _, credentials = values[0].strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not _TOKEN68.match(credentials):
        raise MalformedCredentialsError("Authorization is not 'Bearer <token68>'")
    return credentials


def _unverified_issuer(token: str) -> str | None:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    segment = parts[1]
    try:
        payload = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        return None
    issuer = payload.get("iss") if isinstance(payload, dict) else None
    return issuer if isinstance(issuer, str) else None


class Authenticator:
    """Verifies bearer tokens against the configured issuers (one ``TokenVerifier`` each)."""

    def __init__(
        self, verifiers: Iterable[TokenVerifier], *, sessions: SessionAuthenticator | None = None
    ) -> None:
        self.verifiers = {v.config.issuer: v for v in verifiers}
        self.sessions = sessions
        self._max_bytes = max(
            (v.config.max_token_bytes for v in self.verifiers.values()), default=0
        )

    def _verifier(self, token: str, accepted: Sequence[str]) -> TokenVerifier:
        if not self.verifiers:
            raise InvalidIssuerError("no token issuers are configured")
        if len(token) > self._max_bytes:
            raise TokenTooLargeError(f"{len(token)} bytes exceeds every issuer's cap")
        if len(self.verifiers) == 1 and not accepted:
            return next(iter(self.verifiers.values()))
        issuer = _unverified_issuer(token)
        if issuer is None:
            raise TokenMalformedError("no readable 'iss' claim to choose a verifier")
        verifier = self.verifiers.get(issuer)
        if verifier is None or (accepted and issuer not in accepted):
            raise InvalidIssuerError("'iss' is not an issuer accepted on this route")
        return verifier

    async def authenticate(self, raw: RawHeaders, accepted: Sequence[str] = ()) -> Principal:
        """The verified principal, or anonymous without credentials.

        A bearer token wins; without one, a browser session cookie (when login is
        configured) names the principal. ``accepted`` restricts the issuers of tokens and
        of sessions alike (empty: every configured one). Raises a ``TokenError`` (answer
        401) for anything wrong with a token, ``SessionIssuerNotAcceptedError`` for a
        session from another issuer; an unknown, expired or revoked session is anonymous.
        """
        token = bearer_token(raw)
        if token is None:
            if self.sessions is not None:
                principal = await self.sessions(raw)
                if principal is not None:
                    issuer = session_issuer(principal)
                    if accepted and issuer not in accepted:  # unknown issuer: refused too
                        raise SessionIssuerNotAcceptedError(principal, issuer)
                    return principal
            return Principal.anonymous()
        verifier = self._verifier(token, accepted)
        return await verifier.aprincipal(token)  # the principal is cached with the token


__all__ = [
    "Authenticator",
    "MalformedCredentialsError",
    "SessionAuthenticator",
    "SessionIssuerNotAcceptedError",
    "TokenError",
    "bearer_token",
]
