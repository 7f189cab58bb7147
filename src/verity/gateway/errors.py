"""Gateway errors: refusals of malformed requests and setup failures.

GatewayError (a VerityError)
 ├── BadRequestError        a request the gateway refuses before any decision (4xx)
 └── AssertionKeyError      the assertion signing key cannot be loaded or is not P-256

A ``BadRequestError`` carries the HTTP ``status`` and a short ``public_message`` that is
safe to show to any client; it never contains request data.
"""

from __future__ import annotations

from ..errors import VerityError


class GatewayError(VerityError):
    """Root of every gateway error."""


class BadRequestError(GatewayError):
    """The request is malformed (bad Host, oversized headers, bad method...): answer 4xx.

    ``reason_code`` is the audited reason when a subclass names one."""

    reason_code: str | None = None

    def __init__(self, status: int, public_message: str) -> None:
        self.status = status
        self.public_message = public_message
        super().__init__(f"HTTP {status}: {public_message}")


class AssertionKeyError(GatewayError):
    """The identity-assertion signing key is unreadable or not an EC P-256 private key."""
