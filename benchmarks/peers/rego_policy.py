"""The benchmark policy in Rego, generated for N grant rules (shared by OPA and regorus).

Layout: every grant rule ``i`` is its own ``permitted`` rule body whose FIRST expression
is an equality of an input ref with a constant (``input.resource.type == "app17"``),
followed by the role, the action and the rule's conditions. That is the form OPA's
rule indexer is built for: OPA only evaluates the bodies whose constant matches, so
its cost stays flat as N grows. regorus has no rule index and walks every body, but
the leading equality makes each non-matching body fail on its first expression.

Measured alternatives (see the peers' report): ref-head rules keyed by type and role
(``grant.app17.engineer := {...} if {...}`` looked up as ``grant[input.resource.type]``)
index equally well in OPA but regorus materialises the whole ``grant`` document
(about 4x slower than this layout); and the action test must be written as a set
lookup ``{"read", "write"}[input.action]``: ``input.action in {...}`` or
``input.action in [...]`` in a body defeats OPA's indexer (about 50x slower at N=10000).

Each grant body carries its own conditions via shared helper rules/functions
(``mfa``, ``device_ok``, ``region_ok``, ``in_hours``, ``corporate_ip``); helper rules are
cached per evaluation by both engines. Owner and deny rules are plain rules and
``allow`` is deny-overrides.

The grant rules are split into modules of ``RULES_PER_MODULE`` rules (regorus refuses a
single policy file over 1 MiB or 20000 lines by default); all modules share the package.

Input: the neutral request dict plus ``time_ns`` (the same instant as integer
nanoseconds, Rego's native time unit; ``time.clock``/``time.weekday`` take it with an
IANA zone, so local time is computed by the engine itself).
"""

from __future__ import annotations

from benchmarks.peers.scenario import (
    ALLOWED_REGIONS,
    CORPORATE_CIDRS,
    MIN_OS_VERSION,
    ROLE_HOURS,
    ROLE_NEEDS_CORP_IP,
    SANCTIONED_REGIONS,
    Size,
    grant_rules,
    parse_version,
)

PACKAGE = "verity.authz"
ALLOW_REF = "data.verity.authz.allow"
RULES_PER_MODULE = 1000
_MODULE_PREAMBLE = f"package {PACKAGE}\n\nimport rego.v1\n\n"


def _set(items: tuple[str, ...]) -> str:
    return "{" + ", ".join(f'"{x}"' for x in items) + "}"


def common_rules() -> str:
    """The package, ``allow`` (deny-overrides), the sanctioned-region deny and the
    owner rule: the same in every Rego form of the policy."""
    return f"""package {PACKAGE}

import rego.v1

default allow := false

allow if {{
	not deny
	permitted
}}

deny if input.network.region in {_set(SANCTIONED_REGIONS)}

# Owner rule.
permitted if {{
	input.action == "read"
	input.resource.owner == input.principal.id
	input.device.managed == true
	input.device.disk_encrypted == true
}}
"""


def _header() -> str:
    min_versions = ", ".join(f'"{os}": {parse_version(v)}' for os, v in MIN_OS_VERSION.items())
    return (
        common_rules()
        + f"""
mfa if input.principal.mfa == true

region_ok if input.network.region in {_set(ALLOWED_REGIONS)}

min_os_version := {{{min_versions}}}

device_ok if {{
	input.device.managed == true
	input.device.disk_encrypted == true
	minimum := min_os_version[input.device.os]
	version_at_least(input.device.os_version, minimum)
}}

version_at_least(version, minimum) if {{
	have := [to_number(p) | some p in split(version, ".")]
	width := max([count(have), count(minimum)])
	padded(have, width) >= padded(minimum, width)
}}

padded(arr, width) := [component(arr, i) | some i in numbers.range(0, width - 1)]

component(arr, i) := x if x := arr[i]
else := 0

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


def _grant_rule(i: int, rtype: str, role: str, actions: tuple[str, ...]) -> str:
    body = [
        f'input.resource.type == "{rtype}"',
        f'"{role}" in input.principal.roles',
        f"{_set(actions)}[input.action]",
        "mfa",
        "device_ok",
        "region_ok",
    ]
    hours = ROLE_HOURS[role]
    if hours is not None:
        zone, start, end = hours
        body.append(f'in_hours("{zone}", {start}, {end})')
    if ROLE_NEEDS_CORP_IP[role]:
        body.append("corporate_ip")
    lines = "\n".join(f"\t{b}" for b in body)
    return f"# grant rule {i}\npermitted if {{\n{lines}\n}}\n"


def rego_modules(size: Size) -> list[tuple[str, str]]:
    """``(file name, Rego source)`` pairs: the base module, then the grant rules in chunks."""
    modules = [("verity_authz.rego", _header())]
    rules = [_grant_rule(*rule) for rule in grant_rules(size)]
    for chunk, first in enumerate(range(0, len(rules), RULES_PER_MODULE)):
        text = "\n".join(rules[first : first + RULES_PER_MODULE])
        modules.append((f"verity_grants_{chunk}.rego", _MODULE_PREAMBLE + text))
    return modules
