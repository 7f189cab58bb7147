"""Revocations must hold for every form of a revoked token, and across clock skew.

- TOKEN revocations key on the SHA-256 of the JWS signing input (``header.payload``): an
  ECDSA signature (r, s) has a second valid form (r, n - s), so a revocation keyed on the
  whole token would let its holder replay a twin with the same claims.
- SUBJECT revocations allow the verifier's leeway: a token minted before the revocation
  by an issuer whose clock runs ahead (within the leeway) is still refused.
"""

from __future__ import annotations

import base64

import pytest

from verity.identity import KeySet, TokenRevokedError, TokenVerifier
from verity.identity.core import signing_input_hash
from verity.identity.revocation_sync import apply_to_verifier
from verity.store import Revocation, RevocationKind, token_hash

from .conftest import AUDIENCE, ISSUER, NOW, Clock, SigningKey, b64, claims, make_config, sign

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def twin(es256_token: str) -> str:
    """The same ES256 token with its signature (r, s) replaced by (r, n - s)."""
    header, payload, signature = es256_token.split(".")
    raw = _b64decode(signature)
    r, s = raw[:32], int.from_bytes(raw[32:], "big")
    return f"{header}.{payload}.{b64(r + (P256_ORDER - s).to_bytes(32, 'big'))}"


def revocation(kind: RevocationKind, value: str, revoked_at: float) -> Revocation:
    return Revocation(kind, value, revoked_at=revoked_at, expires=revoked_at + 600)


@pytest.fixture
def verifier(keyset: KeySet, clock: Clock) -> TokenVerifier:
    return TokenVerifier(make_config(), keys=keyset, clock=clock)


def test_the_high_s_twin_is_a_valid_token_when_nothing_is_revoked(
    verifier: TokenVerifier, ec_key: SigningKey
) -> None:
    """High-s ECDSA signatures stay accepted (third-party IdPs produce them)."""
    raw = sign(ec_key, claims(jti="j-1"))
    copy = twin(raw)
    assert copy != raw
    assert verifier.verify(copy).jti == "j-1"
    assert verifier.verify(raw).jti == "j-1"
    assert verifier.verify(copy).signing_input_hash == verifier.verify(raw).signing_input_hash


def test_signing_input_hash_is_the_sha256_of_header_and_payload(ec_key: SigningKey) -> None:
    raw = sign(ec_key, claims())
    signing_input = raw.rsplit(".", 1)[0]
    assert signing_input_hash(raw) == token_hash(signing_input)
    assert signing_input_hash(raw.encode()) == signing_input_hash(twin(raw))
    with pytest.raises(ValueError, match="not a compact JWS"):
        signing_input_hash("no-dots-here")


@pytest.mark.parametrize("cached_before", [False, True])
def test_a_token_revocation_refuses_the_high_s_twin(
    verifier: TokenVerifier, ec_key: SigningKey, clock: Clock, cached_before: bool
) -> None:
    raw = sign(ec_key, claims(jti="j-1"))
    copy = twin(raw)
    if cached_before:  # both forms warm in the cache: the revocation must evict both
        verifier.verify(raw)
        verifier.verify(copy)
    evicted = apply_to_verifier(
        verifier, revocation(RevocationKind.TOKEN, signing_input_hash(raw), clock.now)
    )
    assert evicted == (2 if cached_before else 0)
    for form in (raw, copy):
        with pytest.raises(TokenRevokedError):
            verifier.verify(form)
    other = sign(ec_key, claims(jti="j-2"))
    assert verifier.verify(other).jti == "j-2"


def test_a_legacy_whole_token_hash_still_refuses_that_exact_token(
    verifier: TokenVerifier, ec_key: SigningKey, clock: Clock
) -> None:
    """A TOKEN revocation stored as the SHA-256 of the whole token (before this value
    changed) keeps refusing that token string after an upgrade."""
    raw = sign(ec_key, claims(jti="j-1"))
    verifier.verify(raw)
    assert apply_to_verifier(
        verifier, revocation(RevocationKind.TOKEN, token_hash(raw), clock.now)
    ) == 1  # fmt: skip
    with pytest.raises(TokenRevokedError):
        verifier.verify(raw)


def _alice(key: SigningKey, iat: float, jti: str) -> str:
    return sign(key, {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "jti": jti,
                      "iat": int(iat), "exp": int(NOW) + 3600})  # fmt: skip


@pytest.mark.parametrize("cached_before", [False, True])
def test_a_subject_revocation_refuses_a_token_from_an_issuer_clock_ahead(
    verifier: TokenVerifier, ec_key: SigningKey, clock: Clock, cached_before: bool
) -> None:
    leeway = verifier.config.leeway_seconds
    assert leeway == 30
    revoked_at = clock.now
    # minted 5 s before the revocation by an issuer whose clock runs 20 s ahead
    ahead = _alice(ec_key, revoked_at - 5 + 20, "ahead")
    at_edge = _alice(ec_key, revoked_at + leeway, "edge")
    if cached_before:
        assert verifier.verify(ahead).jti == "ahead"
    apply_to_verifier(verifier, revocation(RevocationKind.SUBJECT, "alice", revoked_at))
    for raw in (ahead, at_edge):
        with pytest.raises(TokenRevokedError):
            verifier.verify(raw)
    clock.advance(leeway + 1)  # tokens issued once the leeway has passed are accepted
    later = _alice(ec_key, revoked_at + leeway + 1, "later")
    assert verifier.verify(later).jti == "later"


def test_the_subject_rule_uses_the_verifiers_configured_leeway(
    keyset: KeySet, ec_key: SigningKey, clock: Clock
) -> None:
    strict = TokenVerifier(make_config(leeway_seconds=0), keys=keyset, clock=clock)
    wide = TokenVerifier(make_config(leeway_seconds=120), keys=keyset, clock=clock)
    revoked_at = clock.now
    clock.advance(100)
    raw = _alice(ec_key, revoked_at + 60, "j")
    for verifier in (strict, wide):
        verifier.verify(raw)  # cached
        verifier.revoke(subject="alice", revoked_at=revoked_at, until=revoked_at + 600)
    assert strict.verify(raw).jti == "j"
    with pytest.raises(TokenRevokedError):
        wide.verify(raw)
