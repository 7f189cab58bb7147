"""The floor: the benchmark policy written by hand as one Python function.

It reads the same ``AccessRequest`` values Verity decides on and uses the cheapest
checks a careful programmer would write (set lookups, integer CIDR masks, cached version
tuples, one ``datetime.fromtimestamp`` per zone), with no explanation and no audit data.
"""

from __future__ import annotations

import functools
import ipaddress
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from verity.model import AccessRequest

from . import scenario as s
from .verity_peer import to_request

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


def _corporate(r: AccessRequest) -> bool:
    ip = r.network.ip
    if ip is None:
        return False
    x = int(ip)
    nets = _V4 if ip.version == 4 else _V6
    return any(x & mask == net for net, mask in nets)


def _role_ok(role: str, r: AccessRequest) -> bool:
    if r.action not in s.ROLE_ACTIONS[role]:
        return False
    window = s.ROLE_HOURS[role]
    if window is not None:
        zone, start, end = window
        local = datetime.fromtimestamp(r.time, _ZONES[zone])
        if local.weekday() >= 5 or not start <= local.hour < end:
            return False
    return not s.ROLE_NEEDS_CORP_IP[role] or _corporate(r)


_ROLE_INDEX = {role: i for i, role in enumerate(s.ROLES)}


def handwritten_decide(r: AccessRequest, n_rules: int) -> bool:
    if r.network.region in _SANCTIONED:
        return False
    d = r.device
    if d is None or not (d.managed and d.disk_encrypted):
        return False
    if r.action == "read" and r.resource.attributes.get("owner") == r.principal.id:
        return True
    rtype = r.resource.type
    if rtype is None or not rtype.startswith("app") or not rtype[3:].isdigit():
        return False
    first_rule = 4 * int(rtype[3:])
    floor = _MIN_OS.get(d.os_type)
    have = _version(d.os_version)
    if floor is None or have is None or have < floor:
        return False
    if not r.principal.mfa or r.network.region not in _ALLOWED:
        return False
    return any(
        _role_ok(role, r)
        for role in r.principal.roles
        if role in _ROLE_INDEX and first_rule + _ROLE_INDEX[role] < n_rules
    )


class HandwrittenPeer:
    name = "handwritten"

    def __init__(self, n_rules: int) -> None:
        self.n_rules = n_rules

    def prepare(self, req: dict[str, Any]) -> AccessRequest:
        return to_request(req)

    def decide(self, prepared: AccessRequest) -> bool:
        return handwritten_decide(prepared, self.n_rules)
