"""Browser-login errors. Each has a short ``public_message`` (safe for any browser) and
an HTTP ``status``; the exception text is for operators and never holds a token.

LoginError (an IdentityError)
 ├── UnknownProviderError   ``provider=`` names no configured provider
 ├── LoginStateError        no, unknown, expired or already-used login transaction, or
 │                          ``state`` mismatch (this is also how a replayed code ends)
 ├── NonceMismatchError     the ID token's ``nonce`` is missing or not this login's
 ├── IdTokenError           the ID token failed verification (``reason`` from TokenError)
 ├── ProviderError          discovery, token endpoint or an error answer from the IdP
 ├── LogoutTokenError       a back-channel logout token was rejected
 └── LogoutForgeryError     a logout without this session's CSRF token, or cross-site
"""

from __future__ import annotations

from typing import ClassVar

from ..errors import IdentityError, RejectionReason


class LoginError(IdentityError):
    """A browser login, logout or back-channel logout failed."""

    status: ClassVar[int] = 400
    public_message: ClassVar[str] = "The login failed. Please try again."


class UnknownProviderError(LoginError):
    """The requested identity provider is not configured."""

    status = 404
    public_message = "Unknown identity provider."


class LoginStateError(LoginError):
    """The login transaction is missing, expired, already used, or ``state`` differs."""

    public_message = "This login link expired or was already used. Please log in again."


class NonceMismatchError(LoginError):
    """The ID token does not carry this login's ``nonce``."""


class IdTokenError(LoginError):
    """The ID token was rejected; ``reason`` says why (expired, bad audience, ...)."""

    def __init__(self, message: str, *, reason: RejectionReason) -> None:
        super().__init__(message)
        self.reason = reason


class ProviderError(LoginError):
    """The identity provider could not be used or answered with an error."""

    status = 502
    public_message = "The identity provider could not complete the login."

    def __init__(self, message: str, *, error_code: str | None = None) -> None:
        super().__init__(message)
        self.error_code = error_code


class LogoutTokenError(LoginError):
    """A back-channel logout token was rejected (``invalid_request``)."""


class LogoutForgeryError(LoginError):
    """A logout request without this session's CSRF token, or sent from another site:
    the session is kept (a cross-site page must not sign anyone out)."""

    status = 403
    public_message = "This sign-out request did not come from the sign-out page. Nothing changed."
