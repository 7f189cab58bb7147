"""JWT-SVIDs (SPIFFE JWT-SVID spec): issuance by the CA's JWT key and verification.

Verification reuses ``verity.identity.core.verify_token`` (size cap, strict JOSE parsing,
algorithm allow-list, forbidden ``jku``/``x5u``/``jwk``/``x5c`` headers, key binding,
signature, then ``iss``/``aud``/``exp``/``nbf``/``iat``), then adds the SVID rules:
asymmetric algorithms only, ``sub`` a workload SPIFFE ID of the bundle's trust domain,
``aud`` and ``exp`` required, and a lifetime no longer than the configured maximum.
Tokens carry ``iss`` = the trust domain's SPIFFE ID, and verification requires it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import jwt

from ...model import Principal, PrincipalKind
from .._claims import ClaimRules
from .._jose import b64url_decode, json_object, split_compact
from ..core import VerificationRules, VerifiedToken, token_bytes, token_hash, verify_token
from ..dev import public_jwk
from ..errors import TokenMalformedError, WrongTokenTypeError
from .bundle import TrustBundle
from .ca import CertificateAuthority
from .config import WorkloadConfig
from .errors import CertificateAuthorityError, InvalidSpiffeIdError, JwtSvidError
from .spiffe import SpiffeId

JWT_SVID_ALGORITHMS = ("ES256", "ES384", "ES512", "RS256", "PS256", "EdDSA")
MAX_TOKEN_BYTES = 8192
_DEFAULTS = WorkloadConfig()


@dataclass(frozen=True, slots=True)
class VerifiedJwtSvid:
    """A verified JWT-SVID: the workload's SPIFFE ID and the verified token."""

    spiffe_id: SpiffeId
    token: VerifiedToken

    @property
    def audience(self) -> tuple[str, ...]:
        return self.token.audience

    @property
    def expires_at(self) -> float:
        return self.token.expires_at


def issue_jwt_svid(
    ca: CertificateAuthority,
    spiffe_id: SpiffeId | str,
    *,
    audience: str | Iterable[str],
    ttl: float = _DEFAULTS.jwt_default_ttl_seconds,
    max_ttl: float = _DEFAULTS.jwt_max_ttl_seconds,
    now: float | None = None,
) -> str:
    """A JWT-SVID for ``spiffe_id`` (a workload of ``ca``'s trust domain), signed ES256."""
    sid = SpiffeId.parse(spiffe_id) if isinstance(spiffe_id, str) else spiffe_id
    if sid.is_trust_domain or not sid.member_of(ca.trust_domain):
        raise CertificateAuthorityError(f"{sid} is not a workload of {ca.trust_domain!r}")
    audiences = [audience] if isinstance(audience, str) else list(audience)
    if not audiences or not all(audiences):
        raise CertificateAuthorityError("a JWT-SVID needs at least one audience")
    if not 0 < ttl <= max_ttl:
        raise CertificateAuthorityError(f"the lifetime must be in (0, {max_ttl:g}] seconds")
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": str(sid.trust_domain_id), "sub": str(sid),
        "aud": audiences[0] if len(audiences) == 1 else audiences,
        "iat": issued, "exp": issued + int(ttl), "jti": uuid.uuid4().hex,
    }  # fmt: skip
    kid = public_jwk(ca.jwt_key, "ES256")["kid"]
    return jwt.encode(claims, ca.jwt_key, algorithm="ES256", headers={"typ": "JWT", "kid": kid})


def _claimed_trust_domain(token: bytes, digest: str) -> str:
    """The trust domain the (still unverified) ``sub`` names: only to pick the bundle."""
    jws = split_compact(token, digest)
    claims = json_object(b64url_decode(jws.payload_segment, "payload", digest), "payload", digest)
    try:
        return SpiffeId.parse(claims.get("sub")).trust_domain  # type: ignore[arg-type]
    except InvalidSpiffeIdError as exc:
        raise JwtSvidError(f"'sub' is not a SPIFFE ID: {exc.problem}") from None


def _bundle(trust_domain: str, bundles: TrustBundle | Iterable[TrustBundle]) -> TrustBundle:
    for bundle in (bundles,) if isinstance(bundles, TrustBundle) else bundles:
        if bundle.trust_domain == trust_domain:
            return bundle
    raise JwtSvidError(f"trust domain {trust_domain!r} is not trusted")


def verify_jwt_svid(
    untrusted_token: str | bytes,
    bundles: TrustBundle | Iterable[TrustBundle],
    *,
    audience: str | Iterable[str],
    now: float | None = None,
    leeway: float = _DEFAULTS.leeway_seconds,
    max_ttl: float = _DEFAULTS.jwt_max_ttl_seconds,
) -> VerifiedJwtSvid:
    """Verify a JWT-SVID for one of our ``audience`` values.

    Raises the ``TokenError`` of the failed token check, or ``JwtSvidError``.
    """
    raw = token_bytes(untrusted_token, MAX_TOKEN_BYTES)
    digest = token_hash(raw)
    bundle = _bundle(_claimed_trust_domain(raw, digest), bundles)
    accepted = frozenset([audience] if isinstance(audience, str) else audience)
    rules = VerificationRules(
        algorithms=frozenset(JWT_SVID_ALGORITHMS), expected_typ=None,
        critical_headers=frozenset(), max_token_bytes=MAX_TOKEN_BYTES,
        claims=ClaimRules(
            issuer=str(SpiffeId.for_trust_domain(bundle.trust_domain)), audiences=accepted,
            required=("exp", "iss", "aud", "sub"), leeway=leeway,
        ),
    )  # fmt: skip
    at = time.time() if now is None else now
    keys = bundle.jwt_keyset(JWT_SVID_ALGORITHMS)
    verified = verify_token(raw, rules=rules, keys=keys, now=at, digest=digest)
    typ = verified.header.get("typ")
    if typ is not None and typ not in ("JWT", "JOSE"):
        raise WrongTokenTypeError("a JWT-SVID's typ must be JWT or JOSE", token_hash=digest)
    if verified.subject is None:
        raise TokenMalformedError("no 'sub'", token_hash=digest)
    sid = SpiffeId.parse(verified.subject)
    if sid.is_trust_domain or not sid.member_of(bundle.trust_domain):
        raise JwtSvidError(f"'sub' {sid} is not a workload of {bundle.trust_domain!r}")
    start = verified.issued_at if verified.issued_at is not None else at
    if verified.expires_at - min(start, at) > max_ttl + leeway:
        raise JwtSvidError(f"the token lives longer than the maximum of {max_ttl:g} seconds")
    return VerifiedJwtSvid(sid, verified)


def principal_from_jwt_svid(verified: VerifiedJwtSvid) -> Principal:
    """The workload as a policy principal (``kind=SERVICE``, ``spiffe_id`` set)."""
    sid = str(verified.spiffe_id)
    return Principal(
        id=sid, kind=PrincipalKind.SERVICE, spiffe_id=sid,
        auth_methods=frozenset({"jwt-svid"}),
        claims={"trust_domain": verified.spiffe_id.trust_domain},
    )  # fmt: skip
