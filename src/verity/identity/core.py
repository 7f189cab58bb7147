"""The pure verification core: token + rules + keys + time -> ``VerifiedToken`` or an error.

No I/O, no clock, no cache: everything it needs is an argument, so it is deterministic
and easy to test. Order (RFC 8725): size, structure, header policy, algorithm allow-list,
key selection, signature, and only then the claims.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ._claims import ALWAYS_REQUIRED, ClaimRules, check_claims
from ._jose import (
    b64url_decode,
    check_algorithm,
    check_header,
    check_signature_present,
    json_object,
    split_compact,
)
from .config import IssuerConfig
from .errors import BadSignatureError, TokenMalformedError, TokenTooLargeError
from .keys import KeySet


@dataclass(frozen=True, slots=True)
class VerificationRules:
    """An ``IssuerConfig`` compiled for the hot path."""

    algorithms: frozenset[str]
    expected_typ: str | None
    critical_headers: frozenset[str]
    max_token_bytes: int
    claims: ClaimRules

    @classmethod
    def from_config(cls, config: IssuerConfig) -> VerificationRules:
        """Precompute the checks of ``config``."""
        required = tuple(dict.fromkeys((*ALWAYS_REQUIRED, *config.required_claims)))
        return cls(
            algorithms=frozenset(config.algorithms),
            expected_typ=config.expected_typ,
            critical_headers=config.critical_headers,
            max_token_bytes=config.max_token_bytes,
            claims=ClaimRules(
                issuer=config.issuer,
                audiences=frozenset(config.audiences),
                required=required,
                leeway=config.leeway_seconds,
            ),
        )


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """A token whose signature and claims were verified. Claims and header are read-only."""

    claims: Mapping[str, Any] = field(repr=False)
    header: Mapping[str, Any] = field(repr=False)
    issuer: str
    subject: str | None
    audience: tuple[str, ...]
    expires_at: float
    issued_at: float | None
    not_before: float | None
    key_id: str | None
    algorithm: str
    jti: str | None
    token_hash: str
    signing_input_hash: str  # SHA-256 hex of ``header.payload``: what TOKEN revocations key on


def token_bytes(untrusted_token: str | bytes, max_bytes: int) -> bytes:
    """The token as ASCII bytes, after the size cap (checked before anything else)."""
    if not isinstance(untrusted_token, (str, bytes)):  # a tuple: faster than a union
        raise TokenMalformedError("token must be str or bytes")
    if len(untrusted_token) > max_bytes:
        raise TokenTooLargeError(f"{len(untrusted_token)} bytes exceeds the {max_bytes}-byte cap")
    if isinstance(untrusted_token, bytes):
        return untrusted_token
    try:
        return untrusted_token.encode("ascii")
    except UnicodeEncodeError:
        raise TokenMalformedError("token contains non-ASCII characters") from None


def token_hash(token: bytes) -> str:
    """SHA-256 of the token, hex: the cache key and the token's safe fingerprint in logs."""
    return hashlib.sha256(token).hexdigest()


def signing_input_hash(token: str | bytes) -> str:
    """SHA-256 (hex) of a compact JWS's signing input: ``header.payload``, everything
    before the last ``.``. A TOKEN revocation keys on it, so every signature over the
    same header and payload (ECDSA's (r, n - s) twin, another encoding of the signature
    segment) is revoked with the token. Raises ``ValueError`` for text with no ``.``."""
    data = token.encode("ascii") if isinstance(token, str) else token
    signing_input, dot, _ = data.rpartition(b".")
    if not dot or b"." not in signing_input:
        raise ValueError("not a compact JWS (header.payload.signature)")
    return hashlib.sha256(signing_input).hexdigest()


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _freeze(value: Any) -> Any:
    """Parsed JSON, read-only: objects become mapping proxies and arrays tuples."""
    if type(value) is dict:
        return MappingProxyType(
            {k: v if type(v) in _SCALARS else _freeze(v) for k, v in value.items()}
        )
    if type(value) is list:
        return tuple(v if type(v) in _SCALARS else _freeze(v) for v in value)
    return value


def verify_token(
    untrusted_token: bytes, *, rules: VerificationRules, keys: KeySet, now: float, digest: str
) -> VerifiedToken:
    """Verify a size-checked token (``token_bytes``) whose SHA-256 hex is ``digest``.

    Raises the ``TokenError`` subclass naming the first check that failed.
    """
    jws = split_compact(untrusted_token, digest)
    header = jws.header
    alg = check_algorithm(header, rules.algorithms, digest)
    kid = check_header(
        header,
        expected_typ=rules.expected_typ,
        understood_crit=rules.critical_headers,
        token_hash=digest,
    )
    check_signature_present(jws, digest)
    key = keys.select(kid, alg, digest)
    if not key.verify(jws.signing_input, jws.signature):
        raise BadSignatureError(
            f"signature does not verify with key {key.kid!r} ({key.algorithm})", token_hash=digest
        )
    payload = b64url_decode(jws.payload_segment, "payload", digest)
    claims = json_object(payload, "payload", digest)
    checked = check_claims(claims, rules.claims, now, digest)
    return VerifiedToken(
        claims=_freeze(claims),
        header=_freeze(header),
        issuer=rules.claims.issuer,
        subject=checked.subject,
        audience=checked.audience,
        expires_at=checked.expires_at,
        issued_at=checked.issued_at,
        not_before=checked.not_before,
        key_id=key.kid,
        algorithm=alg,
        jti=checked.jti,
        token_hash=digest,
        signing_input_hash=hashlib.sha256(jws.signing_input).hexdigest(),
    )
