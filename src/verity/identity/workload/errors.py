"""Workload-identity errors: SPIFFE ID grammar, SVID rejection (one reason each), CA problems.

WorkloadIdentityError (an IdentityError)
 ├── InvalidSpiffeIdError     a string is not a SPIFFE ID (``problem`` says which rule)
 ├── SvidRejectedError        an X.509-SVID chain was rejected (``reason``: SvidRejection)
 ├── JwtSvidError             a JWT-SVID is not a valid SVID beyond the token checks
 ├── TrustBundleError         a trust bundle file (PEM or SPIFFE JWKS) is unusable
 └── CertificateAuthorityError  CA files missing/unreadable, TTL over the maximum, ...

JWT-SVID token failures (signature, ``exp``, ``aud``, ...) are the ``TokenError``
subclasses of ``verity.identity.errors``. No message ever contains key material.
"""

from __future__ import annotations

import enum

from ..errors import IdentityError, shown


class WorkloadIdentityError(IdentityError):
    """Root of every workload-identity error."""


class InvalidSpiffeIdError(WorkloadIdentityError, ValueError):
    """``value`` is not a valid SPIFFE ID; ``problem`` names the violated rule."""

    def __init__(self, value: object, problem: str) -> None:
        self.value = value
        self.problem = problem
        super().__init__(f"invalid SPIFFE ID {shown(value)}: {problem}")


class SvidRejection(enum.Enum):
    """Why an X.509-SVID was rejected (stable codes for ``--json``, audit and metrics)."""

    MALFORMED = "malformed"
    NO_URI_SAN = "no_uri_san"
    MULTIPLE_URI_SANS = "multiple_uri_sans"
    NOT_SPIFFE = "not_spiffe_id"
    WRONG_TRUST_DOMAIN = "wrong_trust_domain"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    CA_AS_LEAF = "ca_as_leaf"
    BAD_KEY_USAGE = "bad_key_usage"
    UNKNOWN_ROOT = "unknown_root"
    BAD_SIGNATURE = "bad_signature"
    INVALID_CHAIN = "invalid_chain"


class SvidRejectedError(WorkloadIdentityError):
    """A peer's X.509-SVID chain failed verification for ``reason``."""

    def __init__(self, reason: SvidRejection, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"X.509-SVID rejected ({reason.value}): {detail}")


class JwtSvidError(WorkloadIdentityError):
    """A JWT-SVID passed the token checks but is not a valid SVID (``sub``, lifetime)."""


class TrustBundleError(WorkloadIdentityError):
    """A trust bundle (PEM or SPIFFE bundle JWKS) cannot be read or is inconsistent."""


class CertificateAuthorityError(WorkloadIdentityError):
    """The certificate authority cannot do what was asked (files, TTL, key type)."""
