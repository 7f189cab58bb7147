"""``TokenVerifier``: its four entry points (verify, averify, verify_principal, aprincipal)
share one cache and one set of checks; an unknown ``kid`` is a token error (a 401)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from verity.identity import (
    JwksFetcher,
    JwksSource,
    KeyBindingError,
    KeySet,
    RejectionReason,
    StaticKeys,
    TokenError,
    TokenExpiredError,
    TokenRevokedError,
    TokenVerifier,
    UnknownKeyError,
    WeakKeyError,
    keyset_from_jwks,
)
from verity.identity.verifier import key_source_for, load_jwks_file
from verity.model import Principal

from .conftest import ASYMMETRIC, NOW, Clock, SigningKey, claims, make_config, sign


class CountingKeys(StaticKeys):
    """Fixed keys counting each entry point that fetched them (sync and async misses)."""

    def __init__(self, keys: KeySet) -> None:
        super().__init__(keys)
        self.sync_calls = 0
        self.async_calls = 0

    def get_keys(self) -> KeySet:
        self.sync_calls += 1
        return self.keys

    async def aget_keys(self) -> KeySet:
        self.async_calls += 1
        return self.keys


class RefetchingKeys(StaticKeys):
    """Keys whose refetch (after an unknown ``kid``) answers ``newer``, counting calls."""

    def __init__(self, keys: KeySet, newer: KeySet | None) -> None:
        super().__init__(keys)
        self.newer = newer
        self.refetches: list[KeySet] = []

    def refetch(self, seen: KeySet) -> KeySet | None:
        self.refetches.append(seen)
        return self.newer

    async def arefetch(self, seen: KeySet) -> KeySet | None:
        self.refetches.append(seen)
        return self.newer


def _only(*keys: SigningKey) -> KeySet:
    return keyset_from_jwks({"keys": [k.jwk for k in keys]}, ASYMMETRIC)


@pytest.fixture
def counting(keyset: KeySet) -> CountingKeys:
    return CountingKeys(keyset)


async def _averify(verifier: TokenVerifier, token: str) -> object:
    return await verifier.averify(token)


async def _aprincipal(verifier: TokenVerifier, token: str) -> object:
    return await verifier.aprincipal(token)


async def _verify(verifier: TokenVerifier, token: str) -> object:
    return verifier.verify(token)


async def _verify_principal(verifier: TokenVerifier, token: str) -> object:
    return verifier.verify_principal(token)


Entry = Callable[[TokenVerifier, str], Awaitable[object]]
ENTRIES: dict[str, Entry] = {
    "verify": _verify,
    "averify": _averify,
    "verify_principal": _verify_principal,
    "aprincipal": _aprincipal,
}


# --- the async path uses the token cache --------------------------------------------------


@pytest.mark.anyio
async def test_async_verify_serves_a_repeated_token_from_the_cache(
    counting: CountingKeys, rsa_key: SigningKey, clock: Clock
) -> None:
    verifier = TokenVerifier(make_config(), keys=counting, clock=clock)
    token = sign(rsa_key)
    first = await verifier.averify(token)
    assert await verifier.averify(token) is first
    assert await verifier.averify(token.encode()) is first
    assert verifier.verify(token) is first  # one cache for both paths
    assert (counting.async_calls, counting.sync_calls) == (1, 0)
    assert (verifier.cache.stats.hits, verifier.cache.stats.misses) == (3, 1)


@pytest.mark.anyio
async def test_async_verify_uses_a_token_the_sync_path_cached(
    counting: CountingKeys, rsa_key: SigningKey, clock: Clock
) -> None:
    verifier = TokenVerifier(make_config(), keys=counting, clock=clock)
    token = sign(rsa_key)
    first = verifier.verify(token)
    assert await verifier.averify(token) is first
    assert (counting.async_calls, counting.sync_calls) == (0, 1)


@pytest.mark.anyio
@pytest.mark.parametrize("entry", ENTRIES)
async def test_cached_token_is_refused_from_the_moment_it_expires(
    counting: CountingKeys, rsa_key: SigningKey, clock: Clock, entry: str
) -> None:
    """With no leeway, a cached token is served until just before ``exp`` and refused
    exactly at ``exp``: the cache never extends a token's life."""
    verifier = TokenVerifier(make_config(leeway_seconds=0), keys=counting, clock=clock)
    call = ENTRIES[entry]
    token = sign(rsa_key, claims(exp=int(NOW) + 60))
    await call(verifier, token)
    clock.now = NOW + 59.999
    await call(verifier, token)
    assert counting.sync_calls + counting.async_calls == 1  # the second call was a hit
    clock.now = NOW + 60
    with pytest.raises(TokenExpiredError):
        await call(verifier, token)


@pytest.mark.anyio
@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("by", ["token_hash", "jti", "subject"])
async def test_cached_token_is_refused_on_every_entry_point_once_revoked(
    counting: CountingKeys, rsa_key: SigningKey, clock: Clock, entry: str, by: str
) -> None:
    verifier = TokenVerifier(make_config(), keys=counting, clock=clock)
    call = ENTRIES[entry]
    token = sign(rsa_key, claims(sub="mallory", jti="j-9"))
    other = sign(rsa_key, claims(sub="bob", jti="j-1"))
    await call(verifier, token)
    await call(verifier, other)
    await call(verifier, token)  # a cache hit
    signing_input_hash = verifier.verify(token).signing_input_hash
    key = {"token_hash": signing_input_hash, "jti": "j-9", "subject": "mallory"}[by]
    assert verifier.revoke(**{by: key}) == 1
    with pytest.raises(TokenRevokedError):
        await call(verifier, token)
    await call(verifier, other)  # another subject's token stays valid


@pytest.mark.anyio
async def test_async_principal_of_a_token_cached_by_averify_is_its_principal(
    counting: CountingKeys, rsa_key: SigningKey, clock: Clock
) -> None:
    verifier = TokenVerifier(make_config(), keys=counting, clock=clock)
    token = sign(rsa_key, claims(sub="erin", groups=["ops"]))
    await verifier.averify(token)
    principal = await verifier.aprincipal(token)
    assert isinstance(principal, Principal)
    assert (principal.id, principal.groups) == ("erin", frozenset({"ops"}))
    assert await verifier.aprincipal(token) is principal
    assert counting.async_calls == 1


# --- an unknown key is a token error, never a server error --------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("entry", ENTRIES)
async def test_unknown_kid_without_refetch_is_refused_as_a_token_error(
    rsa_key: SigningKey, ec_key: SigningKey, clock: Clock, entry: str
) -> None:
    """Fixed keys cannot be refetched: a token naming another key is a 401 with the
    reason ``unknown_key``, never an unexpected exception (a 500)."""
    verifier = TokenVerifier(make_config(), keys=_only(ec_key), clock=clock)
    with pytest.raises(TokenError) as caught:
        await ENTRIES[entry](verifier, sign(rsa_key))
    assert type(caught.value) is UnknownKeyError
    assert caught.value.reason is RejectionReason.UNKNOWN_KEY
    assert caught.value.public_message == "The access token is invalid."
    assert len(verifier.cache) == 0


@pytest.mark.anyio
@pytest.mark.parametrize("entry", ENTRIES)
async def test_unknown_kid_when_the_refetch_finds_nothing_new_is_a_token_error(
    rsa_key: SigningKey, ec_key: SigningKey, clock: Clock, entry: str
) -> None:
    """A rate-limited refetch (``None``) refuses with ``UnknownKeyError`` after asking
    exactly once, with the keys it already had."""
    keys = _only(ec_key)
    source = RefetchingKeys(keys, newer=None)
    verifier = TokenVerifier(make_config(), keys=source, clock=clock)
    with pytest.raises(UnknownKeyError):
        await ENTRIES[entry](verifier, sign(rsa_key))
    assert source.refetches == [keys]


@pytest.mark.anyio
@pytest.mark.parametrize("entry", ENTRIES)
async def test_unknown_kid_when_the_refetched_keys_still_lack_it_is_a_token_error(
    rsa_key: SigningKey, ec_key: SigningKey, ed_key: SigningKey, clock: Clock, entry: str
) -> None:
    source = RefetchingKeys(_only(ec_key), newer=_only(ed_key))
    verifier = TokenVerifier(make_config(), keys=source, clock=clock)
    with pytest.raises(UnknownKeyError):
        await ENTRIES[entry](verifier, sign(rsa_key))
    assert len(source.refetches) == 1
    assert len(verifier.cache) == 0


@pytest.mark.anyio
@pytest.mark.parametrize("entry", ENTRIES)
async def test_unknown_kid_verifies_with_the_refetched_keys_and_is_cached(
    rsa_key: SigningKey, ec_key: SigningKey, clock: Clock, entry: str
) -> None:
    """A rotated-in key: one refetch, the token verifies with the new keys, and the next
    presentation is a cache hit (no second refetch)."""
    source = RefetchingKeys(_only(ec_key), newer=_only(ec_key, rsa_key))
    verifier = TokenVerifier(make_config(), keys=source, clock=clock)
    token = sign(rsa_key, claims(sub="frank"))
    await ENTRIES[entry](verifier, token)
    await ENTRIES[entry](verifier, token)
    assert len(source.refetches) == 1
    assert verifier.verify(token).subject == "frank"
    assert verifier.verify(token).key_id == rsa_key.kid


@pytest.mark.anyio
@pytest.mark.parametrize("entry", ENTRIES)
async def test_known_kid_is_never_a_reason_to_refetch(
    rsa_key: SigningKey, clock: Clock, entry: str
) -> None:
    source = RefetchingKeys(_only(rsa_key), newer=None)
    verifier = TokenVerifier(make_config(), keys=source, clock=clock)
    await ENTRIES[entry](verifier, sign(rsa_key))
    assert source.refetches == []


# --- key sources from configuration -------------------------------------------------------


def test_a_jwks_file_gives_its_keys(tmp_path: Path, rsa_key: SigningKey, clock: Clock) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [rsa_key.jwk]}))
    keys = load_jwks_file(path, ASYMMETRIC)
    assert keys.kids == frozenset({"rsa-1"})
    verifier = TokenVerifier(make_config(jwks_file=path), clock=clock)
    assert isinstance(verifier.source, StaticKeys)
    assert verifier.verify(sign(rsa_key)).key_id == "rsa-1"
    assert verifier.jwks_status() is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read a JWK Set"),
        (b"{not json", "cannot read a JWK Set"),
        (b'[{"keys": []}]', "not a JWK Set"),
        (b'"keys"', "not a JWK Set"),
    ],
)
def test_an_unusable_jwks_file_is_refused_by_name(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "jwks.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(KeyBindingError, match=message) as caught:
        load_jwks_file(path, ASYMMETRIC)
    assert str(path) in str(caught.value)


def test_a_weak_key_in_a_configured_file_refuses_the_file(tmp_path: Path) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - on purpose
    weak = SigningKey(private, "RS256", "w")
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [weak.jwk]}))
    with pytest.raises(WeakKeyError) as caught:
        load_jwks_file(path, ASYMMETRIC)
    assert str(path) in str(caught.value)


def test_a_shared_secret_gives_one_hmac_key(clock: Clock) -> None:
    config = make_config(algorithms=("HS256",), shared_secret="s" * 64)
    source = key_source_for(config, clock=clock)
    assert isinstance(source, StaticKeys)
    assert [key.algorithm for key in source.get_keys()] == ["HS256"]
    verifier = TokenVerifier(config, clock=clock)
    token = jwt.encode(claims(), "s" * 64, algorithm="HS256")
    assert verifier.verify(token).subject == "alice"


def test_a_jwks_url_gives_a_fetching_source_with_the_fetcher_given(clock: Clock) -> None:
    config = make_config(jwks_uri="https://idp.example/jwks")
    fetcher = JwksFetcher(config)
    source = key_source_for(config, fetcher=fetcher, clock=clock)
    assert isinstance(source, JwksSource)
    assert source.fetcher is fetcher
    default = key_source_for(config, clock=clock)
    assert isinstance(default, JwksSource)
    assert isinstance(default.fetcher, JwksFetcher)
    assert default.fetcher is not fetcher


def test_a_revocation_that_already_ended_evicts_nothing(
    counting: CountingKeys, rsa_key: SigningKey, clock: Clock
) -> None:
    verifier = TokenVerifier(make_config(), keys=counting, clock=clock)
    token = sign(rsa_key)
    verifier.verify(token)
    assert verifier.revoke(jti="jti-1", until=NOW) == 0
    assert verifier.verify(token).jti == "jti-1"
    assert verifier.revoke(jti="jti-1", until=NOW + 1) == 1
