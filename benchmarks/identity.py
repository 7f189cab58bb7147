"""Token verification benchmark: Verity's TokenVerifier against a bare PyJWT call, in one run.

    python benchmarks/identity.py [--tokens 200] [--rounds 15]

For RS256 (RSA 2048), ES256 (P-256) and EdDSA (Ed25519) the same distinct tokens are
verified three ways:

- ``bare``: ``jwt.decode(token, key, algorithms=[alg], audience=..., issuer=...)`` with
  the public key object (the baseline: signature and registered claims, nothing else);
- ``cold``: ``TokenVerifier.verify`` with the token cache disabled, so every call runs
  the full check (size cap, strict parsing, header policy, key lookup, signature, claims,
  revocation list);
- ``warm``: ``TokenVerifier.verify`` on tokens already in its cache (SHA-256 + lookup).

Modes and algorithms are interleaved in every round, in rotating order, so machine noise
is shared; each pass over the tokens is timed with ``perf_counter_ns`` and the median
per-verification time over rounds is reported. Every result is checked. Targets: cold
within 1.3x of bare; warm at least 20x faster than cold RS256.
Results: benchmarks/results/identity.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from verity.identity import IssuerConfig, TokenVerifier, keyset_from_jwks  # noqa: E402
from verity.identity.dev import mint, public_jwk  # noqa: E402

ISSUER = "https://idp.bench.example"
AUDIENCE = "api://bench"
ALGORITHMS = ("RS256", "ES256", "EdDSA")
MODES = ("bare", "cold", "warm")
COLD_TARGET = 1.3
WARM_TARGET = 20.0


def _private_key(alg: str) -> Any:
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def _tokens(private: Any, alg: str, count: int, now: int) -> list[str]:
    claims = {
        "email": "user@example.com",
        "groups": ["engineering", "oncall"],
        "amr": ["pwd", "mfa"],
        "scope": "openid profile email",
    }
    return [
        mint(private, alg=alg, kid=f"{alg}-key", issuer=ISSUER, audience=AUDIENCE,
             subject=f"user-{i}", ttl=3600, claims={**claims, "jti": f"{alg}-{i}"}, now=now)
        for i in range(count)
    ]  # fmt: skip


class Case:
    """One algorithm: its tokens and the three ways to verify them."""

    def __init__(self, alg: str, count: int) -> None:
        private = _private_key(alg)
        self.alg = alg
        self.public = private.public_key()
        self.tokens = _tokens(private, alg, count, int(time.time()))
        self.expected = [f"user-{i}" for i in range(count)]
        config = IssuerConfig.model_validate(
            {"issuer": ISSUER, "audiences": [AUDIENCE], "algorithms": [alg]}
        )
        keys = keyset_from_jwks({"keys": [public_jwk(private, alg, f"{alg}-key")]}, [alg])
        self.cold = TokenVerifier(config.model_copy(update={"token_cache_size": 0}), keys=keys)
        self.warm = TokenVerifier(config.model_copy(update={"token_cache_size": count}), keys=keys)
        for token in self.tokens:  # fill the cache (untimed)
            self.warm.verify(token)
        self.samples: dict[str, list[float]] = {mode: [] for mode in MODES}

    def runner(self, mode: str) -> Callable[[list[str]], list[Any]]:
        """A pass over all tokens with the least harness around each call."""
        if mode == "bare":
            public, algorithms, decode = self.public, [self.alg], jwt.decode

            def bare(tokens: list[str]) -> list[Any]:
                return [
                    decode(t, public, algorithms=algorithms, audience=AUDIENCE, issuer=ISSUER)[
                        "sub"
                    ]
                    for t in tokens
                ]

            return bare
        verify = (self.cold if mode == "cold" else self.warm).verify
        return lambda tokens: [verify(t).subject for t in tokens]

    def timed_pass(self, mode: str) -> None:
        run, tokens = self.runner(mode), self.tokens
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter_ns()
            results = run(tokens)
            elapsed = time.perf_counter_ns() - start
        finally:
            gc.enable()
        if results != self.expected:
            raise SystemExit(f"{self.alg}/{mode}: wrong verification results")
        self.samples[mode].append(elapsed / len(tokens) / 1000)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for mode, samples in self.samples.items():
            median = statistics.median(samples)
            out[mode] = {
                "median_us": round(median, 3),
                "min_us": round(min(samples), 3),
                "verifications_per_s": round(1e6 / median),
                "rounds": len(samples),
            }
        return out


def run(tokens: int, rounds: int) -> dict[str, Any]:
    cases = [Case(alg, tokens) for alg in ALGORITHMS]
    for case in cases:  # warm-up round, untimed
        for mode in MODES:
            case.timed_pass(mode)
            case.samples[mode].clear()
    plan = [(case, mode) for case in cases for mode in MODES]
    for index in range(rounds):
        shift = index % len(plan)
        for case, mode in plan[shift:] + plan[:shift]:
            case.timed_pass(mode)
    results = {case.alg: case.summary() for case in cases}
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "versions": {name: version(name) for name in ("PyJWT", "cryptography")},
        "params": {
            "tokens_per_alg": tokens,
            "rounds": rounds,
            "token_bytes": len(cases[0].tokens[0]),
        },
        "results": results,
        "summary": _ratios(results),
    }


def _ratios(results: dict[str, Any]) -> dict[str, Any]:
    cold_vs_bare = {
        alg: round(r["cold"]["median_us"] / r["bare"]["median_us"], 3) for alg, r in results.items()
    }
    cold_rs256 = results["RS256"]["cold"]["median_us"]
    warm_speedup = {
        alg: round(cold_rs256 / r["warm"]["median_us"], 1) for alg, r in results.items()
    }
    return {
        "cold_vs_bare_ratio": cold_vs_bare,
        "warm_speedup_vs_cold_rs256": warm_speedup,
        "targets": {
            "cold_within_1.3x_of_bare": all(v <= COLD_TARGET for v in cold_vs_bare.values()),
            "warm_20x_faster_than_cold_rs256": all(v >= WARM_TARGET for v in warm_speedup.values()),
        },
    }


def print_table(result: dict[str, Any]) -> None:
    params = result["params"]
    print(f"\n{params['tokens_per_alg']} tokens per algorithm, {params['rounds']} rounds, "
          f"{params['token_bytes']}-byte tokens; median per verification")  # fmt: skip
    print(f"  {'alg':<7}{'bare/s':>11}{'cold/s':>11}{'warm/s':>12}{'cold/bare':>11}{'warm x':>9}")
    summary = result["summary"]
    for alg, modes in result["results"].items():
        print(
            f"  {alg:<7}{modes['bare']['verifications_per_s']:>11,}"
            f"{modes['cold']['verifications_per_s']:>11,}{modes['warm']['verifications_per_s']:>12,}"
            f"{summary['cold_vs_bare_ratio'][alg]:>11.3f}"
            f"{summary['warm_speedup_vs_cold_rs256'][alg]:>9.1f}"
        )
    print("  (warm x = cold RS256 time / warm time)")
    print("targets:", json.dumps(summary["targets"]))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=200, help="distinct tokens per algorithm")
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "identity.json"
    )
    args = parser.parse_args(argv)
    result = run(args.tokens, args.rounds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
