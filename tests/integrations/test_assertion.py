"""``verity.integrations.assertion.verify`` at its edges: the size cap, header and claim
shapes, the leeway on each time claim, the request binding, the replay key and how long
it is kept, each companion check at its limit, and the verified-assertion cache."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from jwt.algorithms import ECAlgorithm

from verity import assertion_companion
from verity.gateway import AssertionSigner
from verity.identity.dev import generate_private_key
from verity.integrations import assertion
from verity.integrations.replay import MemoryReplayCache, ReplayCacheFullError
from verity.request_binding import request_binding

ISSUER = "https://gateway.example"
KEY = b"k" * 32


class RecordingCache:
    """A replay cache that records each key and how long it was to be kept."""

    def __init__(self, *, full: bool = False) -> None:
        self.seen: dict[str, float] = {}
        self.full = full

    def first_use(self, key: str, expires: float) -> bool:
        if self.full:
            raise ReplayCacheFullError("10 ids")
        fresh = key not in self.seen
        self.seen.setdefault(key, expires)
        return fresh


@pytest.fixture(scope="module")
def signer() -> AssertionSigner:
    return AssertionSigner(generate_private_key("ES256"), issuer=ISSUER)  # type: ignore[arg-type]


def claims_at(now: int, **overrides: Any) -> dict[str, Any]:
    """Per-request assertion claims for GET /page at ``now``; ``None`` removes a claim."""
    base: dict[str, Any] = {
        "iss": ISSUER, "aud": "wiki", "sub": "alice", "email": "alice@example.com",
        "groups": ["eng"], "device_id": "dev-1", "trust_score": 80, "decision_id": "d1",
        "req": request_binding("GET", "/page"), "iat": now, "nbf": now, "exp": now + 60,
        "jti": f"jti-{time.monotonic_ns()}",
    }  # fmt: skip
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def token(signer: AssertionSigner, **overrides: Any) -> str:
    return signer.sign_claims(claims_at(int(time.time()), **overrides))


def check(signer: AssertionSigner, value: str, **options: Any) -> assertion.AssertionClaims:
    settings: dict[str, Any] = {
        "issuer": ISSUER, "audience": "wiki", "jwks": signer.jwks(), "method": "GET",
        "path": "/page", "replay_cache": MemoryReplayCache(),
    }  # fmt: skip
    settings.update(options)
    return assertion.verify(value, **settings)


def forge_header(signer: AssertionSigner, header: dict[str, Any]) -> str:
    """A valid assertion's payload under ``header`` (``None`` values removed), signed
    with the gateway's key."""
    fields = {"alg": "ES256", **{k: v for k, v in header.items() if v is not None}}
    encoded = jwt.utils.base64url_encode(json.dumps(fields).encode()).decode()
    payload = token(signer).split(".")[1]
    signing_input = f"{encoded}.{payload}".encode()
    signature = ECAlgorithm(ECAlgorithm.SHA256).sign(signing_input, signer._key)
    return f"{signing_input.decode()}.{jwt.utils.base64url_encode(signature).decode()}"


# --- size, header, key --------------------------------------------------------------------


def test_an_assertion_at_the_size_cap_is_parsed_and_one_byte_more_is_refused_unread(
    signer: AssertionSigner,
) -> None:
    with pytest.raises(assertion.AssertionMalformedError, match="not a compact JWS"):
        check(signer, "a" * 16384)
    with pytest.raises(assertion.AssertionMalformedError, match="too large"):
        check(signer, "a" * 16385)


def test_every_field_of_a_valid_assertion_is_read(signer: AssertionSigner) -> None:
    now = int(time.time())
    got = check(signer, signer.sign_claims(claims_at(now, jti="j-1")))
    assert (got.subject, got.email, got.groups) == ("alice", "alice@example.com", {"eng"})
    assert (got.device_id, got.trust_score, got.decision_id) == ("dev-1", 80, "d1")
    assert (got.issuer, got.audience, got.jti, got.key_id) == (ISSUER, "wiki", "j-1", signer.kid)
    assert (got.issued_at, got.expires_at) == (now, now + 60)
    assert got.claims["req"] == request_binding("GET", "/page")
    with pytest.raises(TypeError):
        got.claims["sub"] = "root"  # type: ignore[index]


def test_optional_claims_may_be_absent(signer: AssertionSigner) -> None:
    got = check(
        signer,
        token(signer, email=None, groups=None, device_id=None, trust_score=None, decision_id=None),
    )
    assert (got.email, got.groups, got.device_id, got.trust_score, got.decision_id) == (
        None, frozenset(), None, None, None,
    )  # fmt: skip


@pytest.mark.parametrize("alg", ["ES384", "RS256", "HS256", "EdDSA", "es256"])
def test_only_es256_is_accepted_whatever_the_header_says(signer: AssertionSigner, alg: str) -> None:
    _header, payload, signature = token(signer).split(".")
    forged = jwt.utils.base64url_encode(
        f'{{"alg":"{alg}","kid":"{signer.kid}","typ":"{assertion.TOKEN_TYPE}"}}'.encode()
    ).decode()
    with pytest.raises(assertion.AssertionAlgorithmError):
        check(signer, f"{forged}.{payload}.{signature}")


@pytest.mark.parametrize("typ", [None, "JWT", "at+jwt", "VERITY-ASSERTION+JWT"])
def test_only_the_assertion_typ_is_accepted(signer: AssertionSigner, typ: str | None) -> None:
    header: dict[str, Any] = {"kid": signer.kid, "typ": typ}
    with pytest.raises(assertion.AssertionMalformedError, match="typ must be"):
        check(signer, forge_header(signer, header))


def test_an_assertion_without_a_kid_has_no_key(signer: AssertionSigner) -> None:
    with pytest.raises(assertion.AssertionKeyError, match="no 'kid'"):
        check(signer, forge_header(signer, {"typ": assertion.TOKEN_TYPE}))


@pytest.mark.parametrize("kid", [7, ["k"]])
def test_a_kid_that_is_not_a_string_is_malformed(signer: AssertionSigner, kid: Any) -> None:
    with pytest.raises(assertion.AssertionMalformedError):
        check(signer, forge_header(signer, {"typ": assertion.TOKEN_TYPE, "kid": kid}))


def test_an_unknown_kid_is_a_key_error(signer: AssertionSigner) -> None:
    header = {"typ": assertion.TOKEN_TYPE, "kid": "other"}
    with pytest.raises(assertion.AssertionKeyError, match="no key in the JWKS"):
        check(signer, forge_header(signer, header))


def test_an_unusable_jwks_is_a_key_error(signer: AssertionSigner) -> None:
    with pytest.raises(assertion.AssertionKeyError, match="unusable JWKS"):
        check(signer, token(signer), jwks={"keys": [{"kty": "nope", "kid": signer.kid}]})


def test_an_unreachable_jwks_url_is_a_key_error(signer: AssertionSigner) -> None:
    with pytest.raises(assertion.AssertionKeyError, match="cannot get the gateway's keys"):
        check(signer, token(signer), jwks=None, jwks_url="http://127.0.0.1:9/jwks.json")


def test_exactly_one_key_source(signer: AssertionSigner) -> None:
    for sources in ({"jwks": None}, {"jwks_url": "https://gw.example/jwks.json"}):
        with pytest.raises(ValueError, match="exactly one") as caught:
            check(signer, token(signer), **sources)
        assert str(caught.value) == "give exactly one of jwks_url and jwks"


def test_every_public_name_is_exported() -> None:
    for name in assertion.__all__:
        assert getattr(assertion, name) is not None, name
    errors = {n for n in dir(assertion) if n.startswith("Assertion") and n.endswith("Error")}
    assert errors <= set(assertion.__all__)


# --- claims -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changed",
    [
        {"email": 7},
        {"device_id": 7},
        {"decision_id": ["d"]},
        {"trust_score": "80"},
        {"trust_score": True},
        {"trust_score": 80.5},
        {"groups": "eng"},
        {"groups": ["eng", 1]},
        {"groups": {"eng": 1}},
        {"sub": 7},
        {"jti": 7},
        {"sub": ["alice"]},
    ],
)
def test_a_claim_of_the_wrong_type_is_malformed(
    signer: AssertionSigner, changed: dict[str, Any]
) -> None:
    with pytest.raises(assertion.AssertionMalformedError):
        check(signer, token(signer, **changed))


@pytest.mark.parametrize("claim", ["iss", "aud", "exp", "iat", "sub", "jti", "req"])
def test_each_required_claim_is_required(signer: AssertionSigner, claim: str) -> None:
    with pytest.raises(assertion.AssertionClaimError) as caught:
        check(signer, token(signer, **{claim: None}))
    assert caught.value.claim == claim


def test_a_list_audience_is_refused_even_when_it_names_the_app(signer: AssertionSigner) -> None:
    with pytest.raises(assertion.AssertionAudienceError):
        check(signer, token(signer, aud=["wiki", "other"]))


@pytest.mark.parametrize(
    ("claim", "offset", "error"),
    [
        ("exp", -20, None),
        ("exp", -40, assertion.AssertionExpiredError),
        ("iat", 20, None),
        ("iat", 40, assertion.AssertionNotYetValidError),
        ("nbf", 20, None),
        ("nbf", 40, assertion.AssertionNotYetValidError),
    ],
)
def test_the_leeway_applies_to_each_time_claim(
    signer: AssertionSigner, claim: str, offset: int, error: type[Exception] | None
) -> None:
    """With a 30 s leeway, 20 s past ``exp`` (or 20 s before ``iat``/``nbf``) is accepted
    and 40 s is refused; with no leeway, 20 s is refused too. (The JWT library reads the
    real clock: the margins leave seconds for a slow machine.)"""
    now = int(time.time())
    value = signer.sign_claims(claims_at(now, **{claim: now + offset}))
    if error is not None:
        with pytest.raises(error):
            check(signer, value, leeway=30)
        return
    assert check(signer, value, leeway=30).subject == "alice"
    strict = (
        assertion.AssertionExpiredError if claim == "exp" else assertion.AssertionNotYetValidError
    )
    with pytest.raises(strict):
        check(signer, value, leeway=0)


# --- request binding ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/page"), ("GET", "/page2"), ("GET", "/"), ("get", "/Page")],
)
def test_an_assertion_binds_one_method_and_path(
    signer: AssertionSigner, method: str, path: str
) -> None:
    with pytest.raises(assertion.AssertionBindingError, match="another method or path"):
        check(signer, token(signer), method=method, path=path)


def test_the_binding_is_case_insensitive_in_the_method_and_reads_the_canonical_path(
    signer: AssertionSigner,
) -> None:
    assert check(signer, token(signer), method="get", path="/a/../page?x=1").subject == "alice"


def test_a_non_string_binding_is_malformed(signer: AssertionSigner) -> None:
    with pytest.raises(assertion.AssertionMalformedError, match="'req' must be a string"):
        check(signer, token(signer, req=5))


def test_a_path_that_cannot_be_canonicalised_is_a_binding_error(signer: AssertionSigner) -> None:
    with pytest.raises(assertion.AssertionBindingError) as caught:
        check(signer, token(signer), path="http://[::1/page")
    assert str(caught.value) == "the request path cannot be canonicalised"


# --- replay -------------------------------------------------------------------------------


def test_the_replay_key_is_issuer_and_jti_kept_until_exp_plus_leeway(
    signer: AssertionSigner,
) -> None:
    cache = RecordingCache()
    now = int(time.time())
    value = signer.sign_claims(claims_at(now, jti="j-7"))
    check(signer, value, replay_cache=cache, leeway=4)
    assert cache.seen == {f"{ISSUER} j-7": now + 60 + 4}
    with pytest.raises(assertion.AssertionReplayError, match="already used"):
        check(signer, value, replay_cache=cache)


def test_distinct_assertions_share_a_replay_cache(signer: AssertionSigner) -> None:
    cache = MemoryReplayCache()
    first, second = token(signer, jti="a"), token(signer, jti="b")
    assert check(signer, first, replay_cache=cache).jti == "a"
    assert check(signer, second, replay_cache=cache).jti == "b"


def test_the_same_jti_from_another_gateway_is_another_assertion() -> None:
    cache = RecordingCache()
    for issuer in ("https://a.example", "https://b.example"):
        other = AssertionSigner(generate_private_key("ES256"), issuer=issuer)  # type: ignore[arg-type]
        check(other, token(other, iss=issuer, jti="same"), issuer=issuer, replay_cache=cache)
    assert set(cache.seen) == {"https://a.example same", "https://b.example same"}


def test_a_full_replay_cache_refuses(signer: AssertionSigner) -> None:
    with pytest.raises(assertion.AssertionReplayError, match="replay cache full"):
        check(signer, token(signer), replay_cache=RecordingCache(full=True))


# --- reused assertions and their companions -----------------------------------------------


def reused(signer: AssertionSigner, now: int, jti: str = "r-1") -> str:
    return signer.sign_claims(
        claims_at(now, req=None, decision_id=None, cmp=1, exp=now + 30, jti=jti)
    )


def companion(
    iat: float, *, jti: str = "r-1", method: str = "GET", path: str = "/page", n: str = "n-1"
) -> str:
    return assertion_companion.make(
        KEY, jti=jti, req=request_binding(method, path), did="d-9", iat=int(iat), n=n
    )


def check_reused(
    signer: AssertionSigner, value: str, extra: str | None, now: float, **options: Any
) -> assertion.AssertionClaims:
    settings: dict[str, Any] = {"companion": extra, "companion_key": KEY, "clock": lambda: now}
    settings.update(options)
    return check(signer, value, **settings)


def test_a_reused_assertion_takes_its_decision_id_from_the_companion(
    signer: AssertionSigner,
) -> None:
    now = int(time.time())
    got = check_reused(signer, reused(signer, now), companion(now), now)
    assert (got.decision_id, got.subject, got.jti) == ("d-9", "alice", "r-1")


@pytest.mark.parametrize(
    ("age", "accepted"),
    [(-5, True), (-5.5, False), (35, True), (35.5, False), (0, True)],
)
def test_a_companion_is_accepted_from_leeway_before_to_max_age_plus_leeway_after(
    signer: AssertionSigner, age: float, accepted: bool
) -> None:
    """``iat`` at most ``leeway`` (5 s) in the future and ``companion_max_age`` (30 s)
    plus the leeway in the past, both edges included."""
    issued = int(time.time())
    value, extra = reused(signer, issued), companion(issued)
    if accepted:
        assert check_reused(signer, value, extra, issued + age).decision_id == "d-9"
        return
    error = assertion.AssertionNotYetValidError if age < 0 else assertion.AssertionCompanionError
    with pytest.raises(error):
        check_reused(signer, value, extra, issued + age)


def test_the_companion_age_limit_follows_companion_max_age(signer: AssertionSigner) -> None:
    issued = int(time.time())
    value, extra = reused(signer, issued), companion(issued)
    with pytest.raises(assertion.AssertionCompanionError, match="too old"):
        check_reused(signer, value, extra, issued + 16, companion_max_age=10)
    got = check_reused(signer, value, extra, issued + 15, companion_max_age=10)
    assert got.decision_id == "d-9"


def test_companion_replay_key_and_lifetime(signer: AssertionSigner) -> None:
    issued = int(time.time())
    cache = RecordingCache()
    value = reused(signer, issued)
    check_reused(signer, value, companion(issued, n="n-1"), issued, replay_cache=cache)
    check_reused(signer, value, companion(issued, n="n-2"), issued, replay_cache=cache)
    assert cache.seen == {
        f"{ISSUER} r-1 n-1": issued + 30 + 5,
        f"{ISSUER} r-1 n-2": issued + 30 + 5,
    }
    with pytest.raises(assertion.AssertionReplayError, match="already used"):
        check_reused(signer, value, companion(issued, n="n-1"), issued, replay_cache=cache)
    with pytest.raises(assertion.AssertionReplayError, match="replay cache full"):
        check_reused(
            signer, value, companion(issued), issued, replay_cache=RecordingCache(full=True)
        )


@pytest.mark.parametrize(
    ("extra", "key", "message"),
    [
        (None, KEY, "came without its companion"),
        ("x", None, "needs the route's companion key"),
        ("not-a-companion", KEY, "not a companion value"),
    ],
)
def test_a_reused_assertion_without_a_valid_companion_is_refused(
    signer: AssertionSigner, extra: str | None, key: bytes | None, message: str
) -> None:
    now = int(time.time())
    with pytest.raises(assertion.AssertionCompanionError, match=message):
        check_reused(signer, reused(signer, now), extra, now, companion_key=key)


def test_a_companion_of_another_assertion_or_request_is_refused(signer: AssertionSigner) -> None:
    now = int(time.time())
    value = reused(signer, now)
    with pytest.raises(assertion.AssertionCompanionError, match="another assertion"):
        check_reused(signer, value, companion(now, jti="r-2"), now)
    with pytest.raises(assertion.AssertionBindingError, match="another method or path"):
        check_reused(signer, value, companion(now, method="DELETE"), now)


# --- the verified-assertion cache ---------------------------------------------------------


def test_verified_assertions_keep_reused_ones_until_exp_plus_leeway(
    signer: AssertionSigner,
) -> None:
    now = int(time.time())
    verified = assertion.VerifiedAssertions()
    value = reused(signer, now)
    check_reused(signer, value, companion(now), now, verified=verified)
    assert verified.get(value, now + 30 + 5 - 0.001) is not None
    assert verified.get(value, now + 30 + 5) is None
    assert verified.get(value, now) is None  # the expired entry was dropped


def test_verified_assertions_never_keep_a_per_request_assertion(signer: AssertionSigner) -> None:
    verified = assertion.VerifiedAssertions()
    value = token(signer)
    check(signer, value, verified=verified)
    assert verified.get(value, time.time()) is None


def test_a_cached_assertion_is_verified_again_for_another_issuer(signer: AssertionSigner) -> None:
    now = int(time.time())
    verified = assertion.VerifiedAssertions()
    value = reused(signer, now)
    check_reused(signer, value, companion(now, n="a"), now, verified=verified)
    with pytest.raises(assertion.AssertionIssuerError):
        check_reused(
            signer, value, companion(now, n="b"), now, verified=verified, issuer="https://x.test"
        )


def test_a_cache_hit_is_served_without_the_signature_check(signer: AssertionSigner) -> None:
    """A hit must not re-decode the token (that is what the cache is for), and it answers
    the claims that were verified."""
    now = int(time.time())
    verified = assertion.VerifiedAssertions()
    value = reused(signer, now)
    first = check_reused(signer, value, companion(now, n="a"), now, verified=verified)
    original = assertion._decode
    try:
        assertion._decode = None  # type: ignore[assignment]
        again = check_reused(signer, value, companion(now, n="b"), now, verified=verified)
    finally:
        assertion._decode = original
    assert again == first


def test_verified_assertions_are_bounded_least_recently_used_first() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        assertion.VerifiedAssertions(0)
    cache = assertion.VerifiedAssertions(max_entries=2)
    for name in ("a", "b"):
        cache.put(name, 100, {"sub": name}, "kid", "key")
    assert cache.get("a", 0) == ({"sub": "a"}, "kid", "key")  # a is now the most recent
    cache.put("c", 100, {"sub": "c"}, None, "key")
    assert cache.get("b", 0) is None
    assert cache.get("a", 0) is not None
    assert cache.get("c", 0) == ({"sub": "c"}, None, "key")
    one = assertion.VerifiedAssertions(max_entries=1)
    one.put("x", 100, {}, None, None)
    assert one.get("x", 0) is not None


def test_a_companion_whose_jti_is_not_a_string_is_refused(signer: AssertionSigner) -> None:
    now = int(time.time())
    extra = assertion_companion.make(
        KEY,
        jti=1,
        req=request_binding("GET", "/page"),
        did="d",
        iat=now,
        n="n",  # type: ignore[arg-type]
    )
    with pytest.raises(assertion.AssertionCompanionError, match="wrong type"):
        check_reused(signer, reused(signer, now), extra, now)
