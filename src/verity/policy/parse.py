"""Condition blocks: YAML mapping -> AST nodes, collecting every problem with its key path.

A condition block is a mapping of criteria that must all hold; ``all``/``any``/``not``
nest blocks. Each criterion key has one parser below, registered in ``CRITERIA``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import CelError, Problem
from . import ast, values

RELATION_ROOTS = ("principal", "resource", "device", "network", "http", "context", "request")
_RELATION = re.compile(
    r"^\s*([A-Za-z_][\w.]*)\s*(==|!=|\bin\b|\bcontains\b)\s*([A-Za-z_][\w.]*)\s*$"
)


@dataclass
class ParseContext:
    """What condition parsing needs to know about the rest of the document."""

    problems: list[Problem]
    level_names: frozenset[str] = frozenset()
    cel_check: Callable[[str], None] | None = None
    levels_used: set[str] = field(default_factory=set)

    def problem(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))


Parser = Callable[[Any, str, ParseContext], list[ast.Node]]


def _join(path: str, key: str | int) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else key


def strings(
    value: Any, path: str, ctx: ParseContext, convert: Callable[[Any], str] = str
) -> list[str]:
    """A string or a non-empty list of strings, each passed through ``convert``."""
    items = value if isinstance(value, list) else [value]
    if not items:
        ctx.problem(path, "must not be empty")
    out: list[str] = []
    for i, item in enumerate(items):
        where = _join(path, i) if isinstance(value, list) else path
        if isinstance(item, bool | dict | list) or item is None:
            ctx.problem(where, f"expected a string, got {type(item).__name__}")
            continue
        try:
            out.append(convert(item))
        except ValueError as exc:
            ctx.problem(where, str(exc))
    return out


def _boolean(value: Any, path: str, ctx: ParseContext) -> bool | None:
    if not isinstance(value, bool):
        ctx.problem(path, f"expected true or false, got {value!r}")
        return None
    return value


def _plain(value: object) -> str:
    return str(value).strip()


def _set_of(node_type: Callable[..., ast.Node], convert: Callable[[Any], str] = _plain) -> Parser:
    def parse(value: Any, path: str, ctx: ParseContext) -> list[ast.Node]:
        items = strings(value, path, ctx, convert)
        return [node_type(path, frozenset(items))] if items else []

    return parse


def _authenticated(value: Any, path: str, ctx: ParseContext) -> list[ast.Node]:
    flag = _boolean(value, path, ctx)
    return [] if flag is None else [ast.Authenticated(path, flag)]


def _mfa(value: Any, path: str, ctx: ParseContext) -> list[ast.Node]:
    flag = _boolean(value, path, ctx)
    return [] if flag is None else [ast.Mfa(path, flag)]


def _max_age(what: str) -> Parser:
    def parse(value: Any, path: str, ctx: ParseContext) -> list[ast.Node]:
        try:
            return [ast.MaxAge(path, what, values.duration(value))]
        except ValueError as exc:
            ctx.problem(path, str(exc))
            return []

    return parse


def _services(value: Any, path: str, ctx: ParseContext) -> list[ast.Node]:
    items = strings(value, path, ctx, values.spiffe_pattern)
    return [ast.Services(path, tuple(items))] if items else []


def _claims(value: Any, path: str, ctx: ParseContext) -> list[ast.Node]:
    if not isinstance(value, dict) or not value:
        ctx.problem(path, "expected a mapping of claim path to value(s)")
        return []
    nodes: list[ast.Node] = []
    for key, expected in value.items():
        where = _join(path, str(key))
        claim = tuple(str(key).split("."))
        if not all(claim):
            ctx.problem(where, "empty segment in claim path")
            continue
        accepted = expected if isinstance(expected, list) else [expected]
        if not accepted or any(isinstance(v, dict | list) for v in accepted):
            ctx.problem(where, "expected a scalar or a list of scalars")
            continue
        nodes.append(ast.Claim(where, claim, tuple(accepted)))
    return nodes


def _device(value: Any, path: str, ctx: ParseContext) -> list[ast.Node]:
    if not isinstance(value, dict) or not value:
        ctx.problem(
            path, "expected a mapping (managed, disk_encrypted, screen_lock, firewall, os, min_os)"
        )
        return []
    nodes: list[ast.Node] = []
    for key, item in value.items():
        where = _join(path, str(key))
        if key in ast.DEVICE_FLAGS:
            flag = _boolean(item, where, ctx)
            if flag is not None:
                nodes.append(ast.DeviceFlag(where, str(key), flag))
        elif key == "os":
            types = strings(item, where, ctx, lambda v: str(v).strip().lower())
            if types:
                nodes.append(ast.DeviceOs(where, frozenset(types)))
        elif key == "min_os":
            nodes.extend(_min_os(item, where, ctx))
        else:
            _unknown(ctx, where, str(key), (*ast.DEVICE_FLAGS, "os", "min_os"), "device criterion")
    return nodes


def _min_os(value: Any, path: str, ctx: ParseContext) -> list[ast.Node]:
    if not isinstance(value, dict) or not value:
        ctx.problem(path, "expected a mapping of OS type to minimum version, e.g. {macos: '14.0'}")
        return []
    minimums: dict[str, str] = {}
    for os_type, version in value.items():
        try:
            minimums[str(os_type).strip().lower()] = values.version_text(version)
        except ValueError as exc:
            ctx.problem(_join(path, str(os_type)), str(exc))
    return [ast.DeviceMinOs(path, minimums)] if minimums else []


def _ip(value: Any, path: str, ctx: ParseContext) -> list[ast.Node]:
    items = value if isinstance(value, list) else [value]
    nets: list[ast.Network] = []
    for i, item in enumerate(items):
        try:
            nets.append(values.network(item))
        except ValueError as exc:
            ctx.problem(_join(path, i) if isinstance(value, list) else path, str(exc))
    if not items:
        ctx.problem(path, "must not be empty")
    return [ast.IpRanges(path, tuple(nets))] if nets and len(nets) == len(items) else []


def _time(value: Any, path: str, ctx: ParseContext) -> list[ast.Node]:
    windows = value if isinstance(value, list) else [value]
    nodes: list[ast.Node] = []
    for i, window in enumerate(windows):
        where = _join(path, i) if isinstance(value, list) else path
        node = _time_window(window, where, ctx)
        if node is not None:
            nodes.append(node)
    if len(nodes) != len(windows) or not nodes:
        if not windows:
            ctx.problem(path, "must not be empty")
        return []
    return nodes if len(nodes) == 1 else [ast.AnyOf(path, tuple(nodes))]


def _time_window(value: Any, path: str, ctx: ParseContext) -> ast.TimeWindow | None:
    if not isinstance(value, dict):
        ctx.problem(path, "expected {days: mon-fri, hours: '08:00-18:00', tz: Europe/Berlin}")
        return None
    for key in value:
        if key not in ("days", "hours", "tz"):
            _unknown(ctx, _join(path, str(key)), str(key), ("days", "hours", "tz"), "time key")
    before = len(ctx.problems)
    day_set, start, end, tz = frozenset(range(7)), 0, 1440, "UTC"
    try:
        day_set = values.days(value.get("days", "any"))
    except ValueError as exc:
        ctx.problem(_join(path, "days"), str(exc))
    try:
        start, end = values.hours(value.get("hours", "00:00-24:00"))
    except ValueError as exc:
        ctx.problem(_join(path, "hours"), str(exc))
    if "tz" not in value:
        ctx.problem(_join(path, "tz"), "required: an IANA time zone such as Europe/Berlin or UTC")
    else:
        try:
            tz = values.timezone(value["tz"])
        except ValueError as exc:
            ctx.problem(_join(path, "tz"), str(exc))
    if len(ctx.problems) != before:
        return None
    span = f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"
    text = f"{_day_text(day_set)} {span} {tz}"
    return ast.TimeWindow(path, day_set, start, end, tz, text)


def _day_text(day_set: frozenset[int]) -> str:
    names = [ast.WEEKDAYS[d].capitalize() for d in sorted(day_set)]
    if len(names) == 7:
        return "every day"
    contiguous = sorted(day_set) == list(range(min(day_set), max(day_set) + 1))
    return f"{names[0]}-{names[-1]}" if contiguous and len(names) > 2 else ",".join(names)


def _min_trust(value: Any, path: str, ctx: ParseContext) -> list[ast.Node]:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        ctx.problem(path, f"expected an integer from 0 to 100, got {value!r}")
        return []
    return [ast.MinTrust(path, value)]


def _jit(value: Any, path: str, ctx: ParseContext) -> list[ast.Node]:
    names = strings(value, path, ctx)
    if len(names) != 1:
        if names:
            ctx.problem(path, "name exactly one grant")
        return []
    return [ast.JitGrant(path, names[0])]


def _paths(value: Any, path: str, ctx: ParseContext) -> list[ast.Node]:
    items = strings(value, path, ctx, values.path_glob)
    return [ast.Paths(path, tuple(items))] if items else []


def _hosts(value: Any, path: str, ctx: ParseContext) -> list[ast.Node]:
    items = strings(value, path, ctx, values.host_pattern)
    return [ast.Hosts(path, tuple(items))] if items else []


def _headers(value: Any, path: str, ctx: ParseContext) -> list[ast.Node]:
    if not isinstance(value, dict) or not value:
        ctx.problem(path, "expected a mapping of header name to value pattern(s)")
        return []
    nodes: list[ast.Node] = []
    for name, patterns in value.items():
        where = _join(path, str(name))
        items = strings(patterns, where, ctx)
        if items:
            nodes.append(ast.Header(where, str(name).strip().lower(), tuple(items)))
    return nodes


def _resource(value: Any, path: str, ctx: ParseContext) -> list[ast.Node]:
    if not isinstance(value, dict) or not value:
        ctx.problem(path, "expected a mapping of resource attribute to value(s)")
        return []
    nodes: list[ast.Node] = []
    for name, expected in value.items():
        where = _join(path, str(name))
        accepted = expected if isinstance(expected, list) else [expected]
        if not accepted or any(isinstance(v, dict | list) for v in accepted):
            ctx.problem(where, "expected a scalar or a list of scalars")
            continue
        if name == "type":
            nodes.append(ast.ResourceTypes(where, frozenset(str(v) for v in accepted)))
        else:
            nodes.append(ast.ResourceAttr(where, str(name), tuple(accepted)))
    return nodes


def _relations(value: Any, path: str, ctx: ParseContext) -> list[ast.Node]:
    nodes: list[ast.Node] = []
    for i, text in enumerate(strings(value, path, ctx)):
        where = _join(path, i) if isinstance(value, list) else path
        match = _RELATION.match(text)
        if not match:
            ctx.problem(
                where, f"{text!r} is not a relation (use 'a.b == c.d'; ops ==, !=, in, contains)"
            )
            continue
        left, op, right = match.group(1).split("."), match.group(2), match.group(3).split(".")
        bad = [side for side in (left, right) if side[0] not in RELATION_ROOTS or len(side) < 2]
        if bad:
            roots = ", ".join(RELATION_ROOTS)
            ctx.problem(where, f"{'.'.join(bad[0])!r}: a relation path starts with one of {roots}")
            continue
        nodes.append(ast.Relation(where, tuple(left), op, tuple(right), text.strip()))
    return nodes


def _when(value: Any, path: str, ctx: ParseContext) -> list[ast.Node]:
    if not isinstance(value, str) or not value.strip():
        ctx.problem(path, "expected a CEL expression string")
        return []
    if ctx.cel_check is not None:
        try:
            ctx.cel_check(value)
        except CelError as exc:
            ctx.problem(path, f"invalid CEL: {exc.message}")
            return []
    return [ast.Cel(path, value.strip())]


def _levels(value: Any, path: str, ctx: ParseContext) -> list[ast.Node]:
    nodes: list[ast.Node] = []
    for i, name in enumerate(strings(value, path, ctx)):
        where = _join(path, i) if isinstance(value, list) else path
        if name not in ctx.level_names:
            _unknown(ctx, where, name, sorted(ctx.level_names), "access level")
            continue
        ctx.levels_used.add(name)
        nodes.append(ast.LevelRef(where, name))
    return nodes


def _all(value: Any, path: str, ctx: ParseContext) -> list[ast.Node]:
    if not isinstance(value, list) or not value:
        ctx.problem(path, "expected a non-empty list of condition blocks")
        return []
    return [ast.All(path, tuple(block(v, _join(path, i), ctx) for i, v in enumerate(value)))]


def _any(value: Any, path: str, ctx: ParseContext) -> list[ast.Node]:
    if not isinstance(value, list) or not value:
        ctx.problem(path, "expected a non-empty list of condition blocks")
        return []
    return [ast.AnyOf(path, tuple(block(v, _join(path, i), ctx) for i, v in enumerate(value)))]


def _not(value: Any, path: str, ctx: ParseContext) -> list[ast.Node]:
    return [ast.Not(path, block(value, path, ctx))]


# Order matters: a block's criteria are evaluated in this order, identity first, so the
# failure reached furthest into a rule is the most useful one to show a denied person.
CRITERIA: Mapping[str, Parser] = {
    "authenticated": _authenticated,
    "users": _set_of(ast.Users),
    "services": _services,
    "groups": _set_of(ast.Groups),
    "roles": _set_of(ast.Roles),
    "claims": _claims,
    "hosts": _hosts,
    "methods": _set_of(ast.Methods, values.method),
    "paths": _paths,
    "headers": _headers,
    "actions": _set_of(ast.Actions),
    "resource": _resource,
    "relations": _relations,
    "mfa": _mfa,
    "auth_methods": _set_of(ast.AuthMethods),
    "max_auth_age": _max_age("auth"),
    "mfa_max_age": _max_age("mfa"),
    "levels": _levels,
    "device": _device,
    "ip": _ip,
    "regions": _set_of(ast.Regions, values.region),
    "time": _time,
    "jit": _jit,
    "min_trust": _min_trust,
    "when": _when,
    "all": _all,
    "any": _any,
    "not": _not,
}
_ORDER = {key: i for i, key in enumerate(CRITERIA)}


def block(value: Any, path: str, ctx: ParseContext) -> ast.All:
    """Parse one condition block (a mapping of criteria, all of which must hold)."""
    if value is None or value == {}:
        return ast.All(path, ())
    if not isinstance(value, dict):
        ctx.problem(path, f"expected a mapping of criteria, got {type(value).__name__}")
        return ast.All(path, ())
    nodes: list[ast.Node] = []
    for key in sorted(value, key=lambda k: _ORDER.get(str(k), len(_ORDER))):
        parser = CRITERIA.get(str(key))
        if parser is None:
            _unknown(ctx, _join(path, str(key)), str(key), list(CRITERIA), "criterion")
            continue
        nodes.extend(parser(value[key], _join(path, str(key)), ctx))
    return ast.All(path, tuple(nodes))


def _unknown(ctx: ParseContext, path: str, name: str, known: Any, what: str) -> None:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    choices = ", ".join(known) if known else "none defined"
    ctx.problem(path, f"unknown {what} {name!r}{hint} (known: {choices})")


def unknown(ctx: ParseContext, path: str, name: str, known: Any, what: str) -> None:
    """Report an unknown key with a did-you-mean suggestion."""
    _unknown(ctx, path, name, known, what)
