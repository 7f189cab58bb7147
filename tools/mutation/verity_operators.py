"""Verity's mutation operators, added to cosmic-ray's core set.

cosmic-ray has no operator that changes a string literal, drops a statement or flips a
membership test, and those are the mutants a security core most needs to kill: a header name
missing from a strip list, a dropped ``raise`` on a failed check, ``in`` turned into
``not in``. Each operator follows cosmic-ray's ``Operator`` protocol (positions, then one
mutation per position) so the engine applies and reverts them like its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import cosmic_ray.plugins
import parso.python.tree as pt
from cosmic_ray.operators.operator import Example, Operator

Position = tuple[tuple[int, int], tuple[int, int]]

_QUOTES = ('"""', "'''", '"', "'")


def _bare_string_statement(node: Any) -> bool:
    """A string that is a whole expression statement: a docstring, which no test should pin."""
    parent = node.parent
    if parent is not None and parent.type == "strings":
        node, parent = parent, parent.parent
    return parent is not None and parent.type == "simple_stmt" and parent.children[0] is node


class ReplaceString(Operator):
    """``"cookie"`` becomes ``"XXcookieXX"``: an entry of a list or set is as good as removed,
    a compared value no longer matches, a header name no longer names the header."""

    def mutation_positions(self, node: Any) -> Iterator[Position]:
        if isinstance(node, pt.String) and not _bare_string_statement(node):
            yield (node.start_pos, node.end_pos)

    def mutate(self, node: Any, index: int) -> Any:
        value: str = node.value
        for quote in _QUOTES:
            start = value.find(quote)
            if start >= 0 and value.endswith(quote) and len(value) >= start + 2 * len(quote):
                prefix = value[:start]
                body = value[start + len(quote) : len(value) - len(quote)]
                node.value = f"{prefix}{quote}XX{body}XX{quote}"
                return node
        return node

    @classmethod
    def examples(cls) -> tuple[Example, ...]:
        return (
            Example('x = "cookie"', 'x = "XXcookieXX"'),
            Example("x = b'a'", "x = b'XXaXX'"),
        )


_DELETABLE_CALL_TYPES = frozenset({"atom_expr", "power"})


def _deletable(node: Any) -> bool:
    parent = node.parent
    if parent is None or parent.type != "simple_stmt" or parent.children[0] is not node:
        return False
    if node.type in _DELETABLE_CALL_TYPES:
        # a call (or an awaited call) standing alone as a statement
        return node.children[-1].type == "trailer" and node.children[-1].children[0].value == "("
    if node.type in ("raise_stmt", "del_stmt"):
        return True
    if node.type == "expr_stmt":
        target = node.children[0]
        operator = node.children[1]
        if operator.type != "operator":  # an annotated assignment: `x: int = 1`
            return False
        augmented = operator.value != "="
        # d[k] = v, obj.attr = v and x += 1 change state; a plain `x = v` only unbinds a name,
        # which fails loudly with NameError and tells nothing about the tests.
        return augmented or (target.type in _DELETABLE_CALL_TYPES and operator.value == "=")
    return False


class DeleteStatement(Operator):
    """A call standing alone, a ``raise``, a ``del``, an item or attribute assignment or an
    augmented assignment becomes ``pass``: a dropped check, a dropped strip, a dropped
    counter update."""

    def mutation_positions(self, node: Any) -> Iterator[Position]:
        if _deletable(node):
            yield (node.start_pos, node.end_pos)

    def mutate(self, node: Any, index: int) -> Any:
        return pt.Keyword("pass", node.start_pos, prefix=node.get_first_leaf().prefix)

    @classmethod
    def examples(cls) -> tuple[Example, ...]:
        return (
            Example("h.pop('cookie')\n", "pass\n"),
            Example("raise ValueError('x')\n", "pass\n"),
            Example("d['a'] = 1\n", "pass\n"),
            Example("n += 1\n", "pass\n"),
        )


class ReplaceMembership(Operator):
    """``in`` becomes ``not in`` and ``not in`` becomes ``in`` in a comparison."""

    def mutation_positions(self, node: Any) -> Iterator[Position]:
        parent = node.parent
        if parent is None or parent.type != "comparison":
            return
        negated = node.type == "comp_op" and [c.value for c in node.children] == ["not", "in"]
        if negated or (isinstance(node, pt.Keyword) and node.value == "in"):
            yield (node.start_pos, node.end_pos)

    def mutate(self, node: Any, index: int) -> Any:
        prefix = node.get_first_leaf().prefix
        if node.type == "comp_op":
            return pt.Keyword("in", node.start_pos, prefix=prefix)
        return pt.Keyword("not in", node.start_pos, prefix=prefix)

    @classmethod
    def examples(cls) -> tuple[Example, ...]:
        return (Example("x in y", "x not in y"), Example("x not in y", "x in y"))


OPERATORS: dict[str, type[Operator]] = {
    "ReplaceString": ReplaceString,
    "DeleteStatement": DeleteStatement,
    "ReplaceMembership": ReplaceMembership,
}


class VerityOperatorProvider:
    """A cosmic-ray operator provider (the protocol of ``cosmic_ray.plugins``)."""

    def __iter__(self) -> Iterator[str]:
        return iter(OPERATORS)

    def __getitem__(self, name: str) -> type[Operator]:
        return OPERATORS[name]


def register() -> None:
    """Add the provider under the name ``verity`` (operators ``verity/ReplaceString``...)."""
    cosmic_ray.plugins.OPERATOR_PROVIDERS["verity"] = VerityOperatorProvider()
