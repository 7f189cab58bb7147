"""Assertion reuse: one signed assertion per caller and route for up to 30 s, each request
bound by its own HMAC'd companion (``X-Verity-Request``), which the upstream verifier
requires. The request binding stays a security property: a reused assertion alone, or
with another request's companion, authorises nothing."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from verity import assertion_companion, invalidation
from verity.gateway import AssertionSigner
from verity.gateway.assertion import ReusableFacts
from verity.gateway.assertion_reuse import MARGIN, AssertionReuse
from verity.gateway.errors import AssertionKeyError
from verity.identity.dev import generate_private_key
from verity.integrations import assertion
from verity.integrations._common import AssertionSource, Guard, Incoming
from verity.model import Principal
from verity.policy import compile_policy, load_policy

from .conftest import (
    GATEWAY_URL,
    Issuer,
    MakeGateway,
    RecordingUpstream,
    Seen,
    bearer,
    gateway_config,
)

pytestmark = pytest.mark.anyio
KEY = b"k" * 32
OTHER_KEY = b"o" * 32
ALICE = Principal("alice", email="alice@example.com", groups=frozenset({"engineers"}))
FACTS = ReusableFacts("wiki", "dev-1", 80)


class Clock:
    """A settable clock, starting now (the JWT library checks ``exp`` by real time)."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def reuse(clock: Clock) -> AssertionReuse:
    signer = AssertionSigner(
        generate_private_key("ES256"),  # type: ignore[arg-type]
        issuer=GATEWAY_URL, clock=clock,
    )  # fmt: skip
    return AssertionReuse(signer, {"wiki": KEY}, clock=clock)


def issue(
    reuse: AssertionReuse, method: str = "GET", path: str = "/page", did: str = "d1"
) -> tuple[str, str]:
    return reuse.headers(
        "wiki", ALICE, FACTS, decision_id=did, method=method, path=path,
        epoch=invalidation.current(),
    )  # fmt: skip


def check(
    reuse: AssertionReuse,
    token: str,
    companion: str | None,
    *,
    method: str = "GET",
    path: str = "/page",
    key: bytes | None = KEY,
    clock: Clock | None = None,
    **options: Any,
) -> assertion.AssertionClaims:
    settings: dict[str, Any] = {
        "issuer": GATEWAY_URL, "audience": "wiki", "jwks": reuse.signer.jwks(),
        "method": method, "path": path, "replay_cache": assertion.MemoryReplayCache(),
        "companion": companion, "companion_key": key,
    }  # fmt: skip
    if clock is not None:
        settings["clock"] = clock
    settings.update(options)
    return assertion.verify(token, **settings)


# --- the gateway side -------------------------------------------------------------------


def test_one_assertion_is_reused_and_each_request_gets_its_own_companion(
    reuse: AssertionReuse, clock: Clock
) -> None:
    first, c1 = issue(reuse, did="d1")
    second, c2 = issue(reuse, did="d2")
    assert first == second
    assert reuse.signatures == 1
    assert c1 != c2
    p1 = assertion_companion.read(KEY, c1)
    p2 = assertion_companion.read(KEY, c2)
    assert (p1["did"], p2["did"]) == ("d1", "d2")
    assert p1["n"] != p2["n"]
    claims = json_claims(first)
    assert claims["cmp"] == 1
    assert "req" not in claims
    assert "decision_id" not in claims
    assert claims["exp"] - claims["iat"] == 30
    assert p1["jti"] == claims["jti"]


def json_claims(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    import base64

    document: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * 4))
    return document


def test_the_assertion_is_signed_again_within_the_margin_of_its_expiry(
    reuse: AssertionReuse, clock: Clock
) -> None:
    first, _ = issue(reuse)
    clock.now += 30 - MARGIN - 1
    assert issue(reuse)[0] == first
    clock.now += 1  # MARGIN seconds left: never sent that close to its expiry
    renewed, _ = issue(reuse)
    assert renewed != first
    assert json_claims(renewed)["exp"] - int(clock.now) == 30


def test_any_invalidation_signs_a_new_assertion(reuse: AssertionReuse) -> None:
    first, _ = issue(reuse)
    invalidation.bump()  # a revocation, a reload, a grant or posture change
    assert issue(reuse)[0] != first


def test_other_facts_or_another_principal_get_another_assertion(reuse: AssertionReuse) -> None:
    first, _ = issue(reuse)
    other = reuse.headers(
        "wiki", ALICE, ReusableFacts("wiki", "dev-1", 40), decision_id="d", method="GET",
        path="/page", epoch=invalidation.current(),
    )  # fmt: skip
    bob = Principal("bob", groups=frozenset({"engineers"}))
    third = reuse.headers(
        "wiki", bob, FACTS, decision_id="d", method="GET", path="/page",
        epoch=invalidation.current(),
    )  # fmt: skip
    assert len({first, other[0], third[0]}) == 3
    assert json_claims(other[0])["trust_score"] == 40


@pytest.mark.parametrize("key", [b"", b"short", b"x" * 31])
def test_a_companion_key_shorter_than_32_bytes_is_refused(key: bytes) -> None:
    signer = AssertionSigner(generate_private_key("ES256"), issuer=GATEWAY_URL)  # type: ignore[arg-type]
    with pytest.raises(assertion_companion.CompanionKeyError):
        AssertionReuse(signer, {"wiki": key})


# --- the upstream verifier: the attacks -------------------------------------------------


def test_a_reused_assertion_with_its_companion_verifies(reuse: AssertionReuse) -> None:
    token, companion = issue(reuse, did="d-42")
    claims = check(reuse, token, companion)
    assert claims.subject == "alice"
    assert claims.decision_id == "d-42"  # the request's, from the companion
    assert (claims.device_id, claims.trust_score) == ("dev-1", 80)


def test_reused_assertion_without_companion_is_refused(reuse: AssertionReuse) -> None:
    token, _ = issue(reuse)
    with pytest.raises(assertion.AssertionCompanionError):
        check(reuse, token, None)


def test_reused_assertion_without_a_companion_key_is_refused(reuse: AssertionReuse) -> None:
    token, companion = issue(reuse)
    with pytest.raises(assertion.AssertionCompanionError):
        check(reuse, token, companion, key=None)


def test_companion_for_get_does_not_authorize_delete(reuse: AssertionReuse) -> None:
    token, companion = issue(reuse, method="GET", path="/invoices/1")
    with pytest.raises(assertion.AssertionBindingError):
        check(reuse, token, companion, method="DELETE", path="/invoices/1")
    with pytest.raises(assertion.AssertionBindingError):
        check(reuse, token, companion, method="GET", path="/invoices/2")


def test_replayed_companion_is_refused(reuse: AssertionReuse) -> None:
    token, companion = issue(reuse)
    replay = assertion.MemoryReplayCache()
    check(reuse, token, companion, replay_cache=replay)
    with pytest.raises(assertion.AssertionReplayError):
        check(reuse, token, companion, replay_cache=replay)
    _, another = issue(reuse)  # the same assertion with a new request's companion: fine
    check(reuse, token, another, replay_cache=replay)


def test_forged_companion_hmac_is_refused(reuse: AssertionReuse) -> None:
    token, companion = issue(reuse, method="GET", path="/invoices/1")
    payload = assertion_companion.read(KEY, companion)
    forged = assertion_companion.make(
        OTHER_KEY, jti=payload["jti"], req=payload["req"], did="d", iat=payload["iat"]
    )
    with pytest.raises(assertion.AssertionCompanionError):
        check(reuse, token, forged)
    body, _, mac = companion.partition(".")
    tampered = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1] + "." + mac
    with pytest.raises(assertion.AssertionCompanionError):
        check(reuse, token, tampered)


@pytest.mark.parametrize("value", ["", ".", "a.b.c", "x" * 2000, "!!!.###", "e30.AAAA"], ids=repr)
def test_malformed_companions_are_refused(reuse: AssertionReuse, value: str) -> None:
    token, _ = issue(reuse)
    with pytest.raises(assertion.AssertionCompanionError):
        check(reuse, token, value)


def test_a_companion_of_another_assertion_is_refused(reuse: AssertionReuse) -> None:
    token, _ = issue(reuse)
    invalidation.bump()
    newer, companion = issue(reuse)  # a companion for the newer assertion
    assert newer != token
    with pytest.raises(assertion.AssertionCompanionError):
        check(reuse, token, companion)


def test_a_stale_companion_is_refused(reuse: AssertionReuse, clock: Clock) -> None:
    token, companion = issue(reuse)
    later = Clock(clock.now + 36)  # past companion_max_age (30 s) plus the leeway (5 s)
    with pytest.raises(assertion.AssertionCompanionError):
        check(reuse, token, companion, clock=later)
    earlier = Clock(clock.now - 6)  # iat in the future beyond the leeway
    with pytest.raises(assertion.AssertionNotYetValidError):
        check(reuse, token, companion, clock=earlier)


def test_a_per_request_assertion_is_not_turned_into_a_reused_one(
    reuse: AssertionReuse,
) -> None:
    """``cmp`` with ``req`` (or any ``cmp`` value but 1) is malformed, never a way to
    skip the binding."""
    claims = reuse.signer.reusable_claims(ALICE, FACTS, lifetime=30)
    for changed in ({"req": "x"}, {"cmp": True}, {"cmp": 2}):
        token = reuse.signer.sign_claims({**claims, **changed})
        with pytest.raises(assertion.AssertionMalformedError):
            check(reuse, token, None)


def test_verified_assertions_skip_the_signature_check_but_not_the_companion(
    reuse: AssertionReuse,
) -> None:
    verified = assertion.VerifiedAssertions()
    token, companion = issue(reuse)
    check(reuse, token, companion, verified=verified)
    _, other = issue(reuse, method="DELETE")
    with pytest.raises(assertion.AssertionBindingError):  # cached, still bound per request
        check(reuse, token, other, verified=verified)
    with pytest.raises(assertion.AssertionCompanionError):
        check(reuse, token, None, verified=verified)
    with pytest.raises(assertion.AssertionAudienceError):  # other settings: verified again
        check(reuse, token, companion, audience="other", verified=verified)


def test_a_cached_assertion_is_refused_once_its_key_leaves_the_jwks(
    reuse: AssertionReuse,
) -> None:
    """A signing key pulled from the gateway's JWKS (rotation, compromise) stops the
    assertions it signed at once, cached ones too: not up to 30 s later."""
    verified = assertion.VerifiedAssertions()
    token, companion = issue(reuse)
    check(reuse, token, companion, verified=verified)
    _, fresh = issue(reuse, did="d2")
    with pytest.raises(assertion.AssertionKeyError):
        check(reuse, token, fresh, verified=verified, jwks={"keys": []})
    other = AssertionSigner(generate_private_key("ES256"), issuer=GATEWAY_URL)  # type: ignore[arg-type]
    replaced = {"keys": [dict(other.jwk, kid=reuse.signer.jwk["kid"])]}  # same kid, new key
    _, third = issue(reuse, did="d3")
    with pytest.raises(assertion.AssertionSignatureError):
        check(reuse, token, third, verified=verified, jwks=replaced)


def test_the_guard_reads_the_companion_header(reuse: AssertionReuse) -> None:
    source = AssertionSource(issuer=GATEWAY_URL, audience="wiki", jwks=reuse.signer.jwks(),
                             companion_key=KEY)  # fmt: skip
    guard = Guard(engine=compile_policy(load_policy("version: 1\nrules: []\n")), assertion=source)
    token, companion = issue(reuse, path="/page")

    def incoming(headers: list[tuple[bytes, bytes]], method: str = "GET") -> Incoming:
        return Incoming(method, "/page", "/page", [(b"host", b"wiki.test"), *headers])

    with_companion = [(b"x-verity-assertion", token.encode()),
                      (b"x-verity-request", companion.encode())]  # fmt: skip
    assert guard.identify(incoming(with_companion)).principal.id == "alice"
    _, fresh = issue(reuse, path="/page")
    with pytest.raises(assertion.AssertionCompanionError):
        guard.identify(incoming([(b"x-verity-assertion", token.encode())]))
    headers = [(b"x-verity-assertion", token.encode()), (b"x-verity-request", fresh.encode())]
    with pytest.raises(assertion.AssertionBindingError):
        guard.identify(incoming(headers, method="DELETE"))


# --- through the gateway ----------------------------------------------------------------


@pytest.fixture
async def gateway(make_gateway: MakeGateway, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    key_file = tmp_path / "companion.key"
    key_file.write_text(KEY.decode() + "\n")
    routes = [
        {"name": "app", "host": "app.test", "upstream": "http://upstream.test",
         "assertion_companion_key_file": str(key_file)},
        {"name": "small", "host": "small.test", "upstream": "http://upstream.test"},
    ]  # fmt: skip
    app = make_gateway(config=gateway_config(routes=routes))
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as client:
        yield client


async def upstream_view(
    client: httpx.AsyncClient, upstream: RecordingUpstream, token: str, method: str, path: str
) -> Seen:
    response = await client.request(method, path, headers=bearer(token))
    assert response.status_code == 200
    return upstream.seen[-1]


async def test_through_the_proxy_each_request_is_bound_by_its_companion(
    gateway: httpx.AsyncClient, issuer: Issuer, upstream: RecordingUpstream
) -> None:
    token = issuer.token()
    jwks = (await gateway.get("/.well-known/verity/jwks.json")).json()
    first = await upstream_view(gateway, upstream, token, "GET", "/docs/a")
    second = await upstream_view(gateway, upstream, token, "POST", "/docs/b")
    assertion_1 = first.header("x-verity-assertion")[0]
    assert assertion_1 == second.header("x-verity-assertion")[0]  # reused
    replay = assertion.MemoryReplayCache()
    for seen in (first, second):
        claims = assertion.verify(
            seen.header("x-verity-assertion")[0], issuer=GATEWAY_URL, audience="app",
            jwks=jwks, method=seen.method, path=seen.path, replay_cache=replay,
            companion=seen.header("x-verity-request")[0], companion_key=KEY,
        )  # fmt: skip
        assert claims.decision_id == seen.header("x-verity-decision-id")[0]
    with pytest.raises(assertion.AssertionBindingError):  # the GET's companion, for a POST
        assertion.verify(
            assertion_1, issuer=GATEWAY_URL, audience="app", jwks=jwks, method="POST",
            path="/docs/a", replay_cache=assertion.MemoryReplayCache(),
            companion=first.header("x-verity-request")[0], companion_key=KEY,
        )  # fmt: skip


async def test_a_client_sent_companion_never_reaches_the_upstream(
    gateway: httpx.AsyncClient, issuer: Issuer, upstream: RecordingUpstream
) -> None:
    headers = {**bearer(issuer.token()), "X-Verity-Request": "forged.value"}
    assert (await gateway.get("/docs/a", headers=headers)).status_code == 200
    assert upstream.seen[-1].header("x-verity-request") != ["forged.value"]
    assert len(upstream.seen[-1].header("x-verity-request")) == 1


async def test_a_route_without_a_key_keeps_one_bound_assertion_per_request(
    gateway: httpx.AsyncClient, issuer: Issuer, upstream: RecordingUpstream
) -> None:
    token = issuer.token()
    seen = [
        await upstream_view(gateway, upstream, token, "GET", "http://small.test/x")
        for _ in range(2)
    ]
    minted = [s.header("x-verity-assertion")[0] for s in seen]
    assert minted[0] != minted[1]
    assert all("req" in json_claims(m) and "cmp" not in json_claims(m) for m in minted)
    assert all(s.header("x-verity-request") == [] for s in seen)


def test_an_unreadable_or_short_key_file_fails_at_start(
    make_gateway: MakeGateway, tmp_path: Path
) -> None:
    short = tmp_path / "short.key"
    short.write_text("too short")
    for path in (short, tmp_path / "missing.key"):
        routes = [{"name": "app", "host": "app.test", "upstream": "http://u.test",
                   "assertion_companion_key_file": str(path)}]  # fmt: skip
        with pytest.raises(AssertionKeyError) as caught:
            make_gateway(config=gateway_config(routes=routes))
        assert "too short" not in str(caught.value)  # the key is never in the message
