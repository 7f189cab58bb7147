"""Cedar peer: the policy as N+2 Cedar policies, evaluated by ``cedarpy`` (cedar-policy 4.x).

Policy set (generated per N, parsed ONCE into a ``cedarpy.PolicySet`` handle):

* grant rule ``i``: ``permit (principal in Role::"<role>", action in [Action::"read", ...],
  resource in App::"app<j>") when { ...all of the rule's conditions... };`` Roles and
  resource types are modelled the Cedar way, as entity hierarchy (``User`` parents are
  ``Role`` entities, ``Resource`` parents are ``App`` entities), so the scope does the
  role/type/action match and the ``when`` clause holds the ABAC conditions.
* owner rule: ``permit (principal, action == Action::"read", resource) when
  { resource.owner == principal && ... };``
* deny rule: ``forbid (...) when { ["KP", "IR", "SY", "CU"].contains(context.network.region) };``
  (Cedar is deny-overrides and default-deny, exactly as the spec wants).

API caveat: ``cedarpy.is_authorized(request, policies, entities)`` accepts the policies
either as Cedar text, which it re-parses on EVERY call (cost grows linearly with N, see
``check_peers``'s "re-parse" line), or as a pre-parsed ``PolicySet`` handle
(``PolicySet.from_str``, present in cedarpy 4.12.2), which is what this peer uses.

prepare (timed, the engine's input conversion) precomputes what Cedar cannot compute
itself, nothing else:

* local time: Cedar has no time-zone database and no division/modulo, so for each zone
  used by a rule (Europe/Berlin, America/New_York) the local ISO weekday (Mon=0) and
  local hour are computed with ``zoneinfo`` and passed as ``context.local.<zone>``.
  The hour-window and weekday comparisons themselves run in Cedar.
* OS version: Cedar cannot split strings or parse numbers, so ``os_version`` is passed
  as a record of four longs ``{major, minor, patch, build}`` (missing components = 0;
  a non-numeric version becomes ``major = -1``, which fails every minimum). The
  component-by-component comparison against the minimums runs in Cedar.
* the client IP is passed as a Cedar ``ipaddr`` extension value
  (``{"__extn": {"fn": "ip", "arg": ...}}``); range checks use Cedar's ``isInRange``.

The request's entities (the principal with its ``Role`` parents, the resource with its
``App`` parent and ``owner``) and the context are serialised to JSON text in prepare;
Cedar parses both inside the timed ``decide``, so the engine's own input handling is
measured, but Python's ``json.dumps`` is not.
"""

from __future__ import annotations

import json
from typing import Any

import cedarpy

from benchmarks.peers.scenario import (
    ALLOWED_REGIONS,
    CORPORATE_CIDRS,
    MIN_OS_VERSION,
    ROLE_HOURS,
    ROLE_NEEDS_CORP_IP,
    SANCTIONED_REGIONS,
    Size,
    grant_rules,
    local_time,
    parse_version,
)

_VERSION_FIELDS = ("major", "minor", "patch", "build")
_ZONE_KEYS = {"Europe/Berlin": "berlin", "America/New_York": "new_york"}


def _str_list(items: tuple[str, ...]) -> str:
    return "[" + ", ".join(f'"{x}"' for x in items) + "]"


def _version_ge(fields: tuple[str, ...], minimum: list[int]) -> str:
    """Cedar expression: context.device.os_version >= minimum, lexicographically."""
    field, rest = fields[0], fields[1:]
    value = minimum[0] if minimum else 0
    ref = f"context.device.os_version.{field}"
    if not rest:
        return f"{ref} >= {value}"
    return f"({ref} > {value} || ({ref} == {value} && {_version_ge(rest, minimum[1:])}))"


def _os_condition() -> str:
    alternatives = []
    for os_name, minimum in MIN_OS_VERSION.items():
        parsed = parse_version(minimum)
        assert parsed is not None
        alternatives.append(
            f'(context.device.os == "{os_name}" && {_version_ge(_VERSION_FIELDS, parsed)})'
        )
    return "(" + " || ".join(alternatives) + ")"


def _ip_condition() -> str:
    checks = [f'context.network.ip.isInRange(ip("{c}"))' for c in CORPORATE_CIDRS]
    return "(" + " || ".join(checks) + ")"


def _grant_policy(i: int, rtype: str, role: str, actions: tuple[str, ...]) -> str:
    conditions = [
        "context.mfa",
        "context.device.managed",
        "context.device.disk_encrypted",
        _OS_CONDITION,
        f"{_str_list(ALLOWED_REGIONS)}.contains(context.network.region)",
    ]
    hours = ROLE_HOURS[role]
    if hours is not None:
        zone, start, end = hours
        local = f"context.local.{_ZONE_KEYS[zone]}"
        conditions.append(f"{local}.weekday < 5 && {local}.hour >= {start} && {local}.hour < {end}")
    if ROLE_NEEDS_CORP_IP[role]:
        conditions.append(_IP_CONDITION)
    action_list = ", ".join(f'Action::"{a}"' for a in actions)
    return (
        f'@id("grant-{i}")\n'
        f'permit (principal in Role::"{role}", action in [{action_list}], '
        f'resource in App::"{rtype}")\n'
        "when {\n  " + " &&\n  ".join(conditions) + "\n};\n"
    )


_OS_CONDITION = _os_condition()
_IP_CONDITION = _ip_condition()

_FIXED_POLICIES = f"""@id("owner")
permit (principal, action == Action::"read", resource)
when {{
  resource.owner == principal &&
  context.device.managed &&
  context.device.disk_encrypted
}};

@id("deny-sanctioned")
forbid (principal, action, resource)
when {{ {_str_list(SANCTIONED_REGIONS)}.contains(context.network.region) }};
"""


def cedar_policies(size: Size) -> str:
    parts = [_FIXED_POLICIES]
    parts.extend(_grant_policy(*rule) for rule in grant_rules(size))
    return "\n".join(parts)


def _version_record(version: str) -> dict[str, int]:
    parsed = parse_version(version)
    if parsed is None:
        parsed = [-1]
    if len(parsed) > len(_VERSION_FIELDS):
        raise ValueError(f"version with more than {len(_VERSION_FIELDS)} components: {version}")
    parsed += [0] * (len(_VERSION_FIELDS) - len(parsed))
    return dict(zip(_VERSION_FIELDS, parsed, strict=True))


def _entity(kind: str, uid: str) -> dict[str, str]:
    return {"type": kind, "id": uid}


class CedarPeer:
    name = "cedar"

    def __init__(self, size: Size) -> None:
        self.size = size
        self.policy_text = cedar_policies(size)
        self.policies = cedarpy.PolicySet.from_str(self.policy_text)

    def prepare(self, req: dict[str, Any]) -> tuple[dict[str, Any], str]:
        principal = req["principal"]
        resource = req["resource"]
        device = req["device"]
        user = _entity("User", principal["id"])
        res = _entity("Resource", resource["id"])
        entities = [
            {
                "uid": user,
                "attrs": {},
                "parents": [_entity("Role", r) for r in principal["roles"]],
            },
            {
                "uid": res,
                "attrs": {"owner": {"__entity": _entity("User", resource["owner"])}},
                "parents": [_entity("App", resource["type"])],
            },
        ]
        local = {}
        for zone, key in _ZONE_KEYS.items():
            now = local_time(req["time"], zone)
            local[key] = {"weekday": now.weekday(), "hour": now.hour}
        context = {
            "mfa": principal["mfa"],
            "device": {
                "managed": device["managed"],
                "disk_encrypted": device["disk_encrypted"],
                "os": device["os"],
                "os_version": _version_record(device["os_version"]),
            },
            "network": {
                "ip": {"__extn": {"fn": "ip", "arg": req["network"]["ip"]}},
                "region": req["network"]["region"],
            },
            "local": local,
        }
        request = {
            "principal": user,
            "action": _entity("Action", req["action"]),
            "resource": res,
            "context": json.dumps(context),
        }
        return request, json.dumps(entities)

    def decide(self, prepared: tuple[dict[str, Any], str]) -> bool:
        request, entities = prepared
        return cedarpy.is_authorized(request, self.policies, entities).allowed

    def decide_reparsing(self, prepared: tuple[dict[str, Any], str]) -> bool:
        """Same decision, passing the policy TEXT: cedarpy re-parses it on every call."""
        request, entities = prepared
        return cedarpy.is_authorized(request, self.policy_text, entities).allowed
