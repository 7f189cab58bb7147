"""JWKS against a real HTTP server on 127.0.0.1: discovery, Cache-Control, unknown-kid
refetch and its rate limit, key rotation, stale-if-error, HTTPS-only outside loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from verity.identity import (
    ForbiddenHeaderError,
    IssuerConfig,
    JwksFetcher,
    JwksSource,
    KeySet,
    KeysUnavailableError,
    TokenVerifier,
    UnknownKeyError,
    keyset_from_jwks,
)
from verity.identity.config import JwksPolicy
from verity.identity.jwks import JwksState, cache_lifetime

from .conftest import ASYMMETRIC, AUDIENCE, Clock, SigningKey, claims, sign
from .idp_server import IdP

JWKS = "/jwks"
DISCOVERY = "/.well-known/openid-configuration"


@pytest.fixture
def idp(rsa_key: SigningKey, ec_key: SigningKey) -> Iterator[IdP]:
    server = IdP()
    server.jwks = {"keys": [rsa_key.jwk, ec_key.jwk]}
    yield server
    server.stop()


def _config(idp: IdP, **overrides: Any) -> IssuerConfig:
    settings: dict[str, Any] = {
        "issuer": idp.issuer,
        "audiences": [AUDIENCE],
        "algorithms": ASYMMETRIC,
        "jwks": {"timeout_seconds": 2},
    }
    settings.update(overrides)
    return IssuerConfig(**settings)


def _verifier(idp: IdP, clock: Clock, **overrides: Any) -> TokenVerifier:
    return TokenVerifier(_config(idp, **overrides), clock=clock)


def _token(key: SigningKey, idp: IdP, sub: str = "alice", **header: Any) -> str:
    return sign(key, claims(iss=idp.issuer, sub=sub, exp=int(Clock().now) + 86400 * 3), **header)


def test_discovery_finds_the_jwks_and_tokens_verify(
    idp: IdP, rsa_key: SigningKey, clock: Clock
) -> None:
    verifier = _verifier(idp, clock)
    assert verifier.verify(_token(rsa_key, idp)).subject == "alice"
    assert idp.requests == [DISCOVERY, JWKS]
    status = verifier.jwks_status()
    assert status is not None
    assert set(status.key_ids) == {"rsa-1", "ec-1"}
    assert not status.stale


def test_discovery_with_another_issuer_is_refused(
    idp: IdP, rsa_key: SigningKey, clock: Clock
) -> None:
    idp.discovery_override = {"issuer": "https://evil.example"}
    verifier = _verifier(idp, clock)
    with pytest.raises(KeysUnavailableError):
        verifier.verify(_token(rsa_key, idp))
    assert idp.count(JWKS) == 0
    status = verifier.jwks_status()
    assert status is not None
    assert "issuer" in (status.last_error or "")


def test_configured_jwks_uri_skips_discovery(idp: IdP, rsa_key: SigningKey, clock: Clock) -> None:
    verifier = _verifier(idp, clock, jwks_uri=f"{idp.issuer}/jwks")
    verifier.verify(_token(rsa_key, idp))
    assert idp.requests == [JWKS]


def test_keys_are_cached_for_max_age(idp: IdP, rsa_key: SigningKey, clock: Clock) -> None:
    idp.cache_control = "public, max-age=120"
    verifier = _verifier(idp, clock)
    verifier.verify(_token(rsa_key, idp, "a"))
    clock.advance(119)
    verifier.verify(_token(rsa_key, idp, "b"))
    assert idp.count(JWKS) == 1
    clock.advance(2)
    verifier.verify(_token(rsa_key, idp, "c"))
    assert idp.count(JWKS) == 2


@pytest.mark.parametrize(
    ("cache_control", "fresh_for"),
    [("max-age=5", 60), ("no-store", 60), ("max-age=9999999", 86400), (None, 300)],
)
def test_max_age_is_clamped(
    idp: IdP, rsa_key: SigningKey, clock: Clock, cache_control: str | None, fresh_for: float
) -> None:
    idp.cache_control = cache_control
    verifier = _verifier(idp, clock)
    verifier.verify(_token(rsa_key, idp))
    status = verifier.jwks_status()
    assert status is not None
    assert status.fresh_until == clock.now + fresh_for


def test_unknown_kid_triggers_one_refetch_and_rotation_works(
    idp: IdP, rsa_key: SigningKey, ed_key: SigningKey, clock: Clock
) -> None:
    verifier = _verifier(idp, clock)
    verifier.verify(_token(rsa_key, idp))
    idp.jwks = {"keys": [rsa_key.jwk, ed_key.jwk]}  # the IdP adds a key
    clock.advance(31)  # fetches (of any kind) are at least 30 s apart
    assert verifier.verify(_token(ed_key, idp)).key_id == "ed-1"
    assert idp.count(JWKS) == 2


def test_unknown_kid_refetch_is_rate_limited(idp: IdP, rsa_key: SigningKey, clock: Clock) -> None:
    verifier = _verifier(idp, clock)
    verifier.verify(_token(rsa_key, idp))
    with pytest.raises(UnknownKeyError):  # keys fetched just now: no refetch yet
        verifier.verify(_token(SigningKey(rsa_key.private, "RS256", "random-0"), idp))
    assert idp.count(JWKS) == 1
    clock.advance(31)
    for kid in ("random-1", "random-2", "random-3"):
        with pytest.raises(UnknownKeyError):
            verifier.verify(_token(SigningKey(rsa_key.private, "RS256", kid), idp))
    assert idp.count(JWKS) == 2  # the first fetch and one refetch
    clock.advance(31)
    with pytest.raises(UnknownKeyError):
        verifier.verify(_token(SigningKey(rsa_key.private, "RS256", "random-4"), idp))
    assert idp.count(JWKS) == 3
    status = verifier.jwks_status()
    assert status is not None
    assert (status.unknown_kid_refetches, status.rate_limited_refetches) == (2, 3)


def test_rotated_out_key_is_evicted_from_the_token_cache(
    idp: IdP, rsa_key: SigningKey, ec_key: SigningKey, clock: Clock
) -> None:
    idp.cache_control = "max-age=60"
    verifier = _verifier(idp, clock)
    old = verifier.verify(_token(rsa_key, idp))
    kept = verifier.verify(_token(ec_key, idp, "bob"))
    idp.jwks = {"keys": [ec_key.jwk]}  # rsa-1 retired
    clock.advance(61)
    assert verifier.cache.get(old.token_hash, verifier.rules) is old  # not refreshed yet
    verifier.verify(_token(ec_key, idp, "carol"))  # a cache miss refreshes the keys
    assert verifier.cache.get(old.token_hash, verifier.rules) is None
    assert verifier.cache.get(kept.token_hash, verifier.rules) is kept
    with pytest.raises(UnknownKeyError):
        verifier.verify(_token(rsa_key, idp))


def test_stale_keys_are_used_when_the_idp_is_down(
    idp: IdP, rsa_key: SigningKey, clock: Clock
) -> None:
    idp.cache_control = "max-age=60"
    verifier = _verifier(idp, clock, jwks={"stale_if_error_seconds": 3600, "timeout_seconds": 2})
    verifier.verify(_token(rsa_key, idp, "a"))
    idp.stop()
    clock.advance(61)
    assert verifier.verify(_token(rsa_key, idp, "b")).subject == "b"
    status = verifier.jwks_status()
    assert status is not None
    assert status.stale
    assert status.fetches_failed == 1
    assert status.last_error
    assert "ConnectError" in status.last_error
    clock.advance(10)  # within the refetch interval: no new attempt
    verifier.verify(_token(rsa_key, idp, "c"))
    assert verifier.jwks_status().fetches_failed == 1  # type: ignore[union-attr]
    clock.advance(3600)  # past stale-if-error: keys aged out
    with pytest.raises(KeysUnavailableError):
        verifier.verify(_token(rsa_key, idp, "d"))


def test_no_keys_and_idp_down_fails_closed(idp: IdP, rsa_key: SigningKey, clock: Clock) -> None:
    verifier = _verifier(idp, clock)
    idp.stop()
    with pytest.raises(KeysUnavailableError) as caught:
        verifier.verify(_token(rsa_key, idp))
    assert caught.value.public_message == "The access token cannot be verified right now."


def test_https_is_required_except_for_loopback(idp: IdP, rsa_key: SigningKey, clock: Clock) -> None:
    for issuer in (
        "http://idp.example",
        "http://10.0.0.1",
        "ftp://idp.example",
        "http://127.evil.example",
    ):
        with pytest.raises(ValidationError, match="https"):
            IssuerConfig(issuer=issuer, audiences=[AUDIENCE])
    with pytest.raises(ValidationError, match="https"):
        IssuerConfig(issuer="https://idp.example", audiences=["a"], jwks_uri="http://idp.example/k")
    for ok in (
        "https://idp.example",
        "http://localhost:8080",
        "http://127.0.0.1",
        "http://[::1]:1",
    ):
        IssuerConfig(issuer=ok, audiences=["a"])
    # A discovery document that points at plain HTTP elsewhere is refused without a request.
    idp.discovery_override = {"jwks_uri": "http://idp.example/jwks"}
    verifier = _verifier(idp, clock)
    with pytest.raises(KeysUnavailableError):
        verifier.verify(_token(rsa_key, idp))
    assert "https" in (verifier.jwks_status().last_error or "")  # type: ignore[union-attr]


def test_redirects_are_not_followed(idp: IdP, rsa_key: SigningKey, clock: Clock) -> None:
    idp.redirect_jwks_to = "https://attacker.example/jwks"
    verifier = _verifier(idp, clock)
    with pytest.raises(KeysUnavailableError):
        verifier.verify(_token(rsa_key, idp))
    assert "HTTP 302" in (verifier.jwks_status().last_error or "")  # type: ignore[union-attr]


def test_oversized_jwks_is_refused(idp: IdP, rsa_key: SigningKey, clock: Clock) -> None:
    idp.jwks = {"keys": [rsa_key.jwk], "padding": "x" * 5000}
    verifier = _verifier(idp, clock, jwks={"max_bytes": 2048})
    with pytest.raises(KeysUnavailableError):
        verifier.verify(_token(rsa_key, idp))


def test_jku_pointing_at_a_server_is_never_fetched(
    idp: IdP, rsa_key: SigningKey, attacker_key: SigningKey, clock: Clock
) -> None:
    verifier = _verifier(idp, clock)
    token = _token(attacker_key, idp, jku=f"{idp.issuer}/attacker-jwks")
    with pytest.raises(ForbiddenHeaderError):
        verifier.verify(token)
    assert idp.count("/attacker-jwks") == 0


def test_async_verification_fetches_without_blocking(
    idp: IdP, rsa_key: SigningKey, ed_key: SigningKey, clock: Clock
) -> None:
    verifier = _verifier(idp, clock)

    async def run() -> list[str | None]:
        tokens = [_token(rsa_key, idp, f"user-{i}") for i in range(5)]
        results = await asyncio.gather(*(verifier.averify(t) for t in tokens))
        idp.jwks = {"keys": [rsa_key.jwk, ed_key.jwk]}
        clock.advance(31)
        results.append(await verifier.averify(_token(ed_key, idp)))
        return [r.subject for r in results]

    assert asyncio.run(run()) == [f"user-{i}" for i in range(5)] + ["alice"]
    assert idp.count(DISCOVERY) == 1
    assert idp.count(JWKS) == 2


def test_source_status_counts_fetches(idp: IdP, clock: Clock) -> None:
    source = JwksSource(JwksFetcher(_config(idp)), clock=clock)
    assert len(source.get_keys()) == 2
    status = source.status()
    assert (status.fetches_ok, status.fetches_failed, status.stale) == (1, 0, False)


# --- Cache-Control from the IdP: hostile values -------------------------------------------


def test_idp_max_age_too_large_for_a_float_is_not_a_server_error(
    idp: IdP, rsa_key: SigningKey, clock: Clock
) -> None:
    """``max-age`` of 400 digits used to raise OverflowError out of the fetch (a 500 on
    every request, the fetch never recorded); it is the longest lifetime (RFC 9111
    1.2.2: too large to represent means 2^31), clamped to ``max_ttl_seconds``."""
    idp.cache_control = "max-age=" + "9" * 400
    verifier = _verifier(idp, clock)
    assert verifier.verify(_token(rsa_key, idp)).subject == "alice"
    status = verifier.jwks_status()
    assert status is not None
    assert status.fresh_until == clock.now + 86400
    assert (status.fetches_ok, status.fetches_failed) == (1, 0)


POLICY = JwksPolicy(min_ttl_seconds=60, default_ttl_seconds=300, max_ttl_seconds=86400)


@pytest.mark.parametrize(
    ("cache_control", "age", "ttl"),
    [
        (None, None, 300),
        ("", None, 300),
        ("max-age=120", None, 120),
        ("MAX-AGE=120", None, 120),
        ("public, max-age=120", None, 120),
        ('max-age="120"', None, 120),
        ("max-age=60", None, 60),
        ("max-age=59", None, 60),
        ("max-age=86400", None, 86400),
        ("max-age=86401", None, 86400),
        ("max-age=abc", None, 300),
        ("max-age=abc, max-age=120", None, 120),
        ("max-age=" + "9" * 400, None, 86400),
        ("max-age=" + "9" * 5000, None, 300),  # not a number Python reads: ignored
        ("no-cache", None, 60),
        ("no-store", None, 60),
        ("no-store, max-age=500", None, 60),
        ("max-age=500, no-cache", None, 60),
        ("max-age=500", "100", 400),
        ("max-age=500", " 100 ", 400),
        ("max-age=500", "450", 60),
        ("max-age=500", "-100", 500),
        ("max-age=500", "abc", 500),
        ("max-age=500", "9" * 400, 60),
        ("max-age=500", "9" * 5000, 60),
        ("max-age=500", "\u00b2", 500),
        (None, "100", 200),
    ],
)
def test_cache_lifetime_reads_max_age_and_age_and_clamps(
    cache_control: str | None, age: str | None, ttl: float
) -> None:
    assert cache_lifetime(cache_control, age, POLICY) == ttl


# --- the JWKS state machine, at each time boundary ----------------------------------------


def _keys(*signing: SigningKey) -> KeySet:
    return keyset_from_jwks({"keys": [k.jwk for k in signing]}, ASYMMETRIC)


def _state(**policy: float) -> JwksState:
    settings = {"refetch_interval_seconds": 30, "stale_if_error_seconds": 100, **policy}
    return JwksState(JwksPolicy(**settings), source="https://idp.example/jwks")


def test_a_new_state_has_no_keys_and_must_fetch_now() -> None:
    state = _state()
    assert state.usable(0) is None
    assert not state.is_stale(0)
    assert state.should_refresh(0)
    status = state.status(0)
    assert (status.key_ids, status.fetched_at, status.fresh_until, status.usable_until) == (
        (), None, None, None,
    )  # fmt: skip
    assert (status.stale, status.fetches_ok, status.last_error) == (False, 0, None)
    assert status.source == "https://idp.example/jwks"


def test_keys_are_fresh_for_their_ttl_then_stale_until_stale_if_error(
    rsa_key: SigningKey,
) -> None:
    state = _state()
    keys = _keys(rsa_key)
    state.begin(1000)
    assert state.succeeded(keys, 60, 1000) == frozenset()
    assert state.usable(1059.9) is keys
    assert not state.is_stale(1059.9)
    assert not state.should_refresh(1059.9)
    assert state.is_stale(1060)
    assert state.should_refresh(1060)
    assert state.usable(1159.9) is keys  # 60 s fresh + 100 s stale-if-error
    assert state.usable(1160) is None
    status = state.status(1060)
    assert (status.fetched_at, status.fresh_until, status.usable_until) == (1000, 1060, 1160)
    assert (status.stale, status.fetches_ok, status.key_ids) == (True, 1, ("rsa-1",))


def test_fetches_are_at_least_the_refetch_interval_apart(rsa_key: SigningKey) -> None:
    state = _state()
    state.begin(1000)
    state.succeeded(_keys(rsa_key), 10, 1000)
    assert not state.should_refresh(1029.9)  # due since 1010, but too soon after 1000
    assert state.should_refresh(1030)
    assert not state.should_refetch_for_unknown_kid(1029.9)
    assert state.should_refetch_for_unknown_kid(1030)
    assert (state.unknown_kid_refetches, state.rate_limited_refetches) == (1, 1)


def test_a_failed_fetch_keeps_the_keys_and_is_reported(rsa_key: SigningKey) -> None:
    state = _state()
    keys = _keys(rsa_key)
    state.succeeded(keys, 60, 1000)
    state.failed("HTTP 503", 1070)
    assert state.usable(1070) is keys
    status = state.status(1070)
    assert (status.fetches_ok, status.fetches_failed, status.last_error) == (1, 1, "HTTP 503")
    assert state.failing
    state.succeeded(keys, 60, 1100)
    assert not state.failing
    assert state.status(1100).last_error is None
    assert state.status(1100).stale is False


def test_a_refresh_reports_the_key_ids_it_removed(
    rsa_key: SigningKey, ec_key: SigningKey, ed_key: SigningKey
) -> None:
    state = _state()
    state.succeeded(_keys(rsa_key, ec_key), 60, 1000)
    assert state.succeeded(_keys(ec_key, ed_key), 60, 1100) == frozenset({"rsa-1"})
    assert state.status(1100).key_ids == ("ec-1", "ed-1")
    assert state.succeeded(_keys(ec_key, ed_key), 60, 1200) == frozenset()


def test_with_no_stale_if_error_keys_end_with_their_freshness(rsa_key: SigningKey) -> None:
    state = _state(stale_if_error_seconds=0)
    state.succeeded(_keys(rsa_key), 60, 1000)
    assert state.usable(1059.9) is not None
    assert state.usable(1060) is None
