"""Shared benchmark scenario: vocabulary, request generator and reference oracle.

A size is ``roles x resource types`` (``Size(1000, 50)``). Role ``k`` is named
``<profile>-<k>`` and behaves like its profile (``PROFILES[k % 4]``: admin, engineer,
contractor, finance): the profile gives its actions, whether it needs a corporate IP
(admins do not) and its time zone; its hour window is the profile's, shifted by -1, 0
or +1 hour with ``k`` (per-role windows). Role ``k`` grants its actions on resource type
``app<t>`` for about 70% of the pairs (``grants(k, t)``, a fixed hash), so a request's
type is granted by most roles, as in real RBAC. On top: an owner-may-read rule and a
sanctioned-region deny rule (deny overrides allow; no match means deny).

``grant_rules(size)`` yields one ``(i, resource_type, role, actions)`` per granted pair
(the one-rule-per-(role, type) form every peer uses); ``generate_requests`` yields
neutral request dicts (the format every peer's ``prepare`` consumes, as JSON would give
it) and ``reference_decide`` is the plain-Python oracle.
"""

from __future__ import annotations

import ipaddress
import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo


class Size(NamedTuple):
    roles: int
    types: int

    def __str__(self) -> str:
        return f"{self.roles}x{self.types}"

    @classmethod
    def parse(cls, text: str) -> Size:
        roles, _, types = text.lower().partition("x")
        return cls(int(roles), int(types))


PROFILES: tuple[str, ...] = ("admin", "engineer", "contractor", "finance")
ACTIONS: tuple[str, ...] = ("read", "write", "delete", "approve")
PROFILE_ACTIONS: dict[str, tuple[str, ...]] = {
    "admin": ("read", "write", "delete"),
    "engineer": ("read", "write"),
    "contractor": ("read",),
    "finance": ("read", "approve"),
}
# profile -> (IANA zone, start hour inclusive, end hour exclusive), Mon-Fri; None = any time.
PROFILE_HOURS: dict[str, tuple[str, int, int] | None] = {
    "admin": None,
    "engineer": ("Europe/Berlin", 7, 20),
    "contractor": ("Europe/Berlin", 8, 18),
    "finance": ("America/New_York", 8, 18),
}
MAX_ROLES = 10_000
GRANT_PERCENT = 70


def role_name(k: int) -> str:
    return f"{PROFILES[k % 4]}-{k}"


def _role_hours(k: int) -> tuple[str, int, int] | None:
    base = PROFILE_HOURS[PROFILES[k % 4]]
    if base is None:
        return None
    shift = (k // 4) % 3 - 1
    zone, start, end = base
    return zone, start + shift, end + shift


ROLES: tuple[str, ...] = tuple(role_name(k) for k in range(MAX_ROLES))
ROLE_INDEX: dict[str, int] = {role: k for k, role in enumerate(ROLES)}
ROLE_ACTIONS: dict[str, tuple[str, ...]] = {
    r: PROFILE_ACTIONS[PROFILES[k % 4]] for k, r in enumerate(ROLES)
}
ROLE_HOURS: dict[str, tuple[str, int, int] | None] = {
    r: _role_hours(k) for k, r in enumerate(ROLES)
}
# Roles whose grants carry the corporate-IP condition (admin roles do not).
ROLE_NEEDS_CORP_IP: dict[str, bool] = {r: not r.startswith("admin-") for r in ROLES}
MIN_OS_VERSION: dict[str, str] = {"macos": "14.0", "windows": "10.0.19045", "linux": "6.1"}
ALLOWED_REGIONS: tuple[str, ...] = ("DE", "FR", "NL", "US")
SANCTIONED_REGIONS: tuple[str, ...] = ("KP", "IR", "SY", "CU")
CORPORATE_CIDRS: tuple[str, ...] = (
    "10.0.0.0/8",
    "192.168.0.0/16",
    "203.0.113.0/24",
    "2001:db8::/32",
)
TIME_ZONES: tuple[str, ...] = ("Europe/Berlin", "America/New_York")

_ZONES = {name: ZoneInfo(name) for name in TIME_ZONES}
_CORP_NETS = tuple(ipaddress.ip_network(c) for c in CORPORATE_CIDRS)


def grants(k: int, t: int) -> bool:
    """Does role ``k`` grant its actions on type ``app<t>``? (about 70% of pairs; fixed:
    the hash of a tuple of ints does not depend on PYTHONHASHSEED)."""
    return hash((k, t, 20261207)) % 100 < GRANT_PERCENT


def granted_types(size: Size, k: int) -> list[int]:
    return [t for t in range(size.types) if grants(k, t)]


def grant_rules(size: Size) -> Iterator[tuple[int, str, str, tuple[str, ...]]]:
    """Yield ``(i, resource_type, role, actions)`` for every granted (role, type) pair."""
    i = 0
    for k in range(size.roles):
        role = ROLES[k]
        for t in granted_types(size, k):
            yield i, f"app{t}", role, ROLE_ACTIONS[role]
            i += 1


def count_grants(size: Size) -> int:
    return sum(1 for _ in grant_rules(size))


def parse_version(version: str) -> list[int] | None:
    """Dotted numeric version -> list of ints; None if any component is not a number."""
    parts = version.split(".")
    if not all(p.isdigit() for p in parts):
        return None
    return [int(p) for p in parts]


def version_at_least(version: str, minimum: str) -> bool:
    """Component-wise comparison, missing components count as 0."""
    have = parse_version(version)
    need = parse_version(minimum)
    if have is None or need is None:
        return False
    width = max(len(have), len(need))
    have += [0] * (width - len(have))
    need += [0] * (width - len(need))
    return have >= need


def time_ns(epoch_seconds: float) -> int:
    """Exact integer nanoseconds for the generator's timestamps (multiples of 1/4 s)."""
    whole = math.floor(epoch_seconds)
    return whole * 1_000_000_000 + round((epoch_seconds - whole) * 1_000_000_000)


def local_time(epoch_seconds: float, zone: str) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, tz=_ZONES[zone])


def in_office_hours(epoch_seconds: float, zone: str, start: int, end: int) -> bool:
    local = local_time(epoch_seconds, zone)
    return local.weekday() < 5 and start <= local.hour < end


def is_corporate_ip(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    return any(addr in net for net in _CORP_NETS)


def reference_decide(req: dict[str, Any], size: Size) -> bool:
    """The oracle: a direct reading of the spec. True means allow."""
    principal = req["principal"]
    device = req["device"]
    network = req["network"]
    resource = req["resource"]
    action = req["action"]

    # Deny rule (overrides everything).
    if network["region"] in SANCTIONED_REGIONS:
        return False

    # Owner rule.
    if (
        action == "read"
        and resource["owner"] == principal["id"]
        and device["managed"] is True
        and device["disk_encrypted"] is True
    ):
        return True

    # Grant rules.
    rtype: str = resource["type"]
    if not rtype.startswith("app") or not rtype[3:].isdigit():
        return False
    t = int(rtype[3:])
    if t >= size.types:
        return False
    for role in principal["roles"]:
        k = ROLE_INDEX.get(role)
        if k is None or k >= size.roles or not grants(k, t):
            continue
        if _grant_rule_holds(role, req):
            return True
    return False


def _grant_rule_holds(role: str, req: dict[str, Any]) -> bool:
    device = req["device"]
    network = req["network"]
    if req["action"] not in ROLE_ACTIONS[role]:
        return False
    if req["principal"]["mfa"] is not True:
        return False
    if device["managed"] is not True or device["disk_encrypted"] is not True:
        return False
    minimum = MIN_OS_VERSION.get(device["os"])
    if minimum is None or not version_at_least(device["os_version"], minimum):
        return False
    if network["region"] not in ALLOWED_REGIONS:
        return False
    hours = ROLE_HOURS[role]
    if hours is not None and not in_office_hours(req["time"], *hours):
        return False
    return not (ROLE_NEEDS_CORP_IP[role] and not is_corporate_ip(network["ip"]))


# --------------------------------------------------------------------------- generator

# Mondays (UTC dates) of the weeks timestamps are drawn from; several straddle a DST
# change in Berlin (2025-03-30, 2025-10-26) or New York (2025-03-09, 2025-11-02).
_WEEK_MONDAYS: tuple[tuple[int, int, int], ...] = (
    (2025, 3, 10),
    (2025, 3, 24),
    (2025, 10, 27),
    (2025, 11, 24),
    (2026, 6, 15),
)
_WEEK_SECONDS = 7 * 86400

_GOOD_VERSIONS: dict[str, tuple[str, ...]] = {
    "macos": ("14.0", "14", "14.0.0", "14.2.1", "14.6", "15.1", "15.3.2", "26.0"),
    "windows": ("10.0.19045", "10.0.19045.3803", "10.0.22631", "10.1", "11.0.22631.4460", "11"),
    "linux": ("6.1", "6.1.0", "6.1.112", "6.6.58", "6.10", "6.12.1", "7.0"),
}
_BAD_VERSIONS: dict[str, tuple[str, ...]] = {
    "macos": ("13.6.9", "13", "13.99.99", "12.7.6"),
    "windows": ("10.0.19044", "10.0.19044.9999", "10.0.17763", "10", "6.3.9600"),
    "linux": ("6.0.9", "6", "6.0", "5.15.0", "4.19.322"),
}
_OTHER_OS: tuple[tuple[str, str], ...] = (("other", "14.0"), ("chromeos", "120.0"), ("ios", "18.1"))
_OTHER_REGIONS: tuple[str, ...] = ("GB", "JP", "BR", "CH", "IN")


def _corporate_ip(rng: random.Random) -> str:
    kind = rng.randrange(5)
    if kind == 0:
        return f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    if kind == 1:
        return f"192.168.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    if kind == 2:
        return f"203.0.113.{rng.randrange(256)}"
    if kind == 3:
        return f"2001:db8:{rng.randrange(65536):x}::{rng.randrange(1, 65536):x}"
    return f"2001:db8::{rng.randrange(1, 65536):x}"


def _external_ip(rng: random.Random) -> str:
    kind = rng.randrange(6)
    if kind == 0:
        return f"172.16.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    if kind == 1:
        return f"203.0.114.{rng.randrange(256)}"
    if kind == 2:
        return f"11.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    if kind == 3:
        return f"2001:db9::{rng.randrange(1, 65536):x}"
    if kind == 4:
        return f"2a00:1450:4001:{rng.randrange(65536):x}::{rng.randrange(1, 65536):x}"
    return rng.choice(("8.8.8.8", "1.1.1.1", "192.169.0.1", "9.255.255.255"))


def _week_start(rng: random.Random) -> float:
    y, m, d = rng.choice(_WEEK_MONDAYS)
    return datetime(y, m, d, tzinfo=UTC).timestamp()


def _any_time(rng: random.Random) -> float:
    return _week_start(rng) + rng.randrange(_WEEK_SECONDS * 4) / 4


def _office_time(rng: random.Random, zone: str, start: int, end: int) -> float:
    """A timestamp inside the role's local office hours (or just outside, at an edge)."""
    y, m, d = rng.choice(_WEEK_MONDAYS)
    day = datetime(y, m, d) + timedelta(days=rng.randrange(5))
    edge = rng.random()
    if edge < 0.06:  # exactly at the start: inside (inclusive)
        local = day.replace(hour=start)
        offset = 0.0
    elif edge < 0.10:  # exactly at the end: outside (exclusive)
        local = day.replace(hour=end)
        offset = 0.0
    elif edge < 0.13:  # a quarter second before the start: outside
        local = day.replace(hour=start)
        offset = -0.25
    else:
        local = day.replace(hour=rng.randrange(start, end), minute=rng.randrange(60))
        offset = rng.randrange(240) / 4
    return local.replace(tzinfo=_ZONES[zone]).timestamp() + offset


def generate_requests(size: Size, count: int, seed: int) -> list[dict[str, Any]]:
    """Seeded neutral requests with roughly half allow / half deny decisions.

    Each request starts from a principal with a role among the size's roles (occasionally
    two) and a resource type that role grants (85%) or any type, and draws every attribute
    so that it mostly satisfies that role's grant, with independent chances of violating
    each condition (wrong action, no MFA, bad device, old or unknown OS, foreign or
    sanctioned region, out-of-hours time, non-corporate IP), plus owner==principal reads.
    """
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for k in range(count):
        index = rng.randrange(size.roles)
        role = ROLES[index]
        roles = [role]
        if rng.random() < 0.08 and size.roles > 1:
            other = rng.randrange(size.roles - 1)
            roles.append(ROLES[other + (other >= index)])
            rng.shuffle(roles)
        types = granted_types(size, index)
        if types and rng.random() < 0.85:
            rtype = f"app{rng.choice(types)}"
        else:
            rtype = f"app{rng.randrange(size.types)}"
        user = f"u{rng.randrange(5000)}"

        action = rng.choice(ROLE_ACTIONS[role]) if rng.random() < 0.85 else rng.choice(ACTIONS)

        if rng.random() < 0.08:
            os_name, os_version = rng.choice(_OTHER_OS)
        else:
            os_name = rng.choice(("macos", "windows", "linux"))
            pool = _GOOD_VERSIONS if rng.random() < 0.9 else _BAD_VERSIONS
            os_version = rng.choice(pool[os_name])

        region_draw = rng.random()
        if region_draw < 0.9:
            region = rng.choice(ALLOWED_REGIONS)
        elif region_draw < 0.95:
            region = rng.choice(_OTHER_REGIONS)
        else:
            region = rng.choice(SANCTIONED_REGIONS)

        hours = ROLE_HOURS[role]
        if hours is not None and rng.random() < 0.82:
            when = _office_time(rng, *hours)
        else:
            when = _any_time(rng)

        ip = _corporate_ip(rng) if rng.random() < 0.88 else _external_ip(rng)
        owner = user if rng.random() < 0.12 else f"u{rng.randrange(5000, 10000)}"

        out.append(
            {
                "principal": {"id": user, "roles": roles, "mfa": rng.random() < 0.95},
                "device": {
                    "managed": rng.random() < 0.96,
                    "disk_encrypted": rng.random() < 0.96,
                    "os": os_name,
                    "os_version": os_version,
                },
                "network": {"ip": ip, "region": region},
                "resource": {"type": rtype, "id": f"r{k}", "owner": owner},
                "action": action,
                "time": when,
            }
        )
    return out
