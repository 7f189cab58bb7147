"""Policy documents: YAML file or mapping -> validated ``ast.Policy``, all or nothing.

Every problem in the document is collected (file, key path, message) and raised together
as one ``PolicyLoadError``; a policy with any problem is never half-loaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import yamlio
from ..errors import PolicyLoadError, Problem
from ..model import Effect
from . import ast, values
from .codegen import without_gc
from .parse import block
from .parse_common import ParseContext, strings, unknown
from .parse_table import parse_table

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_TOP_KEYS = ("version", "access_levels", "rules")
_RULE_KEYS = ("name", "description", "resources", "allow", "deny", "table", "message", "hint")
_TARGET_KEYS = {
    "host": "hosts",
    "hosts": "hosts",
    "method": "methods",
    "methods": "methods",
    "path": "paths",
    "paths": "paths",
    "type": "types",
    "types": "types",
    "action": "actions",
    "actions": "actions",
}

CelCheck = Callable[[str], None]
log = logging.getLogger("verity.policy")


def load_policy_file(path: str | Path, *, cel_check: CelCheck | None = None) -> ast.Policy:
    """Read and validate a policy file; raises ``PolicyLoadError`` naming every problem.
    Table files are read relative to the policy file's directory."""
    base = Path(path).parent
    return _parse_yaml(lambda: yamlio.load_file(path), str(path), cel_check, base)


def load_policy_text(
    text: str,
    *,
    source: str = "<text>",
    cel_check: CelCheck | None = None,
    base_dir: Path | None = None,
) -> ast.Policy:
    """Validate a policy given as YAML text (table files relative to ``base_dir``)."""
    return _parse_yaml(lambda: yamlio.loads(text), source, cel_check, base_dir)


def _parse_yaml(
    read: Callable[[], Any], source: str, cel_check: CelCheck | None, base_dir: Path | None
) -> ast.Policy:
    try:
        document = read()
    except yamlio.YamlProblem as exc:
        raise PolicyLoadError(source, [exc.problem]) from None
    return parse_policy(document, source=source, cel_check=cel_check, base_dir=base_dir)


def parse_policy(
    document: Any,
    *,
    source: str = "<memory>",
    cel_check: CelCheck | None = None,
    base_dir: Path | None = None,
) -> ast.Policy:
    """Validate a policy document (already parsed YAML/JSON) into an ``ast.Policy``.

    Relative table file names are read from ``base_dir`` (default: the current
    directory)."""
    problems: list[Problem] = []
    if not isinstance(document, dict):
        raise PolicyLoadError(
            source,
            [Problem("", "a policy is a mapping with 'rules' (and optionally 'access_levels')")],
        )
    ctx = ParseContext(problems, cel_check=cel_check)
    for key in document:
        if key not in _TOP_KEYS:
            unknown(ctx, str(key), str(key), _TOP_KEYS, "top-level key")
    if document.get("version", 1) != 1:
        ctx.problem("version", "unsupported policy version (this Verity reads version 1)")
    tables: list[ast.PermissionTable] = []
    file_data: list[bytes] = []
    with without_gc():  # a large policy allocates much and frees nothing (see codegen)
        levels = _levels(document.get("access_levels") or {}, ctx)
        rules = _rules(document.get("rules"), ctx, _Tables(tables, file_data, base_dir))
    if problems:
        raise PolicyLoadError(source, problems)
    digest = _digest(document, file_data)
    for warning in ctx.warnings:
        log.warning("policy %s: %s", source, warning)
    return ast.Policy(
        rules=tuple(rules),
        access_levels=levels,
        source=source,
        version=digest,
        warnings=tuple(ctx.warnings),
        tables=tuple(tables),
    )


class _Tables:
    """Where ``_rules`` puts the permission tables it finds, and the files they read."""

    def __init__(
        self, tables: list[ast.PermissionTable], file_data: list[bytes], base_dir: Path | None
    ) -> None:
        self.tables = tables
        self.file_data = file_data
        self.base_dir = base_dir


def _levels(raw: Any, ctx: ParseContext) -> dict[str, ast.All]:
    if not isinstance(raw, dict):
        ctx.problem("access_levels", "expected a mapping of level name to condition block")
        return {}
    names = [str(k) for k in raw]
    for name in names:
        if not _NAME.match(name):
            ctx.problem(
                f"access_levels.{name}", "a level name uses letters, digits, '_', '-', '.', ':'"
            )
    ctx.level_names = frozenset(names)
    levels = {str(name): block(body, f"access_levels.{name}", ctx) for name, body in raw.items()}
    _check_level_cycles(levels, ctx)
    return levels


def _check_level_cycles(levels: dict[str, ast.All], ctx: ParseContext) -> None:
    def refs(node: ast.Node) -> list[str]:
        if isinstance(node, ast.LevelRef):
            return [node.name]
        if isinstance(node, ast.All | ast.AnyOf):
            return [r for child in node.children for r in refs(child)]
        if isinstance(node, ast.Not):
            return refs(node.child)
        return []

    graph = {name: refs(body) for name, body in levels.items()}
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = " -> ".join([*trail[trail.index(name) :], name])
            ctx.problem(
                f"access_levels.{name}", f"access levels refer to each other in a cycle: {cycle}"
            )
            return
        state[name] = 1
        for ref in graph.get(name, []):
            visit(ref, [*trail, name])
        state[name] = 2

    for name in graph:
        visit(name, [])


def _rules(raw: Any, ctx: ParseContext, tables: _Tables) -> list[ast.Rule]:
    if not isinstance(raw, list):
        ctx.problem("rules", "required: a list of rules")
        return []
    rules: list[ast.Rule] = []
    seen: dict[str, int] = {}
    for i, body in enumerate(raw):
        item: ast.Rule | ast.PermissionTable | None
        if isinstance(body, dict) and "table" in body:
            item = _table(body, f"rules[{i}]", len(rules), ctx, tables)
        else:
            item = _rule(body, f"rules[{i}]", len(rules), ctx)
        if item is None:
            continue
        if item.name in seen:
            ctx.problem(
                f"rules[{i}].name",
                f"duplicate rule name {item.name!r} (also rules[{seen[item.name]}])",
            )
        seen.setdefault(item.name, i)
        if isinstance(item, ast.Rule):
            rules.append(item)
        else:
            tables.tables.append(item)
    return rules


def _table(
    body: dict[str, Any], path: str, position: int, ctx: ParseContext, tables: _Tables
) -> ast.PermissionTable | None:
    for key in body:
        if key not in _RULE_KEYS:
            unknown(ctx, f"{path}.{key}", str(key), _RULE_KEYS, "rule key")
    name = _name(body, path, ctx)
    for key in ("allow", "deny", "resources"):
        if key in body:
            ctx.problem(
                f"{path}.{key}",
                "a table rule has no 'allow', 'deny' or 'resources': its rows name the "
                "resources, and 'table.allow' holds the conditions of every row",
            )
    texts = _texts(body, path, ctx)
    return parse_table(
        body["table"],
        f"{path}.table",
        name,
        position,
        texts,
        ctx,
        tables.base_dir,
        tables.file_data,
    )


def _name(body: dict[str, Any], path: str, ctx: ParseContext) -> str:
    name = body.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        ctx.problem(
            f"{path}.name", "required: a name of letters, digits, '_', '-', '.', ':' (max 128)"
        )
        return f"<{path}>"
    return name


def _texts(body: dict[str, Any], path: str, ctx: ParseContext) -> dict[str, str | None]:
    texts: dict[str, str | None] = {}
    for key in ("description", "message", "hint"):
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            ctx.problem(f"{path}.{key}", "expected a string")
            value = None
        texts[key] = value
    return texts


def _rule(body: Any, path: str, index: int, ctx: ParseContext) -> ast.Rule | None:
    if not isinstance(body, dict):
        ctx.problem(path, "a rule is a mapping with 'name' and 'allow' or 'deny'")
        return None
    for key in body:
        if key not in _RULE_KEYS:
            unknown(ctx, f"{path}.{key}", str(key), _RULE_KEYS, "rule key")
    name = _name(body, path, ctx)
    if ("allow" in body) == ("deny" in body):
        ctx.problem(path, "a rule has exactly one of 'allow', 'deny' or 'table'")
        return None
    effect = Effect.ALLOW if "allow" in body else Effect.DENY
    key = effect.value
    condition = block(body[key], f"{path}.{key}", ctx)
    targets = _targets(body.get("resources"), f"{path}.resources", ctx)
    texts = {k: body.get(k) for k in ("description", "message", "hint")}
    for k, v in texts.items():
        if v is not None and not isinstance(v, str):
            ctx.problem(f"{path}.{k}", "expected a string")
    return ast.Rule(
        index=index,
        name=name,
        effect=effect,
        targets=targets,
        condition=condition,
        path=path,
        description=str(texts["description"] or ""),
        message=texts["message"] if isinstance(texts["message"], str) else None,
        hint=texts["hint"] if isinstance(texts["hint"], str) else None,
    )


def _targets(raw: Any, path: str, ctx: ParseContext) -> tuple[ast.Target, ...]:
    if raw is None:
        return (ast.Target(path),)
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        ctx.problem(path, "must not be empty (omit 'resources' to match every request)")
    return tuple(_target(item, f"{path}[{i}]", ctx) for i, item in enumerate(items))


def _target(raw: Any, path: str, ctx: ParseContext) -> ast.Target:
    if not isinstance(raw, dict) or not raw:
        ctx.problem(path, "expected a mapping (hosts, methods, paths, types, actions)")
        return ast.Target(path)
    fields: dict[str, Any] = {}
    for key, value in raw.items():
        field = _TARGET_KEYS.get(str(key))
        where = f"{path}.{key}"
        if field is None:
            unknown(ctx, where, str(key), sorted(set(_TARGET_KEYS.values())), "resource selector")
        elif field in fields:
            ctx.problem(where, f"'{field}' given twice (singular and plural)")
        else:
            fields[field] = _target_field(field, value, where, ctx)
    return ast.Target(path, **fields)


def _target_field(field: str, value: Any, path: str, ctx: ParseContext) -> Any:
    if field == "hosts":
        return tuple(strings(value, path, ctx, values.host_pattern))
    if field == "paths":
        return tuple(strings(value, path, ctx, values.path_glob))
    if field == "methods":
        return ctx.shared(values.methods_matched(strings(value, path, ctx, values.method)))
    return ctx.shared(frozenset(strings(value, path, ctx)))


def _digest(document: dict[Any, Any], file_data: Sequence[bytes] = ()) -> str:
    """SHA-256 of ``json.dumps(document, sort_keys=True, default=str)``, hashed rule by
    rule, so a policy of 350,000 rules never holds its whole JSON text in memory, then of
    the SHA-256 of each table file read (a table file's content is part of the policy's
    version)."""
    rules = document.get("rules")
    if not isinstance(rules, list) or not all(isinstance(k, str) for k in document):
        whole = hashlib.sha256(_json(document).encode())
        for data in file_data:
            whole.update(hashlib.sha256(data).digest())
        return whole.hexdigest()
    digest = hashlib.sha256()
    for i, key in enumerate(sorted(document)):
        digest.update(((", " if i else "{") + _json(key) + ": ").encode())
        if key != "rules":
            digest.update(_json(document[key]).encode())
            continue
        digest.update(b"[")
        for j, rule in enumerate(rules):
            digest.update(((", " if j else "") + _json(rule)).encode())
        digest.update(b"]")
    digest.update(b"}")
    for data in file_data:
        digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()


_ENCODER = json.JSONEncoder(sort_keys=True, default=str)  # what json.dumps builds per call


def _json(value: Any) -> str:
    return _ENCODER.encode(value)
