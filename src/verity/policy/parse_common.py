"""What the policy parsers share: the parse context, problem reporting, small readers."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import Problem
from . import ast


@dataclass
class ParseContext:
    """What condition parsing needs to know about the rest of the document."""

    problems: list[Problem]
    level_names: frozenset[str] = frozenset()
    cel_check: Callable[[str], None] | None = None
    levels_used: set[str] = field(default_factory=set)
    warnings: list[Problem] = field(default_factory=list)
    memo: dict[Any, Any] = field(default_factory=dict)
    """Parsed forms of values that parsed without a problem, by a key of their input."""
    values: dict[Any, Any] = field(default_factory=dict)
    """Equal values seen so far (sets of roles, regions, days...), so that a policy of
    many rules holds each once instead of once per rule."""

    def shared(self, value: Any) -> Any:
        """One object for equal values (``frozenset({"DE", "FR"})`` in every rule)."""
        return self.values.setdefault(value, value)

    def problem(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def warn(self, path: str, message: str) -> None:
        """Something that loads but probably does not mean what it says."""
        self.warnings.append(Problem(path, message))


Parser = Callable[[Any, str, ParseContext], list[ast.Node]]


def join(path: str, key: str | int) -> str:
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
        if isinstance(item, bool | dict | list) or item is None:
            where = join(path, i) if isinstance(value, list) else path
            ctx.problem(where, f"expected a string, got {type(item).__name__}")
            continue
        where = join(path, i) if isinstance(value, list) else path
        if isinstance(item, str) and not item.strip():
            # `roles: ""` would require a role named by the empty string: a typo, not a rule
            ctx.problem(where, "must not be an empty string")
            continue
        try:
            out.append(convert(item))
        except ValueError as exc:
            ctx.problem(where, str(exc))
    return out


def boolean(value: Any, path: str, ctx: ParseContext) -> bool | None:
    if not isinstance(value, bool):
        ctx.problem(path, f"expected true or false, got {value!r}")
        return None
    return value


def unknown(ctx: ParseContext, path: str, name: str, known: Any, what: str) -> None:
    """Report an unknown key with a did-you-mean suggestion."""
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    choices = ", ".join(known) if known else "none defined"
    ctx.problem(path, f"unknown {what} {name!r}{hint} (known: {choices})")
