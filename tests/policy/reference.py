"""A straightforward reference interpreter of the policy AST, for property tests.

It shares nothing with the compiled engine but the AST: no index, no generated code, no
offset caches, no integer CIDR masks. It walks every rule in order with the plainest
stdlib semantics (``ipaddress`` membership, ``datetime.fromtimestamp``, ``fnmatch``), so
when it and the engine agree on random policies and requests, the optimisations are
behaving.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from verity.model import AccessRequest, Effect, PrincipalKind
from verity.policy import ast

_MISSING = object()


def decide(policy: ast.Policy, request: AccessRequest) -> tuple[Effect, str | None]:
    applicable = [r for r in policy.rules if any(_target(t, request) for t in r.targets)]
    for rule in applicable:
        if rule.effect is Effect.DENY and _holds(policy, rule.condition, request):
            return Effect.DENY, rule.name
    for rule in applicable:
        if rule.effect is Effect.ALLOW and _holds(policy, rule.condition, request):
            return Effect.ALLOW, rule.name
    return Effect.DENY, None


def _target(target: ast.Target, r: AccessRequest) -> bool:
    if target.types and r.resource.type not in target.types:
        return False
    if target.actions and r.action not in target.actions:
        return False
    if target.hosts and not (r.http and any(_host(p, r.http.host) for p in target.hosts)):
        return False
    if target.methods and not (r.http and r.http.method in target.methods):
        return False
    return not target.paths or bool(r.http and any(_glob(p, r.http.path) for p in target.paths))


def _host(pattern: str, host: str) -> bool:
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and host != pattern[2:]
    return host == pattern


def _glob(pattern: str, value: str) -> bool:
    """Segment-wise glob: ``*`` is one segment (fnmatch within it), a final ``**`` any tail."""
    pat, val = pattern.split("/"), value.split("/")
    if pat[-1] == "**":
        head = pat[:-1]
        return len(val) >= len(head) and _segments(head, val[: len(head)])
    return len(pat) == len(val) and _segments(pat, val)


def _segments(patterns: list[str], values: list[str]) -> bool:
    return all(
        fnmatch.fnmatchcase(v, p.replace("[", "[[]")) for p, v in zip(patterns, values, strict=True)
    )


def _holds(policy: ast.Policy, node: ast.Node, r: AccessRequest) -> bool:
    if isinstance(node, ast.AnyOf):
        return any(_holds(policy, c, r) for c in node.children)
    if isinstance(node, ast.All):
        return all(_holds(policy, c, r) for c in node.children)
    if isinstance(node, ast.Not):
        return not _holds(policy, node.child, r)
    if isinstance(node, ast.LevelRef):
        return _holds(policy, policy.access_levels[node.name], r)
    return _leaf(node, r)


def _leaf(node: ast.Node, r: AccessRequest) -> bool:
    p, d, n = r.principal, r.device, r.network
    match node:
        case ast.Authenticated(value=value):
            return (p.kind != PrincipalKind.ANONYMOUS) == value
        case ast.Users(values=values):
            return p.id in values or (p.email is not None and p.email in values)
        case ast.Groups(values=values):
            return bool(set(p.groups) & set(values))
        case ast.Roles(values=values):
            return bool(set(p.roles) & set(values))
        case ast.AuthMethods(values=values):
            return bool(set(p.auth_methods) & set(values))
        case ast.Services(patterns=patterns):
            return p.spiffe_id is not None and any(_glob(x, p.spiffe_id) for x in patterns)
        case ast.Claim(claim=claim, values=values):
            return _claim(p.claims, claim, values)
        case ast.Mfa(required=required):
            return p.mfa == required
        case ast.MaxAge(what=what, seconds=seconds):
            stamp = p.mfa_time if what == "mfa" else p.auth_time
            return stamp is not None and -60 <= r.time - stamp <= seconds
        case ast.DeviceFlag(flag=flag, value=value):
            return d is not None and getattr(d, flag) == value
        case ast.DeviceOs(types=types):
            return d is not None and d.os_type in types
        case ast.DeviceMinOs(minimums=minimums):
            return (
                d is not None
                and d.os_type in minimums
                and _version_ge(d.os_version, minimums[d.os_type])
            )
        case ast.IpRanges(networks=networks):
            return n.ip is not None and any(
                n.ip.version == net.version and n.ip in net for net in networks
            )
        case ast.Regions(values=values):
            return n.region is not None and n.region in values
        case ast.TimeWindow(days=days, start=start, end=end, tz=tz):
            local = datetime.fromtimestamp(r.time, ZoneInfo(tz))
            minute = local.hour * 60 + local.minute
            within = start <= minute < end if start < end else (minute >= start or minute < end)
            return local.weekday() in days and within
        case ast.MinTrust(value=value):
            return r.trust_score is not None and r.trust_score >= value
        case ast.JitGrant(grant=grant):
            return grant in r.grants and r.grants[grant] > r.time
        case ast.Actions(values=values):
            return r.action is not None and r.action in values
        case ast.Methods(values=values):
            return r.http is not None and r.http.method in values
        case ast.Paths(patterns=patterns):
            return r.http is not None and any(_glob(x, r.http.path) for x in patterns)
        case ast.Hosts(patterns=patterns):
            return r.http is not None and any(_host(x, r.http.host) for x in patterns)
        case ast.ResourceTypes(values=values):
            return r.resource.type is not None and r.resource.type in values
        case ast.ResourceAttr(name=name, values=values):
            value = r.resource.id if name == "id" else r.resource.attributes.get(name, _MISSING)
            return (
                value is not _MISSING and value is not None and any(_same(value, v) for v in values)
            )
        case ast.Relation(left=left, op=op, right=right):
            return _relation(_path(r, left), op, _path(r, right))
    raise AssertionError(f"reference interpreter has no case for {node!r}")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(a == b)


def _claim(claims: Any, path: tuple[str, ...], values: tuple[Any, ...]) -> bool:
    value: Any = claims
    for key in path:
        if not hasattr(value, "get") or key not in value:
            return False
        value = value[key]
    items = value if isinstance(value, tuple) else (value,)
    return any(_same(i, v) for i in items for v in values)


def _version_ge(have: str, floor: str) -> bool:
    digits = []
    for part in have.split("."):
        number = "".join(ch for ch in part if ch.isdigit()) if part[:1].isdigit() else ""
        if not number:
            break
        digits.append(int(number))
        if number != part:
            break
    if not digits or not have[:1].isdigit():
        return False
    want = [int(x) for x in floor.split(".")]
    size = max(len(digits), len(want))
    return digits + [0] * (size - len(digits)) >= want + [0] * (size - len(want))


def _path(r: AccessRequest, path: tuple[str, ...]) -> Any:
    root, *rest = path
    if root == "principal":
        if rest == ["id"]:
            return r.principal.id
        if rest[0] == "claims":
            rest = rest[1:]
        return _dig(r.principal.claims, rest)
    if root == "resource":
        if rest in (["type"], ["id"]):
            value = getattr(r.resource, rest[0])
            return _MISSING if value is None else value
        return _dig(r.resource.attributes, rest[1:] if rest[0] == "attributes" else rest)
    raise AssertionError(f"reference interpreter does not read {path}")


def _dig(value: Any, keys: list[str]) -> Any:
    for key in keys:
        if not hasattr(value, "get") or key not in value:
            return _MISSING
        value = value[key]
    return value


def _relation(left: Any, op: str, right: Any) -> bool:
    if left is _MISSING or right is _MISSING:
        return False
    if op == "==":
        return _same(left, right)
    if op == "!=":
        return not _same(left, right)
    container, item = (right, left) if op == "in" else (left, right)
    if isinstance(container, str):
        return isinstance(item, str) and item in container
    if isinstance(container, tuple | frozenset | list | set):
        return any(_same(item, m) for m in container)
    return False


def ip_of(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)
