"""Permission tables, compiled: two hash lookups, then the conditions of the rows found.

A table (``ast.PermissionTable``) is stored as ``role -> resource type -> row``. For a
request, each of the caller's roles is looked up, then the request's resource type; a
row found whose actions include the request's action is a candidate. Candidates are
tested in table order (so the deciding row does not depend on the order of a set of
roles), each with the compiled condition of its role: the table's ``allow`` block plus
that role's block. Rows whose roles have conditions of the same structure share one
compiled function, as rules alike do. The cost depends on the caller's roles, never on
the number of rows.

The decision's ``rule`` names the table and the row: ``grants[contractor,wiki-page]``.
How a table combines with the rules around it is the engine's (``Engine`` docstring):
deny rules override it, and among allows the first in policy order decides.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple

from ..errors import CelError
from ..model import AccessRequest, Effect
from . import ast
from .checks import Check, Trace, fmt_set
from .compiler import PASSED, CompiledRule, Compiler, structure

_MAX_NAMED_ROLES = 5


class Outcome(NamedTuple):
    """What a table says about a request: the granting row's name, or else the candidate
    row that came closest (and the index of its first failing criterion), and the first
    row whose condition could not be evaluated."""

    granted: str | None
    closest: Row | None = None
    at: int = -1
    failed: tuple[Row, CelError] | None = None


_NOTHING = Outcome(None)


class Row(NamedTuple):
    """A compiled row: its actions, its decision name, its place, its condition (``rule``,
    whose generated function is ``test``) and the outcome it grants (built once)."""

    actions: frozenset[str]
    name: str
    order: int
    rule: CompiledRule
    source: ast.TableRow
    test: Callable[[AccessRequest], int]
    granted: Outcome


def row_name(table: str, row: ast.TableRow) -> str:
    return f"{table}[{row.role},{row.type}]"


class CompiledTable:
    """One permission table ready to evaluate (see the module docstring)."""

    def __init__(self, table: ast.PermissionTable, compiler: Compiler) -> None:
        self.table = table
        self.name = table.name
        self.position = table.position
        self._compiler = compiler
        compiled: dict[object, CompiledRule] = {}

        def condition_of(role: str) -> CompiledRule:
            condition = self.condition(role)
            key = structure(condition)
            found = compiled.get(key)
            if found is None:
                found = compiled[key] = compiler.rule(self._as_rule(condition))
            return found

        by_role: dict[str, CompiledRule] = {}
        lookup: dict[str, dict[str, Row]] = defaultdict(dict)
        by_type: dict[str, list[ast.TableRow]] = defaultdict(list)
        for order, row in enumerate(table.rows):
            rule = by_role.get(row.role)
            if rule is None:
                rule = by_role[row.role] = condition_of(row.role)
            name = row_name(table.name, row)
            test = rule.variants[False, False]
            lookup[row.role][row.type] = Row(
                row.actions, name, order, rule, row, test, Outcome(name)
            )
            by_type[row.type].append(row)
        self._lookup: Mapping[str, Mapping[str, Row]] = dict(lookup)
        self._by_type: Mapping[str, Sequence[ast.TableRow]] = dict(by_type)
        self._pairs = frozenset((row.type, a) for row in table.rows for a in row.actions)

    def covers(self, kind: str | None, action: str | None) -> bool:
        """Some row is about ``action`` on ``kind`` (one set lookup)."""
        return (kind, action) in self._pairs

    def condition(self, role: str) -> ast.All:
        """The conditions of ``role``'s rows: the table's ``allow`` and the role's block."""
        extra = self.table.role_conditions.get(role)
        if extra is None:
            return self.table.condition
        return ast.All(self.table.condition.path, self.table.condition.children + extra.children)

    def _as_rule(self, condition: ast.All) -> ast.Rule:
        t = self.table
        return ast.Rule(
            index=t.position,
            name=t.name,
            effect=Effect.ALLOW,
            targets=(ast.Target(t.path),),
            condition=condition,
            path=t.path,
            description=t.description,
            message=t.message,
            hint=t.hint,
        )

    def evaluate(self, request: AccessRequest) -> Outcome:
        """Which row grants ``request``, or which came closest. A CEL error makes its row
        not grant, as in an allow rule."""
        lookup = self._lookup
        kind = request.resource.type
        action = request.action
        first: Row | None = None
        more: list[Row] | None = None
        for role in request.principal.roles:
            types = lookup.get(role)
            if types is None:
                continue
            row = types.get(kind)  # type: ignore[arg-type]
            if row is None or action not in row.actions:
                continue
            if first is None:
                first = row
            elif more is None:
                more = [first, row]
            else:
                more.append(row)
        if first is None:
            return _NOTHING
        if more is None:  # the usual case: one of the caller's roles has a row
            try:
                at = first.test(request)
            except CelError as exc:
                return Outcome(None, None, -1, (first, exc))
            return first.granted if at == PASSED else Outcome(None, first, at)
        more.sort(key=_order)
        closest: Row | None = None
        best = -1
        failed: tuple[Row, CelError] | None = None
        for row in more:
            try:
                at = row.test(request)
            except CelError as exc:
                if failed is None:
                    failed = (row, exc)
                continue
            if at == PASSED:
                return row.granted
            if at > best or closest is None:
                closest, best = row, at
        return Outcome(None, closest, best, failed)

    def grantors(self, kind: str | None, action: str | None) -> list[str]:
        """The roles whose rows grant ``action`` on ``kind`` (table order)."""
        if kind is None:
            return []
        return [row.role for row in self._by_type.get(kind, ()) if action in row.actions]

    def no_grant_message(self, request: AccessRequest) -> str:
        """Why no row of this table applies: who could, and which roles the caller has."""
        kind, action = request.resource.type, request.action
        roles = self.grantors(kind, action)
        held = fmt_set(request.principal.roles) if request.principal.roles else "none"
        what = f"{action or 'access'} on {kind or 'this resource'}"
        if not roles:
            return f"no role in table '{self.name}' grants {what}; you have roles: {held}"
        named = ", ".join(roles[:_MAX_NAMED_ROLES])
        more = len(roles) - _MAX_NAMED_ROLES
        if more > 0:
            named += f" and {more} more"
        noun = "role" if len(roles) == 1 else "roles"
        verb = "grants" if len(roles) == 1 else "grant"
        return f"{noun} {named} {verb} {what} (table '{self.name}'); you have roles: {held}"

    def explain(self, request: AccessRequest, *, all_rows: bool) -> list[Explained]:
        """Each row for the request's resource type and action (every row if
        ``all_rows``), with the role criterion and each condition's outcome."""
        rows: Iterable[ast.TableRow]
        if all_rows:
            rows = self.table.rows
        else:
            kind = request.resource.type
            rows = [] if kind is None else self._by_type.get(kind, ())
        out: list[Explained] = []
        roles = request.principal.roles
        for row in rows:
            applicable = row.type == request.resource.type and request.action in row.actions
            if not applicable and not all_rows:
                continue
            compiled = self._lookup[row.role][row.type]
            has_role = row.role in roles
            role_trace = Trace(
                f"{row.where}.role",
                "roles",
                has_role,
                f"role {row.role}",
                f"roles {fmt_set(roles)}" if roles else "no roles",
            )
            checks = self._compiler.checks(self.condition(row.role))
            out.append(Explained(row, compiled, applicable, role_trace, checks))
        return out


class Explained(NamedTuple):
    row: ast.TableRow
    compiled: Row
    applicable: bool
    role: Trace
    checks: tuple[Check, ...]


def _order(row: Row) -> int:
    return row.order


def compile_tables(policy: ast.Policy, compiler: Compiler) -> tuple[CompiledTable, ...]:
    """The policy's tables, compiled, in policy order."""
    return tuple(CompiledTable(table, compiler) for table in sorted(policy.tables, key=_position))


def _position(table: ast.PermissionTable) -> int:
    return table.position
