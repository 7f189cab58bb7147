"""Casbin peers: the policy as a PyCasbin ABAC model, one policy row per grant rule.

Package: ``pycasbin`` (import ``casbin``). Two peers, same rows and conditions:

``CasbinPeer`` - the canonical model. Policy rows ``p = kind, rtype, role, acts, hours,
net_scope, eft``: N ``grant`` rows (``grant, app17, engineer, ^(read|write)$,
Europe/Berlin 7 20, corporate, allow``), one ``owner`` row and one ``deny`` row; the
effect is deny-overrides (``some(where (p.eft == allow)) && !some(where (p.eft == deny))``).
PyCasbin evaluates the matcher against every row, so the cost grows linearly with N;
the matcher tests ``r.obj.type == p.rtype`` first so a non-matching grant row fails on
its first comparison.

``CasbinFastPeer`` - PyCasbin's ``FastEnforcer`` (``cache_key_order=[0]``), which keeps
the rows in a dict keyed by their first field (the resource type) and only evaluates
the rows whose key equals the request's first value. Rows keyed ``*`` would never be
selected, so here the owner and deny rules live in the matcher itself (a global
``!sanctioned && (owner || grant-row)`` condition, a common Casbin idiom) and the
N grant rows are the only policy rows.

Conditions Casbin has no built-in for are registered custom functions, run by the
engine during matching: ``osVersionOk`` (dotted-numeric minimum per OS) and
``withinHours`` (weekday and local hour via ``zoneinfo`` for the row's ``hours`` field,
parsed once per distinct value). CIDR checks use Casbin's built-in ``ipMatch``
(IPv4 and IPv6) and actions the built-in ``regexMatch``.

prepare (timed, the engine's input conversion): the request's sub-dicts are passed as
they are (Casbin's ABAC reads
``r.sub.roles`` etc. from dicts); ``CasbinFastPeer`` also passes the resource type as
its first request value, the key FastEnforcer filters on. Nothing is precomputed.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import casbin  # type: ignore[import-untyped]
from casbin.model import FastModel  # type: ignore[import-untyped]

from benchmarks.peers.scenario import (
    ALLOWED_REGIONS,
    CORPORATE_CIDRS,
    MIN_OS_VERSION,
    ROLE_HOURS,
    ROLE_NEEDS_CORP_IP,
    SANCTIONED_REGIONS,
    Size,
    grant_rules,
    in_office_hours,
    version_at_least,
)


def _tuple(items: tuple[str, ...]) -> str:
    return "(" + ", ".join(f'"{x}"' for x in items) + ")"


_CORP_IP = "(" + " || ".join(f'ipMatch(r.net.ip, "{c}")' for c in CORPORATE_CIDRS) + ")"

# Conditions of a grant row, shared by both models (``p.*`` are the row's fields).
_GRANT_CONDITIONS = (
    "p.role in r.sub.roles"
    " && regexMatch(r.act, p.acts)"
    " && r.sub.mfa == True"
    " && r.dev.managed == True && r.dev.disk_encrypted == True"
    " && osVersionOk(r.dev.os, r.dev.os_version)"
    f" && r.net.region in {_tuple(ALLOWED_REGIONS)}"
    " && withinHours(r.time, p.hours)"
    f' && (p.net_scope == "any" || {_CORP_IP})'
)
_OWNER_CONDITIONS = (
    'r.act == "read" && r.obj.owner == r.sub.id'
    " && r.dev.managed == True && r.dev.disk_encrypted == True"
)
_SANCTIONED = f"r.net.region in {_tuple(SANCTIONED_REGIONS)}"

MODEL = f"""
[request_definition]
r = sub, dev, net, obj, act, time

[policy_definition]
p = kind, rtype, role, acts, hours, net_scope, eft

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = (r.obj.type == p.rtype && p.kind == "grant" && {_GRANT_CONDITIONS}) \
|| (p.kind == "owner" && {_OWNER_CONDITIONS}) \
|| (p.kind == "deny" && {_SANCTIONED})
"""

_FAST_GRANT_CONDITIONS = _GRANT_CONDITIONS.replace(" && regexMatch(r.act, p.acts)", "")

FAST_MODEL = f"""
[request_definition]
r = rtype, act, sub, dev, net, obj, time

[policy_definition]
p = rtype, act, role, hours, net_scope

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = !({_SANCTIONED}) && (({_OWNER_CONDITIONS}) \
|| (r.rtype == p.rtype && r.act == p.act && {_FAST_GRANT_CONDITIONS}))
"""

# FastEnforcer keys: request values 0 and 1 (resource type, action) select the rows whose
# fields 0 and 1 are equal (FastPolicy supports exactly two key levels).
_FAST_KEY = [0, 1]


def _grant_fields(role: str) -> tuple[str, str]:
    hours = ROLE_HOURS[role]
    hours_field = "any" if hours is None else " ".join(str(h) for h in hours)
    return hours_field, "corporate" if ROLE_NEEDS_CORP_IP[role] else "any"


def policy_rows(size: Size) -> list[list[str]]:
    """Rows of ``MODEL``: one per grant rule, then the owner and deny rows."""
    rows = []
    for _i, rtype, role, actions in grant_rules(size):
        acts = "^(" + "|".join(actions) + ")$"
        rows.append(["grant", rtype, role, acts, *_grant_fields(role), "allow"])
    rows.append(["owner", "*", "*", "^read$", "any", "any", "allow"])
    rows.append(["deny", "*", "*", ".*", "any", "any", "deny"])
    return rows


def fast_policy_rows(size: Size) -> list[list[str]]:
    """Rows of ``FAST_MODEL``: grant rule ``i`` becomes one row per action it allows."""
    return [
        [rtype, action, role, *_grant_fields(role)]
        for _i, rtype, role, actions in grant_rules(size)
        for action in actions
    ]


class _RowsAdapter(casbin.persist.Adapter):  # type: ignore[misc]
    """Read-only in-memory adapter: loads the generated rows like a policy.csv would."""

    def __init__(self, rows: list[list[str]]) -> None:
        self.rows = rows

    def load_policy(self, model: Any) -> None:
        for row in self.rows:
            casbin.persist.load_policy_line("p, " + ", ".join(row), model)


def os_version_ok(os_name: str, version: str) -> bool:
    minimum = MIN_OS_VERSION.get(os_name)
    return minimum is not None and version_at_least(version, minimum)


@lru_cache(maxsize=64)
def _parse_hours(field: str) -> tuple[str, int, int] | None:
    if field == "any":
        return None
    zone, start, end = field.split()
    return zone, int(start), int(end)


def within_hours(epoch_seconds: float, field: str) -> bool:
    hours = _parse_hours(field)
    return hours is None or in_office_hours(epoch_seconds, *hours)


def _register_functions(enforcer: Any) -> None:
    enforcer.add_function("osVersionOk", os_version_ok)
    enforcer.add_function("withinHours", within_hours)


class CasbinPeer:
    name = "casbin"

    def __init__(self, size: Size) -> None:
        self.size = size
        model = casbin.Enforcer.new_model(text=MODEL)
        self.enforcer = casbin.Enforcer(model, _RowsAdapter(policy_rows(size)))
        _register_functions(self.enforcer)

    def prepare(self, req: dict[str, Any]) -> tuple[Any, ...]:
        return (
            req["principal"],
            req["device"],
            req["network"],
            req["resource"],
            req["action"],
            req["time"],
        )

    def decide(self, prepared: tuple[Any, ...]) -> bool:
        return bool(self.enforcer.enforce(*prepared))


class CasbinFastPeer:
    name = "casbin-fast"

    def __init__(self, size: Size) -> None:
        self.size = size
        model = FastModel(_FAST_KEY)
        model.load_model_from_text(FAST_MODEL)
        adapter = _RowsAdapter(fast_policy_rows(size))
        self.enforcer = casbin.FastEnforcer(model, adapter, cache_key_order=_FAST_KEY)
        _register_functions(self.enforcer)

    def prepare(self, req: dict[str, Any]) -> tuple[Any, ...]:
        return (
            req["resource"]["type"],
            req["action"],
            req["principal"],
            req["device"],
            req["network"],
            req["resource"],
            req["time"],
        )

    def decide(self, prepared: tuple[Any, ...]) -> bool:
        return bool(self.enforcer.enforce(*prepared))
