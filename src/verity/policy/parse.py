"""Condition blocks: YAML mapping -> AST nodes, collecting every problem with its key path.

A condition block is a mapping of criteria that must all hold; ``all``/``any``/``not``
nest blocks. Each criterion key has one parser below, registered in ``CRITERIA``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import CelError
from . import ast, parse_context, values
from .parse_common import ParseContext, Parser, boolean, join, strings, unknown

RELATION_ROOTS = ("principal", "resource", "device", "network", "http", "context", "request")
_RELATION = re.compile(
    r"^\s*([A-Za-z_][\w.]*)\s*(==|!=|\bin\b|\bcontains\b)\s*([A-Za-z_][\w.]*)\s*$"
)


def _plain(value: object) -> str:
    return str(value).strip()


def _set_of(node_type: Callable[..., ast.Node], convert: Callable[[Any], str] = _plain) -> Parser:
    def parse(value: Any, path: str, ctx: ParseContext) -> list[ast.Node]:
        items = strings(value, path, ctx, convert)
        return [node_type(path, ctx.shared(frozenset(items)))] if items else []

    return parse


def _methods(value: Any, path: str, ctx: ParseContext) -> list[ast.Node]:
    items = strings(value, path, ctx, values.method)
    return [ast.Methods(path, values.methods_matched(items))] if items else []


def _authenticated(value: Any, path: str, ctx: ParseContext) -> list[ast.Node]:
    flag = boolean(value, path, ctx)
    return [] if flag is None else [ast.Authenticated(path, flag)]


def _mfa(value: Any, path: str, ctx: ParseContext) -> list[ast.Node]:
    flag = boolean(value, path, ctx)
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
    """``{dotted.path: values}`` (``\\.`` is a literal dot) or a list of
    ``{claim: name-or-list-of-names, values: ...}`` (names taken literally)."""
    if isinstance(value, list) and value:
        entries = [_claim_entry(entry, join(path, i), ctx) for i, entry in enumerate(value)]
        return [node for node in entries if node is not None]
    if not isinstance(value, dict) or not value:
        ctx.problem(path, "expected a mapping of claim path to value(s), or a list of "
                    "{claim: ..., values: ...}")  # fmt: skip
        return []
    nodes: list[ast.Node] = []
    for key, expected in value.items():
        where = join(path, str(key))
        try:
            claim = values.claim_path(str(key))
        except ValueError as exc:
            ctx.problem(where, str(exc))
            continue
        warning = values.split_claim_warning(str(key), claim)
        if warning is not None:
            ctx.warn(where, warning)
        node = _claim_node(where, claim, expected, ctx)
        if node is not None:
            nodes.append(node)
    return nodes


def _claim_entry(entry: Any, path: str, ctx: ParseContext) -> ast.Node | None:
    if not isinstance(entry, dict) or set(entry) != {"claim", "values"}:
        ctx.problem(path, "expected {claim: name (or list of names), values: value(s)}")
        return None
    names = entry["claim"] if isinstance(entry["claim"], list) else [entry["claim"]]
    if not names or not all(isinstance(n, str) and n for n in names):
        ctx.problem(join(path, "claim"), "expected a claim name or a list of names")
        return None
    return _claim_node(path, tuple(names), entry["values"], ctx)


def _claim_node(
    where: str, claim: tuple[str, ...], expected: Any, ctx: ParseContext
) -> ast.Node | None:
    accepted = expected if isinstance(expected, list) else [expected]
    if not accepted or any(isinstance(v, dict | list) for v in accepted):
        ctx.problem(where, "expected a scalar or a list of scalars")
        return None
    return ast.Claim(where, claim, tuple(accepted))


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
        where = join(path, str(name))
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
        where = join(path, str(name))
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
        where = join(path, i) if isinstance(value, list) else path
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
        where = join(path, i) if isinstance(value, list) else path
        if name not in ctx.level_names:
            unknown(ctx, where, name, sorted(ctx.level_names), "access level")
            continue
        ctx.levels_used.add(name)
        nodes.append(ast.LevelRef(where, name))
    return nodes


def _all(value: Any, path: str, ctx: ParseContext) -> list[ast.Node]:
    if not isinstance(value, list) or not value:
        ctx.problem(path, "expected a non-empty list of condition blocks")
        return []
    return [ast.All(path, tuple(block(v, join(path, i), ctx) for i, v in enumerate(value)))]


def _any(value: Any, path: str, ctx: ParseContext) -> list[ast.Node]:
    if not isinstance(value, list) or not value:
        ctx.problem(path, "expected a non-empty list of condition blocks")
        return []
    return [ast.AnyOf(path, tuple(block(v, join(path, i), ctx) for i, v in enumerate(value)))]


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
    "methods": _methods,
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
    "device": parse_context.device,
    "ip": parse_context.ip,
    "regions": _set_of(ast.Regions, values.region),
    "time": parse_context.time,
    "jit": parse_context.jit,
    "min_trust": parse_context.min_trust,
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
            unknown(ctx, join(path, str(key)), str(key), list(CRITERIA), "criterion")
            continue
        nodes.extend(parser(value[key], join(path, str(key)), ctx))
    return ast.All(path, tuple(nodes))
