"""Compiled criteria: each AST node becomes a ``Check`` with a fast test and its own words.

A check knows three things about its criterion: how to test a request quickly (``test``,
and for simple criteria an inline Python expression the rule code generator splices in),
how to explain itself (``trace``: expected vs observed), and what to tell a denied person
(``failure``: message, hint, obligation).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from ..errors import CelError
from ..model import AccessRequest, ObligationKind
from . import ast

Test = Callable[[AccessRequest], bool]


@dataclass(frozen=True, slots=True)
class Trace:
    """One criterion's outcome for one request, for ``explain``."""

    path: str
    code: str
    passed: bool
    expected: str
    observed: str
    children: tuple[Trace, ...] = ()
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a criterion failed, in words for the person denied."""

    code: str
    message: str
    hint: str | None = None
    obligation: ObligationKind | None = None


class Check:
    """Base of every compiled criterion."""

    code: str = "criterion"
    hint: str | None = None
    obligation: ObligationKind | None = None

    def __init__(self, node: ast.Node) -> None:
        self.node = node
        self.test: Test = self.build()

    def build(self) -> Test:
        raise NotImplementedError

    def inline(self, name: str) -> tuple[str, Mapping[str, object]] | None:
        """A Python expression equivalent to ``test`` for the code generator, or None.

        It may use ``r`` (request), ``p`` (principal), ``d`` (device or None),
        ``n`` (network) and the names it binds, which must start with ``name``.
        """
        return None

    def expression(self, name: str) -> tuple[str, Mapping[str, object]]:
        """``inline`` when there is one, else a call of ``test`` bound as ``name``."""
        piece = self.inline(name)
        if piece is not None and all(key.startswith(name) for key in piece[1]):
            return piece
        return f"{name}(r)", {name: self.test}

    def expected(self) -> str:
        raise NotImplementedError

    def observed(self, request: AccessRequest) -> str:
        raise NotImplementedError

    def message(self, request: AccessRequest) -> str:
        return f"requires {self.expected()} (observed: {self.observed(request)})"

    def failure(self, request: AccessRequest) -> Failure:
        return Failure(self.code, self.message(request), self.hint, self.obligation)

    def leaf(self, request: AccessRequest) -> Check:
        """The criterion that a failure of this one comes down to (itself, for a leaf)."""
        return self

    def failure_message(self, request: AccessRequest) -> str:
        """The sentence for a denied person (never raises for a CEL error)."""
        try:
            return self.failure(request).message
        except CelError as exc:
            return f"a condition could not be evaluated ({exc.message})"

    def trace(self, request: AccessRequest) -> Trace:
        return Trace(
            self.node.path,
            self.code,
            bool(self.test(request)),
            self.expected(),
            self.observed(request),
        )


def fmt_set(values: Iterable[object]) -> str:
    """Values for a message: sets sorted, sequences in their order."""
    items = [str(v) for v in values]
    if isinstance(values, set | frozenset):
        items.sort()
    return ", ".join(items) if items else "(none)"
