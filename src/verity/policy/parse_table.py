"""Permission tables: a rule entry with ``table:`` -> ``ast.PermissionTable``.

The common RBAC shape (roles -> resource types -> actions, with conditions per role) as
data instead of one rule per role or per (role, type)::

    rules:
      - name: grants
        table:
          file: grants.csv          # rows from a CSV, YAML or JSON file, and/or
          rows:                     # rows written inline
            - {role: contractor, type: wiki-page, actions: [read]}
          allow: {mfa: true}        # conditions of every row (optional)
          roles:                    # conditions of one role's rows, added (optional)
            contractor: {time: {days: mon-fri, hours: "08:00-18:00", tz: Europe/Berlin}}

A CSV file has the header ``role,type,actions`` (any order) and one row per line, the
actions separated by spaces; blank lines and lines starting with ``#`` are skipped. A
YAML or JSON file holds a list of rows as written inline. File names are relative to the
policy file. Every problem (unknown key or column, a row without role, type or actions,
the same role and type twice, a file that is missing or malformed) is reported with the
file and line (CSV) or key path, and nothing of the policy loads.
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import Any

from .. import yamlio
from . import ast
from .parse import block
from .parse_common import ParseContext, join, strings, unknown

TABLE_KEYS = ("file", "rows", "allow", "roles")
ROW_KEYS = ("role", "type", "actions")
_CSV_SUFFIXES = (".csv",)
_DATA_SUFFIXES = (".yaml", ".yml", ".json")


def parse_table(
    raw: Any,
    path: str,
    name: str,
    position: int,
    texts: dict[str, str | None],
    ctx: ParseContext,
    base_dir: Path | None,
    file_data: list[bytes],
) -> ast.PermissionTable | None:
    """Validate ``raw`` (the value of a rule's ``table`` key) into a permission table."""
    if not isinstance(raw, dict) or not raw:
        ctx.problem(path, "expected a mapping with 'rows' and/or 'file' (and 'allow', 'roles')")
        return None
    for key in raw:
        if key not in TABLE_KEYS:
            unknown(ctx, join(path, str(key)), str(key), TABLE_KEYS, "table key")
    if "rows" not in raw and "file" not in raw:
        ctx.problem(path, "a table needs 'rows' or 'file'")
    rows: list[ast.TableRow] = []
    seen: dict[tuple[str, str], str] = {}
    files: list[str] = []
    if "file" in raw:
        where = join(path, "file")
        file_name = raw["file"]
        if not isinstance(file_name, str) or not file_name.strip():
            ctx.problem(where, "expected a file name (.csv, .yaml, .yml or .json)")
        else:
            found = _read_file(file_name.strip(), where, ctx, base_dir)
            if found is not None:
                resolved, data = found
                files.append(str(resolved))
                file_data.append(str(resolved).encode() + b"\0" + data)
                _file_rows(file_name.strip(), data, where, ctx, rows, seen)
    if "rows" in raw:
        where = join(path, "rows")
        if not isinstance(raw["rows"], list) or not raw["rows"]:
            ctx.problem(where, "expected a non-empty list of {role, type, actions}")
        else:
            _mapping_rows(raw["rows"], where, ctx, rows, seen)
    condition = block(raw.get("allow"), join(path, "allow"), ctx)
    role_conditions = _role_conditions(raw.get("roles"), join(path, "roles"), ctx, rows)
    return ast.PermissionTable(
        name=name,
        position=position,
        path=path,
        rows=tuple(rows),
        condition=condition,
        role_conditions=role_conditions,
        files=tuple(files),
        description=texts.get("description") or "",
        message=texts.get("message"),
        hint=texts.get("hint"),
    )


def _read_file(
    name: str, where: str, ctx: ParseContext, base_dir: Path | None
) -> tuple[Path, bytes] | None:
    path = Path(name)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if path.suffix.lower() not in _CSV_SUFFIXES + _DATA_SUFFIXES:
        ctx.problem(where, f"{name}: a table file is .csv, .yaml, .yml or .json")
        return None
    try:
        return path, path.read_bytes()
    except OSError as exc:
        ctx.problem(where, f"cannot read table file {name}: {exc.strerror or exc}")
        return None


def _file_rows(
    name: str,
    data: bytes,
    where: str,
    ctx: ParseContext,
    rows: list[ast.TableRow],
    seen: dict[tuple[str, str], str],
) -> None:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        ctx.problem(where, f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})")
        return
    if Path(name).suffix.lower() in _CSV_SUFFIXES:
        _csv_rows(name, text, ctx, rows, seen)
        return
    try:
        document = yamlio.loads(text)
    except yamlio.YamlProblem as exc:
        ctx.problem(name, str(exc.problem))
        return
    if not isinstance(document, list) or not document:
        ctx.problem(name, "expected a non-empty list of {role, type, actions}")
        return
    _mapping_rows(document, name, ctx, rows, seen)


def _csv_rows(
    name: str,
    text: str,
    ctx: ParseContext,
    rows: list[ast.TableRow],
    seen: dict[tuple[str, str], str],
) -> None:
    lines = (line for line in io.StringIO(text, newline=""))
    reader = csv.reader(_skip_comments(lines), strict=True)
    columns: dict[str, int] | None = None
    try:
        for record in reader:
            if not record:
                continue
            where = f"{name}:{reader.line_num}"
            if columns is None:
                columns = _header(record, where, ctx)
                if columns is None:
                    return
                continue
            if len(record) != len(columns):
                ctx.problem(where, f"expected {len(columns)} fields, found {len(record)}")
                continue
            role, kind, actions = (record[columns[c]].strip() for c in ROW_KEYS)
            _add_row(role, kind, actions.split(), where, ctx, rows, seen)
    except csv.Error as exc:
        ctx.problem(f"{name}:{reader.line_num}", f"malformed CSV: {exc}")
        return
    if columns is None:
        ctx.problem(name, "empty table file: expected the header role,type,actions")
    elif not any(row.where.startswith(f"{name}:") for row in rows):
        ctx.problem(name, "the table file has a header but no rows")


def _skip_comments(lines: Any) -> Any:
    """Blank and ``#`` lines become empty records, so line numbers stay exact."""
    for line in lines:
        stripped = line.strip()
        yield "" if not stripped or stripped.startswith("#") else line


def _header(record: list[str], where: str, ctx: ParseContext) -> dict[str, int] | None:
    names = [c.strip().lower() for c in record]
    columns = {name: i for i, name in enumerate(names)}
    bad = [n for n in names if n not in ROW_KEYS]
    if bad or len(columns) != len(names) or set(columns) != set(ROW_KEYS):
        ctx.problem(
            where,
            f"the header must name the columns role,type,actions once each (found {record!r})",
        )
        return None
    return columns


def _mapping_rows(
    items: list[Any],
    path: str,
    ctx: ParseContext,
    rows: list[ast.TableRow],
    seen: dict[tuple[str, str], str],
) -> None:
    for i, item in enumerate(items):
        where = f"{path}[{i}]"
        if not isinstance(item, dict):
            ctx.problem(where, "expected a mapping {role, type, actions}")
            continue
        for key in item:
            if key not in ROW_KEYS:
                unknown(ctx, join(where, str(key)), str(key), ROW_KEYS, "row key")
        role, kind = item.get("role"), item.get("type")
        if not isinstance(role, str) or not isinstance(kind, str):
            ctx.problem(where, "'role' and 'type' are required strings")
            continue
        actions = strings(item.get("actions"), join(where, "actions"), ctx)
        _add_row(role.strip(), kind.strip(), actions, where, ctx, rows, seen)


def _add_row(
    role: str,
    kind: str,
    actions: list[str],
    where: str,
    ctx: ParseContext,
    rows: list[ast.TableRow],
    seen: dict[tuple[str, str], str],
) -> None:
    if not role or not kind or not actions:
        ctx.problem(where, "a row needs a role, a type and at least one action")
        return
    key = (role, kind)
    first = seen.get(key)
    if first is not None:
        ctx.problem(where, f"duplicate row for role {role!r} and type {kind!r} (first at {first})")
        return
    seen[key] = where
    intern = sys.intern
    rows.append(ast.TableRow(intern(role), intern(kind), frozenset(map(intern, actions)), where))


def _role_conditions(
    raw: Any, path: str, ctx: ParseContext, rows: list[ast.TableRow]
) -> dict[str, ast.All]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        ctx.problem(path, "expected a mapping of role name to condition block")
        return {}
    with_rows = {row.role for row in rows}
    conditions: dict[str, ast.All] = {}
    for role, body in raw.items():
        where = join(path, str(role))
        if not isinstance(role, str) or not role.strip():
            ctx.problem(where, "expected a role name")
            continue
        if role not in with_rows:
            ctx.warn(where, f"role {role!r} has conditions but no row of the table")
        conditions[sys.intern(role)] = block(body, where, ctx)
    return conditions
