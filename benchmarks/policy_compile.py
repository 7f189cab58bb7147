"""Compile time and peak memory of large RBAC policies, written the way people write them.

Two shapes, as in issue 11: one rule per role (``per-role``: the rule lists the resource
types the role may use) and one rule per (role, resource type) (``per-role-type``). About
70% of the roles grant any given type. Every rule carries the usual zero-trust conditions
(MFA, a trusted device through an access level, allowed regions, a per-role hour window,
corporate networks unless admin); the policy adds a sanctioned-region deny rule and an
owner-may-read rule.

Each size runs in a fresh interpreter (``--one``), which reports the seconds to validate
(``parse_policy``), to compile (``compile_policy``), the time of the first decisions, and
its peak RSS (``ru_maxrss``). Results go to ``benchmarks/results/policy_compile.json``.

    python benchmarks/policy_compile.py                 # every size
    python benchmarks/policy_compile.py --sizes 1000x50 35000
    python benchmarks/policy_compile.py --one 1000x50 --shape per-role   # one, no file

Targets (issue 11): 35,000 rules compile in under 2 s and 350,000 in under 20 s, with a
peak under 1 GB; rows of about those sizes carry ``target`` and ``meets_target``.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "policy_compile.json"
# 1,000 x 50 and 10,000 x 50 one rule per (role, type) are the 35,000- and 350,000-rule
# policies of issue 11 (35,073 and 349,853 rules); "35000"-style sizes are also accepted.
DEFAULT_SIZES = ("10x5", "1000x50", "10000x50")
TARGETS = {35_000: (2.0, 1024.0), 350_000: (20.0, 1024.0)}  # rules: (compile s, peak MB)
ZONES = ("Europe/Berlin", "America/New_York", "UTC", "Asia/Kolkata")
HOURS = ("07:00-19:00", "08:00-18:00", "06:00-22:00", "00:00-24:00")
ACTIONS = ("read", "write", "delete", "approve")


def rbac_policy(roles: int, types: int, shape: str, seed: int = 7) -> dict[str, Any]:
    """A policy document of ``roles`` roles over ``types`` resource types."""
    rng = random.Random(seed)
    type_names = [f"type{t}" for t in range(types)]
    rules: list[dict[str, Any]] = [
        {"name": "no-sanctioned-regions", "deny": {"regions": ["KP", "IR", "SY", "CU"]}},
    ]
    for r in range(roles):
        role = f"role{r}"
        granted = [t for t in type_names if rng.random() < 0.7] or type_names[:1]
        actions = sorted(rng.sample(ACTIONS, rng.randint(1, 3)))
        condition: dict[str, Any] = {
            "roles": [role],
            "mfa": True,
            "levels": ["trusted_device"],
            "regions": ["DE", "FR", "US", "GB"],
            "time": {"days": "mon-fri", "hours": rng.choice(HOURS), "tz": rng.choice(ZONES)},
            "any": [{"ip": ["10.0.0.0/8", "203.0.113.0/24"]}, {"roles": ["admin"]}],
        }
        if shape == "per-role":
            rules.append(
                {
                    "name": f"{role}-grants",
                    "resources": [{"types": granted, "actions": actions}],
                    "allow": condition,
                }
            )
        else:
            rules.extend(
                {
                    "name": f"{role}-{kind}",
                    "resources": [{"types": [kind], "actions": actions}],
                    "allow": condition,
                }
                for kind in granted
            )
    rules.append(
        {
            "name": "owner-may-read",
            "resources": [{"actions": ["read"]}],
            "allow": {"relations": ["resource.owner == principal.id"], "mfa": True},
        }
    )
    levels = {
        "trusted_device": {
            "device": {
                "managed": True,
                "disk_encrypted": True,
                "min_os": {"macos": "14.0", "windows": "10.0.19045"},
            }
        }
    }
    return {"version": 1, "access_levels": levels, "rules": rules}


def _size(text: str) -> tuple[int, int, str]:
    """``1000x50`` (roles x types, one rule per (role, type)) or ``35000`` (rules)."""
    if "x" in text:
        roles, types = (int(v) for v in text.split("x"))
        return roles, types, "per-role-type"
    rules = int(text)
    # One rule per (role, type) over 50 types, ~35 types per role: rules / 35 roles.
    return max(1, round(rules / 35)), 50, "per-role-type"


def run_one(size: str, shape: str | None) -> dict[str, Any]:
    """Measure one size in this process (called in a fresh interpreter)."""
    from verity.model import AccessRequest, Principal, Resource
    from verity.policy import compile_policy, parse_policy

    roles, types, default_shape = _size(size)
    document = rbac_policy(roles, types, shape or default_shape)
    t0 = time.perf_counter()
    policy = parse_policy(document)
    t1 = time.perf_counter()
    engine = compile_policy(policy)
    t2 = time.perf_counter()
    request = AccessRequest(
        principal=Principal(id="u", roles=frozenset({"role0", "role1"}), mfa=True),
        time=1763978400.0,
        action="read",
        resource=Resource("type0", "x"),
    )
    engine.decide(request)
    t3 = time.perf_counter()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak = rss * 1024 if sys.platform != "darwin" else rss
    return {
        "size": size,
        "shape": shape or default_shape,
        "roles": roles,
        "types": types,
        "rules": len(policy.rules),
        "parse_s": round(t1 - t0, 3),
        "compile_s": round(t2 - t1, 3),
        "first_decision_ms": round((t3 - t2) * 1000, 3),
        "peak_rss_mb": round(peak / 2**20, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="*", default=list(DEFAULT_SIZES))
    parser.add_argument("--shapes", nargs="*", default=["per-role-type", "per-role"])
    parser.add_argument("--one", help="measure one size in this process and print JSON")
    parser.add_argument("--shape", default=None)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one, args.shape)))
        return 0
    results = []
    for size in args.sizes:
        shapes = args.shapes if "x" in size else ["per-role-type"]
        for shape in shapes:
            out = subprocess.run(  # noqa: S603 - this script, in a fresh interpreter
                [sys.executable, __file__, "--one", size, "--shape", shape],
                capture_output=True,
                text=True,
                check=True,
            )
            row = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"{row['size']:>9} {row['shape']:<14} {row['rules']:>7} rules: "
                f"parse {row['parse_s']:.2f} s, compile {row['compile_s']:.2f} s, "
                f"peak RSS {row['peak_rss_mb']:.0f} MB"
            )
            results.append(row)
            for rules, (seconds, megabytes) in TARGETS.items():
                if abs(row["rules"] - rules) <= rules // 10:
                    row["target"] = {"compile_s": seconds, "peak_rss_mb": megabytes}
                    row["meets_target"] = (
                        row["compile_s"] < seconds and row["peak_rss_mb"] < megabytes
                    )
    document = {
        "benchmark": "policy_compile",
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
