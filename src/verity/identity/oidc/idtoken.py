"""ID-token checks beyond JWT verification (OIDC Core 3.1.3.7): nonce, azp, at_hash,
and the rules for an ID token returned by a refresh (12.2)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from ..core import VerifiedToken
from ..errors import RejectionReason
from .errors import IdTokenError, NonceMismatchError

_HASHES = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}


def _same(a: object, b: str) -> bool:
    return isinstance(a, str) and hmac.compare_digest(a.encode(), b.encode())


def check_nonce(claims: Mapping[str, Any], expected: str) -> None:
    """The ``nonce`` claim must be present and equal to this login's nonce."""
    if "nonce" not in claims:
        raise NonceMismatchError("the ID token has no nonce")
    if not _same(claims["nonce"], expected):
        raise NonceMismatchError("the ID token's nonce is not this login's")


def check_authorized_party(token: VerifiedToken, client_id: str) -> None:
    """With several audiences ``azp`` must be present; when present it must be us."""
    azp = token.claims.get("azp")
    if azp is None and len(token.audience) > 1:
        raise IdTokenError("several audiences and no azp", reason=RejectionReason.BAD_AUDIENCE)
    if azp is not None and azp != client_id:
        raise IdTokenError("azp is another client", reason=RejectionReason.BAD_AUDIENCE)


def token_hash_claim(value: str, algorithm: str) -> str:
    """``at_hash``/``c_hash``: left half of the hash of ``value``, base64url (OIDC 3.1.3.6)."""
    digest = hashlib.sha512 if algorithm == "EdDSA" else _HASHES[algorithm[-3:]]
    full = digest(value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(full[: len(full) // 2]).rstrip(b"=").decode()


def check_access_token_hash(token: VerifiedToken, access_token: str | None) -> None:
    """``at_hash`` is optional; when present it must match the access token returned."""
    at_hash = token.claims.get("at_hash")
    if at_hash is None or access_token is None:
        return
    if not _same(at_hash, token_hash_claim(access_token, token.algorithm)):
        raise IdTokenError("at_hash does not match", reason=RejectionReason.INVALID_CLAIM)


def check_refreshed(token: VerifiedToken, *, subject: str, auth_time: float | None) -> None:
    """A refreshed ID token names the same subject (and the same ``auth_time`` if any)."""
    invalid = RejectionReason.INVALID_CLAIM
    if token.subject != subject:
        raise IdTokenError("refreshed ID token for another subject", reason=invalid)
    new_time = token.claims.get("auth_time")
    if auth_time is not None and new_time is not None and new_time != auth_time:
        raise IdTokenError("refreshed ID token changed auth_time", reason=invalid)
