"""Verity itself, as one of the engines in the policy benchmark.

The policy is generated as a normal policy document (one rule per grant, plus the owner
rule and the sanctioned-region deny rule) and compiled once; ``prepare`` turns a neutral
request into a ``verity.model.AccessRequest``, as an enforcement point would.
"""

from __future__ import annotations

from typing import Any

from verity.model import (
    AccessRequest,
    Device,
    Effect,
    NetworkContext,
    Principal,
    Resource,
    parse_ip,
)
from verity.policy import compile_policy, parse_policy

from . import scenario as s

ALLOW = Effect.ALLOW


def _hours(role: str) -> dict[str, Any]:
    window = s.ROLE_HOURS[role]
    if window is None:
        return {}
    zone, start, end = window
    return {"time": {"days": "mon-fri", "hours": f"{start:02d}:00-{end:02d}:00", "tz": zone}}


def policy_document(n_rules: int) -> dict[str, Any]:
    """The benchmark policy at size ``n_rules`` as a Verity policy document."""
    device = {"managed": True, "disk_encrypted": True, "min_os": dict(s.MIN_OS_VERSION)}
    rules: list[dict[str, Any]] = [
        {"name": "no-sanctioned-regions", "deny": {"regions": list(s.SANCTIONED_REGIONS)}},
    ]
    for i, rtype, role, actions in s.grant_rules(n_rules):
        allow: dict[str, Any] = {
            "roles": [role],
            "mfa": True,
            "levels": ["trusted_device"],
            "regions": list(s.ALLOWED_REGIONS),
            **_hours(role),
        }
        if s.ROLE_NEEDS_CORP_IP[role]:
            allow["ip"] = list(s.CORPORATE_CIDRS)
        rules.append(
            {
                "name": f"grant-{i}",
                "resources": [{"type": rtype, "actions": list(actions)}],
                "allow": allow,
            }
        )
    rules.append(
        {
            "name": "owner-may-read",
            "resources": [{"actions": ["read"]}],
            "allow": {
                "relations": ["resource.owner == principal.id"],
                "device": {"managed": True, "disk_encrypted": True},
            },
        }
    )
    return {"access_levels": {"trusted_device": {"device": device}}, "rules": rules}


def to_request(req: dict[str, Any]) -> AccessRequest:
    """Neutral request dict -> AccessRequest (what a PEP would have gathered)."""
    p, d, n, r = req["principal"], req["device"], req["network"], req["resource"]
    return AccessRequest(
        principal=Principal(id=p["id"], roles=frozenset(p["roles"]), mfa=p["mfa"]),
        time=req["time"],
        action=req["action"],
        resource=Resource(type=r["type"], id=r["id"], attributes={"owner": r["owner"]}),
        device=Device(
            id="dev",
            managed=d["managed"],
            disk_encrypted=d["disk_encrypted"],
            os_type=d["os"],
            os_version=d["os_version"],
        ),
        network=NetworkContext(ip=parse_ip(n["ip"]), region=n["region"]),
    )


class VerityPeer:
    name = "verity"

    def __init__(self, n_rules: int) -> None:
        self.engine = compile_policy(parse_policy(policy_document(n_rules), source="benchmark"))

    def prepare(self, req: dict[str, Any]) -> AccessRequest:
        return to_request(req)

    def decide(self, prepared: AccessRequest) -> bool:
        return self.engine.decide(prepared).effect is ALLOW
