"""The identity assertion: minted by the gateway, verified by integrations.assertion."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import jwt
import pytest
import redis
from cryptography.hazmat.primitives import serialization

from verity.gateway import AssertionSigner
from verity.gateway.assertion import TOKEN_TYPE, AssertionFacts
from verity.identity.dev import generate_private_key
from verity.integrations import assertion
from verity.integrations.replay import MemoryReplayCache, RedisReplayCache, ReplayCacheFullError
from verity.model import Principal

from .conftest import GATEWAY_URL, Issuer, RecordingUpstream, bearer

ALICE = Principal("alice", email="alice@example.com", groups={"engineers", "sre"})


def facts(audience: str = "wiki", method: str = "GET", path: str = "/page") -> AssertionFacts:
    return AssertionFacts(audience=audience, decision_id="d1", method=method, path=path,
                          device_id="dev-1", trust_score=80)  # fmt: skip


def signed(signer: AssertionSigner, audience: str = "wiki") -> str:
    return signer.sign(ALICE, facts(audience))


def check(token: str, signer: AssertionSigner, **kwargs: Any) -> assertion.AssertionClaims:
    options: dict[str, Any] = {"issuer": GATEWAY_URL, "audience": "wiki", "jwks": signer.jwks(),
                               "method": "GET", "path": "/page",
                               "replay_cache": assertion.MemoryReplayCache()}  # fmt: skip
    options.update(kwargs)
    return assertion.verify(token, **options)


def test_round_trip(signer: AssertionSigner) -> None:
    claims = check(signed(signer), signer)
    assert claims.subject == "alice"
    assert claims.email == "alice@example.com"
    assert claims.groups == {"engineers", "sre"}
    assert (claims.device_id, claims.trust_score, claims.decision_id) == ("dev-1", 80, "d1")
    assert claims.key_id == signer.kid
    assert claims.expires_at - claims.issued_at == 60


def test_wrong_audience_is_rejected(signer: AssertionSigner) -> None:
    with pytest.raises(assertion.AssertionAudienceError):
        check(signed(signer, audience="other-app"), signer)


def test_wrong_issuer_is_rejected(signer: AssertionSigner) -> None:
    with pytest.raises(assertion.AssertionIssuerError):
        check(signed(signer), signer, issuer="https://evil.test")


def test_expired_assertion_is_rejected(signer: AssertionSigner) -> None:
    old = AssertionSigner(signer._key, issuer=GATEWAY_URL, clock=lambda: time.time() - 3600)
    with pytest.raises(assertion.AssertionExpiredError):
        check(signed(old), old)


def test_another_key_is_rejected(signer: AssertionSigner) -> None:
    other = AssertionSigner(generate_private_key("ES256"), issuer=GATEWAY_URL)  # type: ignore[arg-type]
    with pytest.raises(assertion.AssertionKeyError):
        check(signed(other), signer)


def _forge(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature)]
    )


def test_alg_none_is_rejected(signer: AssertionSigner) -> None:
    claims = signer.claims(ALICE, facts())
    token = _forge({"alg": "none", "typ": TOKEN_TYPE, "kid": signer.kid}, claims)
    with pytest.raises(assertion.AssertionAlgorithmError):
        check(token, signer)


def test_hs256_with_the_public_key_as_secret_is_rejected(signer: AssertionSigner) -> None:
    claims = signer.claims(ALICE, facts())
    secret = signer._key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "kid": signer.kid, "typ": TOKEN_TYPE}
    unsigned = _forge(header, claims).rsplit(".", 1)[0]
    mac = hmac.new(secret, unsigned.encode(), hashlib.sha256).digest()
    token = unsigned + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    with pytest.raises(assertion.AssertionAlgorithmError):
        check(token, signer)


def test_tampered_claims_are_rejected(signer: AssertionSigner) -> None:
    header, _, signature = signed(signer).split(".")
    claims = signer.claims(Principal("root"), facts())
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(assertion.AssertionSignatureError):
        check(f"{header}.{payload}.{signature}", signer)


def test_an_access_token_is_not_an_assertion(signer: AssertionSigner) -> None:
    claims = signer.claims(ALICE, facts())
    token = jwt.encode(
        claims, signer._key, algorithm="ES256", headers={"kid": signer.kid, "typ": "JWT"}
    )
    with pytest.raises(assertion.AssertionMalformedError):
        check(token, signer)


def test_missing_required_claim_is_rejected(signer: AssertionSigner) -> None:
    claims = signer.claims(ALICE, facts())
    del claims["jti"]
    token = jwt.encode(
        claims, signer._key, algorithm="ES256", headers={"kid": signer.kid, "typ": TOKEN_TYPE}
    )
    with pytest.raises(assertion.AssertionClaimError) as caught:
        check(token, signer)
    assert caught.value.claim == "jti"


@pytest.mark.parametrize("token", ["", "a.b", "not a token", "x" * 20000])
def test_garbage_is_malformed(signer: AssertionSigner, token: str) -> None:
    with pytest.raises(assertion.AssertionVerificationError):
        check(token, signer)


def test_one_key_source_is_required(signer: AssertionSigner) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        assertion.verify(
            signed(signer), issuer=GATEWAY_URL, audience="wiki", method="GET", path="/page"
        )


@pytest.mark.anyio
async def test_gateway_assertion_verifies_for_its_route(
    client: httpx.AsyncClient, issuer: Issuer, upstream: RecordingUpstream, signer: AssertionSigner
) -> None:
    await client.get("/", headers=bearer(issuer.token()))
    seen = upstream.seen[-1]
    jwks = (await client.get("/.well-known/verity/jwks.json")).json()
    token = seen.header("x-verity-assertion")[0]
    claims = assertion.verify(
        token, issuer=GATEWAY_URL, audience="app", jwks=jwks, method="GET", path="/"
    )
    assert claims.subject == "alice"
    assert claims.decision_id == seen.header("x-verity-decision-id")[0]
    with pytest.raises(assertion.AssertionAudienceError):
        assertion.verify(
            token, issuer=GATEWAY_URL, audience="fa", jwks=jwks, method="GET", path="/"
        )


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_an_assertion_minted_for_get_is_refused_for_delete_of_the_same_path(
    signer: AssertionSigner,
) -> None:
    token = signer.sign(ALICE, facts(path="/invoices/inv-1"))
    with pytest.raises(assertion.AssertionBindingError):
        check(token, signer, method="DELETE", path="/invoices/inv-1")
    with pytest.raises(assertion.AssertionBindingError):
        check(token, signer, method="GET", path="/invoices/inv-2")
    claims = check(token, signer, method="GET", path="/invoices/inv-1?x=1")  # query not bound
    assert claims.subject == "alice"


def test_the_binding_is_over_the_canonical_path_the_app_receives(signer: AssertionSigner) -> None:
    token = signer.sign(ALICE, facts(path="/files/a b/c"))  # what the policy decided
    assert check(token, signer, path="/files/a%20b/c").subject == "alice"  # as received


def test_a_captured_assertion_is_accepted_once(signer: AssertionSigner) -> None:
    token = signed(signer)
    cache = assertion.MemoryReplayCache()
    check(token, signer, replay_cache=cache)
    for _ in range(3):
        with pytest.raises(assertion.AssertionReplayError):
            check(token, signer, replay_cache=cache)


def test_verify_refuses_a_replay_by_default(signer: AssertionSigner) -> None:
    token = signed(signer)
    options = {"issuer": GATEWAY_URL, "audience": "wiki", "jwks": signer.jwks()}
    assertion.verify(token, method="GET", path="/page", **options)
    with pytest.raises(assertion.AssertionReplayError):
        assertion.verify(token, method="GET", path="/page", **options)


def test_a_rejected_assertion_does_not_use_up_its_jti(signer: AssertionSigner) -> None:
    token = signed(signer)
    cache = assertion.MemoryReplayCache()
    with pytest.raises(assertion.AssertionBindingError):
        check(token, signer, method="DELETE", replay_cache=cache)
    assert check(token, signer, replay_cache=cache).subject == "alice"


def test_an_assertion_without_a_request_binding_is_refused(signer: AssertionSigner) -> None:
    claims = signer.claims(ALICE, facts())
    del claims["req"]
    token = jwt.encode(
        claims, signer._key, algorithm="ES256", headers={"kid": signer.kid, "typ": TOKEN_TYPE}
    )
    with pytest.raises(assertion.AssertionClaimError) as caught:
        check(token, signer)
    assert caught.value.claim == "req"


def test_concurrent_replays_are_accepted_once(signer: AssertionSigner) -> None:
    token = signed(signer)
    cache = assertion.MemoryReplayCache()

    def attempt(_: int) -> bool:
        try:
            check(token, signer, replay_cache=cache)
        except assertion.AssertionReplayError:
            return False
        return True

    with ThreadPoolExecutor(8) as pool:
        assert sorted(pool.map(attempt, range(32))) == [False] * 31 + [True]


def test_the_replay_cache_is_bounded_and_forgets_expired_ids() -> None:
    now = [1000.0]
    cache = MemoryReplayCache(2, clock=lambda: now[0])
    assert cache.first_use("a", 1010)
    assert cache.first_use("b", 1020)
    assert not cache.first_use("a", 1010)
    with pytest.raises(ReplayCacheFullError):  # full of unexpired ids: refuse, not forget
        cache.first_use("c", 1030)
    now[0] = 1010.0  # "a" expired
    assert cache.first_use("c", 1030)
    assert len(cache) == 2


def test_a_full_replay_cache_refuses_the_assertion(signer: AssertionSigner) -> None:
    cache = MemoryReplayCache(1)
    check(signed(signer), signer, replay_cache=cache)
    with pytest.raises(assertion.AssertionReplayError):
        check(signed(signer), signer, replay_cache=cache)


def test_a_shared_redis_cache_refuses_a_replay_in_another_process(
    signer: AssertionSigner, redis_url: str, redis_prefix: str
) -> None:
    token = signed(signer)
    first = redis.Redis.from_url(redis_url)  # two processes: two clients, one Redis
    second = redis.Redis.from_url(redis_url)
    try:
        check(token, signer, replay_cache=RedisReplayCache(first, prefix=redis_prefix))
        with pytest.raises(assertion.AssertionReplayError):
            check(token, signer, replay_cache=RedisReplayCache(second, prefix=redis_prefix))
        ttl = first.ttl(
            redis_prefix
            + f"{GATEWAY_URL} {jwt.decode(token, options={'verify_signature': False})['jti']}"
        )
        assert 0 < ttl <= 60 + 5 + 2  # expires with the assertion
    finally:
        first.close()
        second.close()


def test_a_redis_server_clock_ahead_of_the_app_does_not_expire_replay_ids_early(
    signer: AssertionSigner, redis_url: str, redis_prefix: str
) -> None:
    """The app checked ``exp`` by its own clock; the Redis server's clock (here: the app's
    is 10 minutes behind it) must not decide how long the id is remembered."""
    client = redis.Redis.from_url(redis_url)
    try:
        app_now = time.time() - 600
        cache = RedisReplayCache(client, prefix=redis_prefix, clock=lambda: app_now)
        assert cache.first_use("gw jti-1", app_now + 60)
        assert 59_000 < client.pttl(redis_prefix + "gw jti-1") <= 61_000  # not already gone
        assert not cache.first_use("gw jti-1", app_now + 60)
    finally:
        client.close()


def test_every_assertion_has_its_own_jti_without_a_random_draw_per_request() -> None:
    """A replay cache keys on ``jti``: two assertions must never share one (they come
    from the process prefix and a counter, so no system call is made per request)."""
    signer = AssertionSigner(generate_private_key("ES256"), issuer=GATEWAY_URL)  # type: ignore[arg-type]
    principal = Principal(id="alice")
    ids = {
        jwt.decode(signer.sign(principal, facts()), options={"verify_signature": False})["jti"]
        for _ in range(2000)
    }
    assert len(ids) == 2000
