"""Parsers for context criteria: device posture, network, time windows, trust, grants."""

from __future__ import annotations

from typing import Any

from . import ast, values
from .parse_common import ParseContext, boolean, join, strings, unknown


def device(value: Any, path: str, ctx: ParseContext) -> list[ast.Node]:
    if not isinstance(value, dict) or not value:
        ctx.problem(
            path, "expected a mapping (managed, disk_encrypted, screen_lock, firewall, os, min_os)"
        )
        return []
    nodes: list[ast.Node] = []
    for key, item in value.items():
        where = join(path, str(key))
        if key in ast.DEVICE_FLAGS:
            flag = boolean(item, where, ctx)
            if flag is not None:
                nodes.append(ast.DeviceFlag(where, str(key), flag))
        elif key == "os":
            types = strings(item, where, ctx, lambda v: str(v).strip().lower())
            if types:
                nodes.append(ast.DeviceOs(where, frozenset(types)))
        elif key == "min_os":
            nodes.extend(_min_os(item, where, ctx))
        else:
            unknown(ctx, where, str(key), (*ast.DEVICE_FLAGS, "os", "min_os"), "device criterion")
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
            ctx.problem(join(path, str(os_type)), str(exc))
    return [ast.DeviceMinOs(path, minimums)] if minimums else []


def ip(value: Any, path: str, ctx: ParseContext) -> list[ast.Node]:
    items = value if isinstance(value, list) else [value]
    nets: list[ast.Network] = []
    for i, item in enumerate(items):
        where = join(path, i) if isinstance(value, list) else path
        try:
            net, warning = values.network(item)
        except ValueError as exc:
            ctx.problem(where, str(exc))
            continue
        nets.append(net)
        if warning is not None:
            ctx.warn(where, warning)
    if not items:
        ctx.problem(path, "must not be empty")
    return [ast.IpRanges(path, tuple(nets))] if nets and len(nets) == len(items) else []


def time(value: Any, path: str, ctx: ParseContext) -> list[ast.Node]:
    windows = value if isinstance(value, list) else [value]
    nodes: list[ast.Node] = []
    for i, window in enumerate(windows):
        where = join(path, i) if isinstance(value, list) else path
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
            unknown(ctx, join(path, str(key)), str(key), ("days", "hours", "tz"), "time key")
    key = (value.get("days", "any"), value.get("hours", "00:00-24:00"), value.get("tz"))
    if all(type(part) is str for part in key):  # rules repeat a few windows: parse each once
        found = ctx.memo.get(("time", *key))
        if found is not None:
            return ast.TimeWindow(path, *found)
    before = len(ctx.problems)
    day_set, start, end, tz = frozenset(range(7)), 0, 1440, "UTC"
    try:
        day_set = values.days(value.get("days", "any"))
    except ValueError as exc:
        ctx.problem(join(path, "days"), str(exc))
    try:
        start, end = values.hours(value.get("hours", "00:00-24:00"))
    except ValueError as exc:
        ctx.problem(join(path, "hours"), str(exc))
    if "tz" not in value:
        ctx.problem(join(path, "tz"), "required: an IANA time zone such as Europe/Berlin or UTC")
    else:
        try:
            tz = values.timezone(value["tz"])
        except ValueError as exc:
            ctx.problem(join(path, "tz"), str(exc))
    if len(ctx.problems) != before:
        return None
    span = f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"
    text = f"{_day_text(day_set)} {span} {tz}"
    window = (ctx.shared(day_set), start, end, tz, ctx.shared(text))
    if all(type(part) is str for part in key):
        ctx.memo[("time", *key)] = window
    return ast.TimeWindow(path, *window)


def _day_text(day_set: frozenset[int]) -> str:
    names = [ast.WEEKDAYS[d].capitalize() for d in sorted(day_set)]
    if len(names) == 7:
        return "every day"
    contiguous = sorted(day_set) == list(range(min(day_set), max(day_set) + 1))
    return f"{names[0]}-{names[-1]}" if contiguous and len(names) > 2 else ",".join(names)


def min_trust(value: Any, path: str, ctx: ParseContext) -> list[ast.Node]:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        ctx.problem(path, f"expected an integer from 0 to 100, got {value!r}")
        return []
    return [ast.MinTrust(path, value)]


def jit(value: Any, path: str, ctx: ParseContext) -> list[ast.Node]:
    names = strings(value, path, ctx)
    if len(names) != 1:
        if names:
            ctx.problem(path, "name exactly one grant")
        return []
    return [ast.JitGrant(path, names[0])]
