"""Decision-path micro-benchmark (issue 12): the decision cache and assertion reuse.

    python benchmarks/decision_path.py [--iterations 1000] [--rounds 7]

Interleaved in every round, in rotating order, so machine noise is shared; each pass is
timed with ``perf_counter_ns`` and the median per-call time over rounds is reported:

- ``decide``: ``Engine.decide`` on a gateway-shaped request (a principal with ten
  claims, four policy headers, a client address);
- ``cache_hit_memo``: the decision cache's key and lookup for the same request, and the
  cached decision under a new decision id, the principal object reused (as when it is
  cached with its credential);
- ``cache_hit_fresh_principal``: the same with a new, equal principal object per
  request (its claims serialised for the key);
- ``decide_cel`` / ``cache_hit_memo_cel``: the same with a policy of CEL ``when:``
  rules and a relation (a costlier decision);
- ``sign``: one request-bound ES256 assertion (``AssertionSigner.sign``);
- ``reuse``: a reused assertion and its HMAC'd companion (``AssertionReuse.headers``);
- ``verify_bound``: the upstream's ``verify`` of a per-request assertion;
- ``verify_companion``: the upstream's ``verify`` of a reused assertion with its
  companion, the verified claims cached (``VerifiedAssertions``).

Both ``verify`` cases pass ``jwks=`` a JWK Set mapping, which PyJWT parses on every
call that checks a signature (``verify_bound`` pays it every time).

Results: benchmarks/results/decision_path.json. Figures are per call on one core.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from verity import invalidation  # noqa: E402
from verity.gateway.assertion import AssertionFacts, AssertionSigner, ReusableFacts  # noqa: E402
from verity.gateway.assertion_reuse import AssertionReuse  # noqa: E402
from verity.gateway.decision_cache import DecisionCache  # noqa: E402
from verity.identity.dev import generate_private_key  # noqa: E402
from verity.ids import new_decision_id  # noqa: E402
from verity.integrations import assertion  # noqa: E402
from verity.model import AccessRequest, Decision, HttpTarget, NetworkContext, Principal  # noqa: E402
from verity.policy import compile_policy, load_policy  # noqa: E402

POLICY = """
version: 1
rules:
  - name: engineers
    resources: [{host: app.test, paths: ["/docs/**"]}]
    allow: {groups: [engineers]}
  - name: admins
    resources: [{host: app.test, paths: ["/admin/**"]}]
    allow: {groups: [admins], mfa: true}
"""
RICH_POLICY = """
version: 1
rules:
  - name: no-contractors-at-night
    resources: [{host: app.test}]
    deny: {when: "principal.claims.scope == 'contractor' && request.time.getHours('UTC') < 6"}
  - name: engineers-on-laptops
    resources: [{host: app.test, paths: ["/docs/**"]}]
    allow: {all: [{groups: [engineers]},
                  {when: "principal.claims.email.endsWith('@example.com')"},
                  {relations: ["principal.claims.sub == principal.id"]}]}
"""
KEY = b"k" * 32
ISSUER = "https://gateway.bench"
CLAIMS = {
    "iss": "https://idp.bench", "sub": "alice", "aud": "verity", "exp": 2, "iat": 1,
    "jti": "j-1", "groups": ["engineers", "sre"], "email": "alice@example.com",
    "scope": "openid email", "device_id": "laptop-1",
}  # fmt: skip


def principal() -> Principal:
    return Principal("alice", email="alice@example.com",
                     groups=frozenset({"engineers", "sre"}), claims=CLAIMS)  # fmt: skip


def request(who: Principal) -> AccessRequest:
    http = HttpTarget.canonical(
        host="app.test", method="GET", path="/docs/a",
        headers={"user-agent": "wrk", "accept": "*/*", "x-original-uri": "/docs/a",
                 "accept-encoding": "gzip"},
    )  # fmt: skip
    return AccessRequest(
        principal=who, time=time.time(), http=http,
        network=NetworkContext(ip=ipaddress.ip_address("203.0.113.9")),
        context=MappingProxyType({"route": "app"}),
    )  # fmt: skip


def cases(iterations: int, rounds: int) -> dict[str, Callable[[], None]]:
    engine = compile_policy(load_policy(POLICY))
    rich = compile_policy(load_policy(RICH_POLICY))
    same = principal()
    memo_requests = [request(same) for _ in range(iterations)]
    fresh_requests = [request(principal()) for _ in range(iterations)]
    cache = DecisionCache(ttl_seconds=1.0, max_entries=1000)
    signer = AssertionSigner(generate_private_key("ES256"), issuer=ISSUER)  # type: ignore[arg-type]
    reuse = AssertionReuse(signer, {"app": KEY})
    facts = ReusableFacts("app", "laptop-1", 80)
    jwks = signer.jwks()

    def decide(policy: Any) -> Callable[[], None]:
        def run() -> None:
            for r in memo_requests:
                policy.decide(r)

        return run

    def hits(requests: list[AccessRequest], policy: Any = engine) -> Callable[[], None]:
        def run() -> None:
            first = requests[0]
            key = cache.key(first, case="consistent", policy=policy)
            assert key is not None
            cache.put(key, policy.decide(first), first, epoch=invalidation.current())
            for r in requests:
                key = cache.key(r, case="consistent", policy=policy)
                assert key is not None
                cached = cache.get(key, first.time)
                assert cached is not None
                effect, rule, _, version, reasons, obligations = cached  # as Enforcer does
                Decision(effect, rule, new_decision_id(), version, reasons, obligations)

        return run

    def sign() -> None:
        for _ in range(iterations):
            signer.sign(same, AssertionFacts("app", "d1", "GET", "/docs/a", "laptop-1", 80))

    def reused() -> None:
        epoch = invalidation.current()
        for _ in range(iterations):
            reuse.headers("app", same, facts, decision_id="d1", method="GET",
                          path="/docs/a", epoch=epoch)  # fmt: skip

    bound = [
        signer.sign(same, AssertionFacts("app", "d", "GET", "/docs/a")) for _ in range(iterations)
    ]
    verified = assertion.VerifiedAssertions()

    def verify_bound() -> None:
        replay = assertion.MemoryReplayCache(max_entries=iterations * 2)  # new: every jti once
        for token in bound:
            assertion.verify(token, issuer=ISSUER, audience="app", jwks=jwks, method="GET",
                             path="/docs/a", replay_cache=replay)  # fmt: skip

    epoch = invalidation.current()
    batches = [
        [reuse.headers("app", same, facts, decision_id="d", method="GET", path="/docs/a",
                       epoch=epoch) for _ in range(iterations)]
        for _ in range(rounds)
    ]  # fmt: skip

    def verify_companion() -> None:
        replay = assertion.MemoryReplayCache(max_entries=iterations * 2)
        for token, companion in batches.pop():  # each companion is accepted once
            assertion.verify(token, issuer=ISSUER, audience="app", jwks=jwks, method="GET",
                             path="/docs/a", replay_cache=replay, companion=companion,
                             companion_key=KEY, verified=verified)  # fmt: skip

    return {
        "decide": decide(engine),
        "cache_hit_memo": hits(memo_requests),
        "cache_hit_fresh_principal": hits(fresh_requests),
        "decide_cel": decide(rich),
        "cache_hit_memo_cel": hits(memo_requests, rich),
        "sign": sign,
        "reuse": reused,
        "verify_bound": verify_bound,
        "verify_companion": verify_companion,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    runs = cases(args.iterations, args.rounds)
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for round_no in range(args.rounds):
        order = names[round_no % len(names) :] + names[: round_no % len(names)]
        for name in order:
            gc.collect()
            started = time.perf_counter_ns()
            runs[name]()
            times[name].append((time.perf_counter_ns() - started) / args.iterations / 1000)
    median = {name: round(statistics.median(values), 2) for name, values in times.items()}
    result = {
        "benchmark": "decision_path",
        "command": f"python benchmarks/decision_path.py --iterations {args.iterations} "
        f"--rounds {args.rounds}",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "median_us_per_call": median,
    }
    out = ROOT / "benchmarks" / "results" / "decision_path.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    for name, value in median.items():
        print(f"{name:28s} {value:8.2f} us")


if __name__ == "__main__":
    main()
