"""The verified-token cache: hits skip verification, LRU bound, expiry, revocation."""

from __future__ import annotations

import pytest

from verity import invalidation
from verity.identity import (
    InvalidAudienceError,
    KeySet,
    RevocationList,
    StaticKeys,
    TokenExpiredError,
    TokenRevokedError,
    TokenVerifier,
    VerifiedTokenCache,
    keyset_from_jwks,
    token_hash,
)
from verity.identity.principal import principal_from_token

from .conftest import ASYMMETRIC, NOW, Clock, SigningKey, claims, make_config, sign


def _keyset(*keys: SigningKey) -> KeySet:
    return keyset_from_jwks({"keys": [k.jwk for k in keys]}, ASYMMETRIC)


def _verifier(key: SigningKey, clock: Clock) -> TokenVerifier:
    """A verifier without a cache of its own, to build ``VerifiedToken`` values."""
    return TokenVerifier(make_config(token_cache_size=0), keys=_keyset(key), clock=clock)


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


# --- the cache and the revocation list at their edges -------------------------------------


def test_a_cached_token_is_served_until_just_before_exp_and_dropped_at_exp(
    cached: TokenVerifier, counting: CountingKeys, rsa_key: SigningKey, clock: Clock
) -> None:
    verified = cached.verify(sign(rsa_key, claims(exp=int(NOW) + 60)))
    clock.now = NOW + 59.999
    assert cached.cache.get(verified.token_hash, cached.rules) is verified
    clock.now = NOW + 60
    assert cached.cache.get(verified.token_hash, cached.rules) is None
    assert len(cached.cache) == 0
    assert (cached.cache.stats.expired, cached.cache.stats.hits) == (1, 1)
    assert cached.cache.stats.misses == 2  # the first verification, then the expired entry


def test_a_token_is_not_cached_at_or_after_its_exp(rsa_key: SigningKey, clock: Clock) -> None:
    cache = VerifiedTokenCache(clock=clock)
    verifier = TokenVerifier(make_config(), keys=StaticKeys(_keyset(rsa_key)), clock=clock)
    verified = verifier.verify(sign(rsa_key, claims(exp=int(NOW) + 10)))
    clock.now = NOW + 10
    assert not cache.put(verified)
    clock.now = NOW + 9.999
    assert cache.put(verified)
    assert cache.get(verified.token_hash) is verified


def test_a_put_with_the_current_generation_is_kept(rsa_key: SigningKey, clock: Clock) -> None:
    cache = VerifiedTokenCache(clock=clock)
    verified = _verifier(rsa_key, clock).verify(sign(rsa_key))
    cache.evict(lambda _: False)
    assert cache.generation == 1
    assert not cache.put(verified, generation=0)
    assert cache.put(verified, generation=1)
    assert cache.put(verified)  # no generation given: kept


def test_a_cache_of_one_keeps_the_latest(rsa_key: SigningKey, clock: Clock) -> None:
    cache = VerifiedTokenCache(max_entries=1, clock=clock)
    verifier = _verifier(rsa_key, clock)
    a, b = (verifier.verify(sign(rsa_key, claims(sub=s))) for s in "ab")
    assert cache.put(a)
    assert cache.put(b)
    assert cache.get(a.token_hash) is None
    assert cache.get(b.token_hash) is b
    assert cache.stats.evicted_lru == 1


def test_expired_entries_are_purged_exactly_at_their_exp(rsa_key: SigningKey, clock: Clock) -> None:
    cache = VerifiedTokenCache(max_entries=10, clock=clock)
    verifier = _verifier(rsa_key, clock)
    early = verifier.verify(sign(rsa_key, claims(sub="early", exp=int(NOW) + 10)))
    late = verifier.verify(sign(rsa_key, claims(sub="late", exp=int(NOW) + 11)))
    cache.put(early)
    cache.put(late)
    clock.now = NOW + 10
    cache.put(verifier.verify(sign(rsa_key, claims(sub="new", iat=int(NOW) + 10))))
    assert len(cache) == 2  # early purged by the insert, late still there
    assert cache.stats.expired == 1


def test_the_expiry_heap_stays_bounded_under_lru_churn(rsa_key: SigningKey, clock: Clock) -> None:
    cache = VerifiedTokenCache(max_entries=2, clock=clock)
    verifier = _verifier(rsa_key, clock)
    for i in range(80):
        cache.put(verifier.verify(sign(rsa_key, claims(sub=f"u{i}"))))
    assert len(cache) == 2
    assert len(cache._expiry) <= 2 * 2 + 64 + 1


@pytest.mark.parametrize("by", ["signing_input_hash", "token_hash"])
def test_revoke_by_hash_matches_either_hash_of_the_token(
    rsa_key: SigningKey, clock: Clock, by: str
) -> None:
    cache = VerifiedTokenCache(clock=clock)
    verifier = _verifier(rsa_key, clock)
    verified = verifier.verify(sign(rsa_key))
    other = verifier.verify(sign(rsa_key, claims(jti="other")))
    cache.put(verified)
    cache.put(other)
    assert cache.revoke(token_hash=getattr(verified, by)) == 1
    assert cache.get(other.token_hash) is other
    assert cache.stats.revoked == 1


def test_revoke_by_subject_spares_tokens_issued_after_the_cut(
    rsa_key: SigningKey, clock: Clock
) -> None:
    cache = VerifiedTokenCache(clock=clock)
    verifier = _verifier(rsa_key, clock)
    at_cut = verifier.verify(sign(rsa_key, claims(sub="s", iat=int(NOW), jti="a")))
    after = verifier.verify(sign(rsa_key, claims(sub="s", iat=int(NOW) + 1, jti="b")))
    no_iat = verifier.verify(sign(rsa_key, claims(sub="s", iat=None, jti="c")))
    someone = verifier.verify(sign(rsa_key, claims(sub="t", iat=int(NOW), jti="d")))
    for token in (at_cut, after, no_iat, someone):
        cache.put(token)
    assert cache.revoke(subject="s", issued_before=NOW) == 2
    assert cache.get(at_cut.token_hash) is None
    assert cache.get(no_iat.token_hash) is None
    assert cache.get(after.token_hash) is after
    assert cache.get(someone.token_hash) is someone
    assert cache.revoke(subject="s") == 1  # no cut: every token of the subject


def test_revoke_with_no_match_evicts_nothing_but_bumps_the_epoch(
    rsa_key: SigningKey, clock: Clock
) -> None:
    cache = VerifiedTokenCache(clock=clock)
    verified = _verifier(rsa_key, clock).verify(sign(rsa_key))
    cache.put(verified)
    epoch = invalidation.current()
    assert cache.revoke(jti="nope", subject="nobody", token_hash="0" * 64) == 0
    assert invalidation.current() > epoch
    assert cache.get(verified.token_hash) is verified


def test_evict_keys_drops_the_tokens_of_removed_keys_only(
    rsa_key: SigningKey, ec_key: SigningKey, clock: Clock
) -> None:
    keys = StaticKeys(keyset_from_jwks({"keys": [rsa_key.jwk, ec_key.jwk]}, ASYMMETRIC))
    verifier = TokenVerifier(make_config(), keys=keys, clock=clock)
    by_rsa, by_ec = verifier.verify(sign(rsa_key)), verifier.verify(sign(ec_key))
    generation = verifier.cache.generation
    assert verifier.cache.evict_keys([]) == 0
    assert verifier.cache.generation == generation  # nothing removed: nothing to evict
    assert verifier.cache.evict_keys(["ec-1", "gone"]) == 1
    assert verifier.cache.get(by_ec.token_hash, verifier.rules) is None
    assert verifier.cache.get(by_rsa.token_hash, verifier.rules) is by_rsa
    verifier.cache.clear()
    assert len(verifier.cache) == 0


def test_revocation_list_add_bumps_the_epoch_and_forgets_at_until(
    rsa_key: SigningKey, clock: Clock
) -> None:
    revocations = RevocationList(ttl=100, clock=clock)
    verified = _verifier(rsa_key, clock).verify(sign(rsa_key, claims(jti="j")))
    epoch = invalidation.current()
    revocations.add(jti="j", until=NOW + 50)
    assert invalidation.current() > epoch
    clock.now = NOW + 49.999
    with pytest.raises(TokenRevokedError, match="jti"):
        revocations.check(verified, leeway=0)
    clock.now = NOW + 50
    revocations.check(verified, leeway=0)
    revocations.purge()
    assert len(revocations) == 0


def test_revocation_list_default_lifetime_is_its_ttl(rsa_key: SigningKey, clock: Clock) -> None:
    revocations = RevocationList(ttl=100, clock=clock)
    verified = _verifier(rsa_key, clock).verify(sign(rsa_key, claims(exp=int(NOW) + 1000)))
    revocations.add(token_hash=verified.signing_input_hash)
    clock.now = NOW + 99.999
    with pytest.raises(TokenRevokedError, match="hash"):
        revocations.check(verified, leeway=0)
    clock.now = NOW + 100
    revocations.check(verified, leeway=0)


def test_revocation_already_over_is_not_remembered(clock: Clock) -> None:
    revocations = RevocationList(clock=clock)
    revocations.add(jti="a", subject="s", token_hash="h", until=NOW)
    assert len(revocations) == 0


def test_revocation_list_keeps_the_later_until_of_a_repeated_revocation(
    rsa_key: SigningKey, clock: Clock
) -> None:
    revocations = RevocationList(clock=clock)
    verified = _verifier(rsa_key, clock).verify(sign(rsa_key, claims(jti="j", sub="s")))
    for selector in ({"jti": "j"}, {"token_hash": verified.token_hash}, {"subject": "s"}):
        revocations.add(**selector, until=NOW + 100)
        revocations.add(**selector, until=NOW + 10)  # an earlier end does not shorten it
    clock.now = NOW + 50
    with pytest.raises(TokenRevokedError):
        revocations.check(verified, leeway=0)
    assert len(revocations) == 3


def test_a_whole_token_hash_revocation_still_rejects_that_token(
    rsa_key: SigningKey, clock: Clock
) -> None:
    revocations = RevocationList(clock=clock)
    verified = _verifier(rsa_key, clock).verify(sign(rsa_key))
    revocations.add(token_hash=verified.token_hash)
    with pytest.raises(TokenRevokedError, match="hash"):
        revocations.check(verified, leeway=0)


@pytest.mark.parametrize(
    ("iat", "leeway", "revoked"),
    [(NOW + 10, 0, True), (NOW + 10.5, 0, False), (NOW + 40, 30, True), (NOW + 40.5, 30, False)],
)
def test_subject_revocation_covers_tokens_issued_up_to_its_time_plus_leeway(
    rsa_key: SigningKey, clock: Clock, iat: float, leeway: float, revoked: bool
) -> None:
    revocations = RevocationList(clock=clock)
    clock.now = iat
    verified = _verifier(rsa_key, clock).verify(sign(rsa_key, claims(sub="s", iat=iat)))
    clock.now = NOW
    revocations.add(subject="s", revoked_at=NOW + 10, until=NOW + 1000)
    revocations.add(subject="s", revoked_at=NOW + 5, until=NOW + 500)  # keeps the later
    if revoked:
        with pytest.raises(TokenRevokedError, match="subject"):
            revocations.check(verified, leeway=leeway)
    else:
        revocations.check(verified, leeway=leeway)


def test_subject_revocation_lapses_at_its_until(rsa_key: SigningKey, clock: Clock) -> None:
    revocations = RevocationList(clock=clock)
    verified = _verifier(rsa_key, clock).verify(sign(rsa_key, claims(sub="s", exp=int(NOW) + 900)))
    revocations.add(subject="s", until=NOW + 100)
    revocations.add(jti="unrelated", until=NOW + 1000)
    clock.now = NOW + 99.999
    with pytest.raises(TokenRevokedError):
        revocations.check(verified, leeway=0)
    clock.now = NOW + 100
    revocations.check(verified, leeway=0)


def test_a_token_without_subject_or_jti_is_checked_by_hash_only(
    rsa_key: SigningKey, clock: Clock
) -> None:
    revocations = RevocationList(clock=clock)
    verified = _verifier(rsa_key, clock).verify(sign(rsa_key, claims(sub=None, jti=None)))
    revocations.add(subject="alice", jti="jti-1")
    revocations.check(verified, leeway=0)


def test_purging_skips_heap_rows_of_tokens_already_evicted(
    rsa_key: SigningKey, clock: Clock
) -> None:
    """A token pushed out by the LRU bound leaves its expiry row in the heap; purging that
    row later must not fail (a crash there would turn every verification into a 500)."""
    cache = VerifiedTokenCache(max_entries=1, clock=clock)
    verifier = _verifier(rsa_key, clock)
    first = verifier.verify(sign(rsa_key, claims(sub="a", exp=int(NOW) + 10)))
    second = verifier.verify(sign(rsa_key, claims(sub="b", exp=int(NOW) + 100)))
    assert cache.put(first)
    assert cache.put(second)  # evicts first; its heap row stays
    clock.now = NOW + 10
    third = verifier.verify(sign(rsa_key, claims(sub="c", iat=int(NOW) + 10)))
    assert cache.put(third)  # purges first's row: nothing to delete
    assert cache.get(third.token_hash) is third
    assert cache.stats.expired == 0
