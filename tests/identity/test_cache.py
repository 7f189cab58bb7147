"""The verified-token cache: hits skip verification, LRU bound, expiry, revocation."""

from __future__ import annotations

import pytest

from verity.identity import (
    InvalidAudienceError,
    KeySet,
    RevocationList,
    StaticKeys,
    TokenExpiredError,
    TokenRevokedError,
    TokenVerifier,
    VerifiedTokenCache,
    token_hash,
)
from verity.identity.principal import principal_from_token

from .conftest import NOW, Clock, SigningKey, claims, make_config, sign


class CountingKeys(StaticKeys):
    """Fixed keys that count how often a verification needed them (cache misses)."""

    def __init__(self, keys: KeySet) -> None:
        super().__init__(keys)
        self.calls = 0

    def get_keys(self) -> KeySet:
        self.calls += 1
        return self.keys


@pytest.fixture
def counting(keyset: KeySet) -> CountingKeys:
    return CountingKeys(keyset)


@pytest.fixture
def cached(counting: CountingKeys, clock: Clock) -> TokenVerifier:
    return TokenVerifier(make_config(), keys=counting, clock=clock)


def test_cache_hit_skips_verification(
    cached: TokenVerifier, counting: CountingKeys, rsa_key: SigningKey
) -> None:
    token = sign(rsa_key)
    first = cached.verify(token)
    assert cached.verify(token) is first
    assert cached.verify(token.encode()) is first
    assert counting.calls == 1
    assert first.token_hash == token_hash(token.encode())
    assert (cached.cache.stats.hits, cached.cache.stats.misses) == (2, 1)


def test_cache_is_bounded_lru(
    keyset: KeySet, counting: CountingKeys, rsa_key: SigningKey, clock: Clock
) -> None:
    verifier = TokenVerifier(make_config(token_cache_size=2), keys=counting, clock=clock)
    a, b, c = (sign(rsa_key, claims(sub=s)) for s in "abc")
    verifier.verify(a)
    verifier.verify(b)
    verifier.verify(a)  # a is now the most recently used
    verifier.verify(c)  # evicts b
    assert len(verifier.cache) == 2
    assert verifier.cache.stats.evicted_lru == 1
    calls = counting.calls
    verifier.verify(a)
    assert counting.calls == calls
    verifier.verify(b)
    assert counting.calls == calls + 1


def test_entries_leave_at_expiry(cached: TokenVerifier, rsa_key: SigningKey, clock: Clock) -> None:
    token = sign(rsa_key, claims(exp=int(NOW) + 60))
    cached.verify(token)
    clock.advance(60)
    assert cached.cache.get(token_hash(token.encode()), cached.rules) is None
    clock.advance(31)
    with pytest.raises(TokenExpiredError):
        cached.verify(token)


def test_expired_entries_are_purged_on_insert(
    keyset: KeySet, rsa_key: SigningKey, clock: Clock
) -> None:
    cache = VerifiedTokenCache(max_entries=100, clock=clock)
    verifier = TokenVerifier(make_config(), keys=keyset, cache=cache, clock=clock)
    for i in range(5):
        verifier.verify(sign(rsa_key, claims(sub=f"u{i}", exp=int(NOW) + 10)))
    clock.advance(11)
    verifier.verify(sign(rsa_key, claims(sub="late", iat=int(NOW) + 11, exp=int(NOW) + 100)))
    assert len(cache) == 1


def test_disabled_cache_never_stores(keyset: KeySet, rsa_key: SigningKey, clock: Clock) -> None:
    verifier = TokenVerifier(make_config(token_cache_size=0), keys=keyset, clock=clock)
    verifier.verify(sign(rsa_key))
    assert len(verifier.cache) == 0


@pytest.mark.parametrize("by", ["token_hash", "jti", "subject"])
def test_revoke_evicts_at_once_and_rejects_later(
    cached: TokenVerifier, rsa_key: SigningKey, by: str
) -> None:
    token = sign(rsa_key, claims(sub="mallory", jti="j-9"))
    verified = cached.verify(token)
    other = cached.verify(sign(rsa_key, claims(sub="bob", jti="j-1")))
    key = {"token_hash": verified.token_hash, "jti": "j-9", "subject": "mallory"}[by]
    assert cached.revoke(**{by: key}) == 1
    assert cached.cache.get(verified.token_hash, cached.rules) is None
    assert cached.cache.get(other.token_hash, cached.rules) is other
    with pytest.raises(TokenRevokedError) as caught:
        cached.verify(token)
    assert caught.value.public_message == "The access token has been revoked."


def test_subject_revocation_accepts_tokens_issued_after_the_leeway(
    cached: TokenVerifier, rsa_key: SigningKey, clock: Clock
) -> None:
    cached.verify(sign(rsa_key, claims(sub="carol")))
    cached.revoke(subject="carol")
    clock.advance(cached.config.leeway_seconds + 1)  # accepted once the leeway has passed
    fresh = sign(rsa_key, claims(sub="carol", iat=int(clock.now), jti="new"))
    assert cached.verify(fresh).subject == "carol"
    with pytest.raises(TokenRevokedError):
        cached.verify(sign(rsa_key, claims(sub="carol", iat=None, jti="no-iat")))


def test_revocations_expire_after_their_ttl(
    rsa_key: SigningKey, keyset: KeySet, clock: Clock
) -> None:
    revocations = RevocationList(ttl=100, clock=clock)
    verifier = TokenVerifier(make_config(), keys=keyset, revocations=revocations, clock=clock)
    token = sign(rsa_key, claims(exp=int(NOW) + 1000))
    verifier.revoke(jti="jti-1")
    with pytest.raises(TokenRevokedError):
        verifier.verify(token)
    clock.advance(101)
    verifier.revoke(jti="other")  # purges the expired entry
    assert len(revocations) == 1
    verifier.verify(token)


def test_revoke_needs_a_selector() -> None:
    with pytest.raises(ValueError, match="revoke needs"):
        RevocationList().add()


def test_a_racing_verification_cannot_recache_a_revoked_token(
    cached: TokenVerifier, rsa_key: SigningKey
) -> None:
    verified = cached.verify(sign(rsa_key))
    generation = cached.cache.generation
    cached.revoke(token_hash=verified.token_hash)
    assert not cached.cache.put(verified, scope=cached.rules, generation=generation)
    assert cached.cache.get(verified.token_hash, cached.rules) is None


def test_shared_cache_never_serves_another_verifiers_token(
    keyset: KeySet, rsa_key: SigningKey, clock: Clock
) -> None:
    """A token verified for audience A must not be a cache hit for the verifier of B."""
    shared = VerifiedTokenCache(clock=clock)
    for_a = TokenVerifier(make_config(audiences=["a"]), keys=keyset, cache=shared, clock=clock)
    for_b = TokenVerifier(make_config(audiences=["b"]), keys=keyset, cache=shared, clock=clock)
    token = sign(rsa_key, claims(aud="a"))
    for_a.verify(token)
    with pytest.raises(InvalidAudienceError):
        for_b.verify(token)
    assert for_a.verify(token).audience == ("a",)


def test_cached_claims_are_read_only(cached: TokenVerifier, rsa_key: SigningKey) -> None:
    verified = cached.verify(sign(rsa_key, claims(groups=["eng"], ext={"a": [1]})))
    with pytest.raises(TypeError):
        verified.claims["sub"] = "admin"  # type: ignore[index]
    assert verified.claims["groups"] == ("eng",)
    with pytest.raises(TypeError):
        verified.claims["ext"]["a"] = 2  # type: ignore[index]


# --- the principal cached with its verified token ---------------------------------------


def test_cached_principal_is_the_value_a_fresh_build_gives(
    cached: TokenVerifier, counting: CountingKeys, rsa_key: SigningKey
) -> None:
    token = sign(rsa_key, claims(email="a@example.com", groups=["eng"], amr=["mfa"], sid="s1"))
    first = cached.verify_principal(token)
    again = cached.verify_principal(token)
    assert again is first  # served from the cache entry, not rebuilt
    assert first == principal_from_token(cached.verify(token), cached.config.claims)
    assert (first.id, first.groups, first.mfa, first.session_id) == (
        "alice", frozenset({"eng"}), True, "s1",
    )  # fmt: skip
    assert counting.calls == 1


@pytest.mark.anyio
async def test_async_principal_is_cached_with_the_token(
    cached: TokenVerifier, counting: CountingKeys, rsa_key: SigningKey
) -> None:
    token = sign(rsa_key, claims(sub="dana"))
    first = await cached.aprincipal(token)
    assert await cached.aprincipal(token) is first
    assert cached.verify_principal(token) is first
    assert first.id == "dana"
    assert cached.cache.stats.misses == 1


@pytest.mark.anyio
@pytest.mark.parametrize("by", ["token_hash", "jti", "subject"])
async def test_revoked_token_is_refused_on_the_next_request_despite_its_cached_principal(
    cached: TokenVerifier, rsa_key: SigningKey, by: str
) -> None:
    token = sign(rsa_key, claims(sub="mallory", jti="j-9"))
    assert (await cached.aprincipal(token)).id == "mallory"
    assert (await cached.aprincipal(token)).id == "mallory"  # principal now cached
    verified = cached.verify(token)
    key = {"token_hash": verified.signing_input_hash, "jti": "j-9", "subject": "mallory"}[by]
    cached.revoke(**{by: key})
    with pytest.raises(TokenRevokedError):
        await cached.aprincipal(token)
    with pytest.raises(TokenRevokedError):
        cached.verify_principal(token)


def test_cached_principal_leaves_with_a_removed_signing_key(
    cached: TokenVerifier, rsa_key: SigningKey
) -> None:
    token = sign(rsa_key)
    cached.verify_principal(token)
    assert cached.cache.evict_keys([rsa_key.kid]) == 1
    entry = cached.cache.entry(token_hash(token.encode()), cached.rules)
    assert entry is None


def test_cached_principal_expires_with_its_token(
    cached: TokenVerifier, rsa_key: SigningKey, clock: Clock
) -> None:
    token = sign(rsa_key, claims(exp=int(NOW) + 60))
    cached.verify_principal(token)
    clock.advance(60 + cached.config.leeway_seconds + 1)
    with pytest.raises(TokenExpiredError):
        cached.verify_principal(token)


def test_shared_cache_never_serves_a_principal_built_by_another_claim_mapping(
    keyset: KeySet, rsa_key: SigningKey, clock: Clock
) -> None:
    """Two verifiers of one issuer sharing a cache, mapping the subject differently."""
    shared = VerifiedTokenCache(clock=clock)
    by_sub = TokenVerifier(make_config(), keys=keyset, cache=shared, clock=clock)
    by_email = TokenVerifier(
        make_config(claims={"subject": "email"}), keys=keyset, cache=shared, clock=clock
    )
    token = sign(rsa_key, claims(sub="u-1", email="eve@example.com"))
    assert by_sub.verify_principal(token).id == "u-1"
    assert by_email.verify_principal(token).id == "eve@example.com"
    assert by_sub.verify_principal(token).id == "u-1"


def test_a_principal_is_not_attached_to_a_revoked_entry(
    cached: TokenVerifier, rsa_key: SigningKey
) -> None:
    verified = cached.verify(sign(rsa_key))
    cached.revoke(token_hash=verified.token_hash)
    built = principal_from_token(verified, cached.config.claims)
    assert not cached.cache.attach(
        verified, built, scope=cached.rules, mapping=cached.config.claims
    )
