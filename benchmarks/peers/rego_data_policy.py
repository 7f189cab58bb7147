"""The benchmark policy in data-driven Rego: a handful of rules over a permission table
held as DATA (shared by the ``rego-regorus-data`` and ``rego-opa-data`` peers).

This is how Rego users write RBAC (OPA's own RBAC examples do the same): the role ->
resource type -> actions table and the per-role conditions live in the data document,
and a few rules look them up, so the policy text does not grow with the table::

    permitted if {
        some role in input.principal.roles
        input.action in data.rbac.grants[role][input.resource.type]
        ...
        role_conditions_hold(data.rbac.roles[role])
    }

Data (``rbac_data(size)``, added under ``data.rbac`` with the engine's data API, not
as Rego text):

- ``grants[role][type]``: the actions ``role`` grants on ``type``, for every granted
  (role, type) pair of the size (``scenario.grant_rules``). A role or type missing from
  the table makes the lookup undefined, so the body fails: no grant.
- ``roles[role]``: ``{"hours": [zone, start, end] | null, "corporate_network": bool}``
  (``scenario.ROLE_HOURS`` and ``ROLE_NEEDS_CORP_IP``): the role's hour window (local
  time, Mon-Fri, start inclusive, end exclusive) and whether it needs a corporate IP
  (admins do not).

The common conditions (MFA, trusted device with disk encryption and a minimum OS version,
allowed regions), the hour window (``time.weekday``/``time.clock`` in the role's zone),
the corporate-network test, the owner-may-read rule and the sanctioned-region deny rule
(deny overrides) are those of the per-pair form (``rego_policy.py``), with two cheaper
spellings a Rego author would choose for a single rule: the common conditions come
before the table lookup (a request that fails them never reaches it), and
``version_at_least`` pads the version with ``array.concat``/``array.slice`` instead of
a per-component comprehension (the same comparison; about 13 us less per decision in
regorus at 10x5). Input: the neutral request dict plus ``time_ns``, as there.
"""

from __future__ import annotations

from typing import Any

from benchmarks.peers.rego_policy import common_rules
from benchmarks.peers.scenario import (
    ALLOWED_REGIONS,
    CORPORATE_CIDRS,
    MIN_OS_VERSION,
    ROLE_HOURS,
    ROLE_NEEDS_CORP_IP,
    ROLES,
    Size,
    grant_rules,
    parse_version,
)

PACKAGE = "verity.authz"
ALLOW_REF = "data.verity.authz.allow"
DATA_ROOT = "rbac"
MODULE_NAME = "verity_authz_data.rego"


def _set(items: tuple[str, ...]) -> str:
    return "{" + ", ".join(f'"{x}"' for x in items) + "}"


def rego_module() -> str:
    """The policy: the same for every size (the table is data)."""
    min_versions = ", ".join(f'"{os}": {parse_version(v)}' for os, v in MIN_OS_VERSION.items())
    longest = max(len(parse_version(v) or []) for v in MIN_OS_VERSION.values())
    zeros = [0] * longest
    return (
        common_rules()
        + f"""
# Grant rule: the common conditions, then one lookup in the permission table for each
# of the principal's roles, then that role's conditions.
permitted if {{
	mfa
	region_ok
	device_ok
	some role in input.principal.roles
	input.action in data.{DATA_ROOT}.grants[role][input.resource.type]
	conditions := data.{DATA_ROOT}.roles[role]
	hours_ok(conditions.hours)
	network_ok(conditions.corporate_network)
}}

hours_ok(hours) if hours == null

hours_ok(hours) if {{
	[zone, start, end] := hours
	in_hours(zone, start, end)
}}

network_ok(required) if required == false

network_ok(required) if {{
	required == true
	corporate_ip
}}

mfa if input.principal.mfa == true

region_ok if input.network.region in {_set(ALLOWED_REGIONS)}

min_os_version := {{{min_versions}}}

device_ok if {{
	input.device.managed == true
	input.device.disk_encrypted == true
	minimum := min_os_version[input.device.os]
	version_at_least(input.device.os_version, minimum)
}}

# Missing components count as 0: pad the version with zeros to the minimum's length
# (array.slice clamps, so nothing is added when the version is as long or longer; a
# longer version whose prefix equals the minimum compares greater, as it should).
version_at_least(version, minimum) if {{
	have := [to_number(p) | some p in split(version, ".")]
	array.concat(have, array.slice({zeros}, 0, count(minimum) - count(have))) >= minimum
}}

weekdays := {{"Monday", "Tuesday", "Wednesday", "Thursday", "Friday"}}

in_hours(zone, start, end) if {{
	time.weekday([input.time_ns, zone]) in weekdays
	[hour, _, _] := time.clock([input.time_ns, zone])
	start <= hour
	hour < end
}}

corporate_ip if {{
	some cidr in {_set(CORPORATE_CIDRS)}
	net.cidr_contains(cidr, input.network.ip)
}}
"""
    )


def rbac_data(size: Size) -> dict[str, Any]:
    """The permission table and per-role conditions, as a JSON-compatible document."""
    grants: dict[str, dict[str, list[str]]] = {}
    for _, rtype, role, actions in grant_rules(size):
        grants.setdefault(role, {})[rtype] = list(actions)
    roles = {
        role: {
            "hours": list(hours) if (hours := ROLE_HOURS[role]) is not None else None,
            "corporate_network": ROLE_NEEDS_CORP_IP[role],
        }
        for role in ROLES[: size.roles]
    }
    return {"grants": grants, "roles": roles}
