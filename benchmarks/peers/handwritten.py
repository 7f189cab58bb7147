"""The floor: the benchmark policy written by hand as one Python function over the dict.

It reads the neutral request dict (what JSON gives an application) directly and uses the
cheapest checks a careful programmer would write: a dict of granted types per role,
set lookups, integer CIDR masks, cached version tuples and IP parses, one
``datetime.fromtimestamp`` per zone; no validation, no explanation, no audit data.
"""

from __future__ import annotations

import functools
import ipaddress
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from . import scenario as s

_ALLOWED = frozenset(s.ALLOWED_REGIONS)
_SANCTIONED = frozenset(s.SANCTIONED_REGIONS)
_NETS = [ipaddress.ip_network(c) for c in s.CORPORATE_CIDRS]
_V4 = tuple((int(n.network_address), int(n.netmask)) for n in _NETS if n.version == 4)
_V6 = tuple((int(n.network_address), int(n.netmask)) for n in _NETS if n.version == 6)
_ZONES = {z: ZoneInfo(z) for z in s.TIME_ZONES}


@functools.lru_cache(maxsize=1024)
def _version(text: str) -> tuple[int, ...] | None:
    parts = s.parse_version(text)
    if parts is None:
        return None
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


_MIN_OS = {k: _version(v) for k, v in s.MIN_OS_VERSION.items()}


@functools.lru_cache(maxsize=4096)
def _corporate(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    x = int(address)
    nets = _V4 if address.version == 4 else _V6
    return any(x & mask == net for net, mask in nets)


def _role_ok(role: str, r: dict[str, Any]) -> bool:
    if r["action"] not in s.ROLE_ACTIONS[role]:
        return False
    window = s.ROLE_HOURS[role]
    if window is not None:
        zone, start, end = window
        local = datetime.fromtimestamp(r["time"], _ZONES[zone])
        if local.weekday() >= 5 or not start <= local.hour < end:
            return False
    return not s.ROLE_NEEDS_CORP_IP[role] or _corporate(r["network"]["ip"])


class HandwrittenPeer:
    name = "handwritten"

    def __init__(self, size: s.Size) -> None:
        self.granted: dict[str, frozenset[str]] = {
            s.ROLES[k]: frozenset(f"app{t}" for t in s.granted_types(size, k))
            for k in range(size.roles)
        }

    def prepare(self, req: dict[str, Any]) -> dict[str, Any]:
        return req

    def decide(self, r: dict[str, Any]) -> bool:
        network = r["network"]
        if network["region"] in _SANCTIONED:
            return False
        d = r["device"]
        if not (d["managed"] is True and d["disk_encrypted"] is True):
            return False
        p = r["principal"]
        resource = r["resource"]
        if r["action"] == "read" and resource["owner"] == p["id"]:
            return True
        floor = _MIN_OS.get(d["os"])
        have = _version(d["os_version"])
        if floor is None or have is None or have < floor:
            return False
        if p["mfa"] is not True or network["region"] not in _ALLOWED:
            return False
        rtype = resource["type"]
        granted = self.granted
        return any(rtype in granted.get(role, ()) and _role_ok(role, r) for role in p["roles"])
