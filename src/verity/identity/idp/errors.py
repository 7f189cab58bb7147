"""Errors of the embedded identity provider.

IdpError (an IdentityError)
 ├── UserExistsError     ``add`` of an e-mail address that is taken
 ├── UnknownUserError    no user with this id or e-mail address
 └── OAuthError          an OAuth/OIDC protocol error (``error`` code, HTTP status)

No message ever contains a password, TOTP secret or code, or token.
"""

from __future__ import annotations

from ..errors import IdentityError


class IdpError(IdentityError):
    """Root of the identity provider's errors."""


class UserExistsError(IdpError):
    """A user with this e-mail address exists already."""

    def __init__(self, email: str) -> None:
        self.email = email
        super().__init__(f"a user with e-mail {email!r} exists already")


class UnknownUserError(IdpError):
    """No such user."""

    def __init__(self, reference: str) -> None:
        self.reference = reference
        super().__init__(f"no user {reference!r}")


class OAuthError(IdpError):
    """An OAuth 2.0 error response: ``error`` (RFC 6749 code) and a safe description."""

    def __init__(self, error: str, description: str, *, status: int = 400) -> None:
        self.error = error
        self.description = description
        self.status = status
        super().__init__(f"{error}: {description}")

    def body(self) -> dict[str, str]:
        """The JSON error body (RFC 6749 section 5.2)."""
        return {"error": self.error, "error_description": self.description}
