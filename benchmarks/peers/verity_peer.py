"""Verity itself, as engines of the policy benchmark, with the policy written three ways.

- ``table``: one permission table (``role -> type -> actions`` rows, the shared
  conditions in ``allow``, each role's hour window and corporate-IP condition under
  ``roles``);
- ``role-rules``: one rule per role, naming every type the role grants;
- ``pair-rules``: one rule per (role, resource type), as the peers are written.

Each adds the sanctioned-region deny rule (first) and the owner-may-read rule (last).
``prepare`` builds the ``AccessRequest`` from the neutral request dict as an application
holding JSON would: re-keyed into Verity's request shape and validated by
``AccessRequest.from_dict``.
"""

from __future__ import annotations

from typing import Any

from verity.model import AccessRequest, Effect
from verity.policy import compile_policy, parse_policy

from . import scenario as s

ALLOW = Effect.ALLOW
_from_dict = AccessRequest.from_dict


def _hours(role: str) -> dict[str, Any]:
    window = s.ROLE_HOURS[role]
    if window is None:
        return {}
    zone, start, end = window
    return {"time": {"days": "mon-fri", "hours": f"{start:02d}:00-{end:02d}:00", "tz": zone}}


def _role_conditions(role: str) -> dict[str, Any]:
    extra = _hours(role)
    if s.ROLE_NEEDS_CORP_IP[role]:
        extra["ip"] = list(s.CORPORATE_CIDRS)
    return extra


_SHARED: dict[str, Any] = {
    "mfa": True,
    "levels": ["trusted_device"],
    "regions": list(s.ALLOWED_REGIONS),
}


def _document(grant_rules: list[dict[str, Any]]) -> dict[str, Any]:
    device = {"managed": True, "disk_encrypted": True, "min_os": dict(s.MIN_OS_VERSION)}
    rules: list[dict[str, Any]] = [
        {"name": "no-sanctioned-regions", "deny": {"regions": list(s.SANCTIONED_REGIONS)}},
        *grant_rules,
        {
            "name": "owner-may-read",
            "resources": [{"actions": ["read"]}],
            "allow": {
                "relations": ["resource.owner == principal.id"],
                "device": {"managed": True, "disk_encrypted": True},
            },
        },
    ]
    return {"access_levels": {"trusted_device": {"device": device}}, "rules": rules}


def pair_rules_document(size: s.Size) -> dict[str, Any]:
    """One rule per granted (role, resource type)."""
    return _document(
        [
            {
                "name": f"grant-{i}",
                "resources": [{"type": rtype, "actions": list(actions)}],
                "allow": {"roles": [role], **_SHARED, **_role_conditions(role)},
            }
            for i, rtype, role, actions in s.grant_rules(size)
        ]
    )


def role_rules_document(size: s.Size) -> dict[str, Any]:
    """One rule per role, naming the types it grants."""
    rules = []
    for k in range(size.roles):
        role = s.ROLES[k]
        types = [f"app{t}" for t in s.granted_types(size, k)]
        if not types:
            continue
        rules.append(
            {
                "name": f"role-{role}",
                "resources": [{"types": types, "actions": list(s.ROLE_ACTIONS[role])}],
                "allow": {"roles": [role], **_SHARED, **_role_conditions(role)},
            }
        )
    return _document(rules)


def table_document(size: s.Size) -> dict[str, Any]:
    """One permission table: a row per granted (role, type), conditions per role."""
    rows = [
        {"role": role, "type": rtype, "actions": list(actions)}
        for _, rtype, role, actions in s.grant_rules(size)
    ]
    roles = {s.ROLES[k]: _role_conditions(s.ROLES[k]) for k in range(size.roles)}
    table = {
        "rows": rows,
        "allow": dict(_SHARED),
        "roles": {role: block for role, block in roles.items() if block},
    }
    return _document([{"name": "grants", "table": table}])


def verity_request(req: dict[str, Any]) -> dict[str, Any]:
    """The neutral dict in Verity's request shape (the keys of a request file)."""
    p, d, r = req["principal"], req["device"], req["resource"]
    return {
        "principal": p,
        "time": req["time"],
        "action": req["action"],
        "resource": {"type": r["type"], "id": r["id"], "attributes": {"owner": r["owner"]}},
        "device": {
            "id": "dev",
            "managed": d["managed"],
            "disk_encrypted": d["disk_encrypted"],
            "os_type": d["os"],
            "os_version": d["os_version"],
        },
        "network": req["network"],
    }


class _VerityPeer:
    name = "verity"
    form = ""

    def __init__(self, size: s.Size) -> None:
        document = _FORMS[self.form](size)
        self.engine = compile_policy(parse_policy(document, source=f"benchmark {self.form}"))

    def prepare(self, req: dict[str, Any]) -> AccessRequest:
        return _from_dict(verity_request(req))

    def decide(self, prepared: AccessRequest) -> bool:
        return self.engine.decide(prepared).effect is ALLOW


class VerityTablePeer(_VerityPeer):
    name = "verity-table"
    form = "table"


class VerityRoleRulesPeer(_VerityPeer):
    name = "verity-role-rules"
    form = "role-rules"


class VerityPairRulesPeer(_VerityPeer):
    name = "verity-pair-rules"
    form = "pair-rules"


_FORMS = {
    "table": table_document,
    "role-rules": role_rules_document,
    "pair-rules": pair_rules_document,
}


def rule_count(form: str, size: s.Size) -> int:
    """How many rules (rows, for the table) the form has at ``size``."""
    grants = s.count_grants(size)
    if form == "role-rules":
        return sum(1 for k in range(size.roles) if s.granted_types(size, k)) + 2
    return grants + 2
