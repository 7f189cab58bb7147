"""``all``, ``any``, ``not`` and access-level references, over compiled child checks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..model import AccessRequest
from . import ast
from .checks import Check, Failure, Test, Trace
from .codegen import predicate


def _join(children: Sequence[Check], name: str, joiner: str) -> tuple[str, dict[str, object]]:
    parts: list[str] = []
    bindings: dict[str, object] = {}
    for i, child in enumerate(children):
        expression, bound = child.expression(f"{name}_{i}")
        parts.append(f"({expression})")
        bindings.update(bound)
    return f" {joiner} ".join(parts), bindings


class AllCheck(Check):
    code = "all"
    node: ast.All

    def __init__(self, node: ast.All, children: Sequence[Check]) -> None:
        self.children = tuple(children)
        super().__init__(node)

    joiner = "and"

    def build(self) -> Test:
        if len(self.children) == 1:
            return self.children[0].test
        expression, bindings = self._joined("_c")
        return predicate(expression, bindings, f"{self.code} {self.node.path}")

    def _joined(self, name: str) -> tuple[str, dict[str, object]]:
        if not self.children:
            return ("True" if self.joiner == "and" else "False"), {}
        return _join(self.children, name, self.joiner)

    def inline(self, name: str) -> tuple[str, Mapping[str, object]] | None:
        return self._joined(name)

    def first_failing(self, request: AccessRequest) -> Check | None:
        for child in self.children:
            if not child.test(request):
                return child
        return None

    def expected(self) -> str:
        if len(self.children) == 1:
            return self.children[0].expected()
        return (
            "all of: " + "; ".join(c.expected() for c in self.children)
            if self.children
            else "anything"
        )

    def observed(self, request: AccessRequest) -> str:
        failing = self.first_failing(request)
        return "all hold" if failing is None else f"{failing.expected()} does not hold"

    def failure(self, request: AccessRequest) -> Failure:
        failing = self.first_failing(request)
        if failing is None:
            return Failure(self.code, "all conditions hold")
        return failing.failure(request)

    def leaf(self, request: AccessRequest) -> Check:
        failing = self.first_failing(request) if self.joiner == "and" else None
        if failing is None:
            return self.children[0].leaf(request) if self.children else self
        return failing.leaf(request)

    def trace(self, request: AccessRequest) -> Trace:
        children = tuple(c.trace(request) for c in self.children)
        return Trace(
            self.node.path,
            self.code,
            all(t.passed for t in children),
            self.expected(),
            self.observed(request),
            children,
        )


class AnyCheck(AllCheck):
    code = "any"
    joiner = "or"
    node: ast.AnyOf  # type: ignore[assignment]

    def expected(self) -> str:
        return "any of: " + " | ".join(c.expected() for c in self.children)

    def observed(self, request: AccessRequest) -> str:
        passing = next((c for c in self.children if c.test(request)), None)
        return "none holds" if passing is None else f"{passing.expected()} holds"

    def failure(self, request: AccessRequest) -> Failure:
        failures = [c.failure(request) for c in self.children]
        first = failures[0]
        message = "; or ".join(f.message for f in failures)
        return Failure(
            first.code, f"none of the alternatives holds: {message}", first.hint, first.obligation
        )

    def trace(self, request: AccessRequest) -> Trace:
        children = tuple(c.trace(request) for c in self.children)
        return Trace(
            self.node.path,
            self.code,
            any(t.passed for t in children),
            self.expected(),
            self.observed(request),
            children,
        )


class NotCheck(Check):
    code = "not"
    node: ast.Not

    def __init__(self, node: ast.Not, child: Check) -> None:
        self.child = child
        super().__init__(node)

    def build(self) -> Test:
        inner = self.child
        while isinstance(inner, AllCheck) and len(inner.children) == 1:
            inner = inner.children[0]
        self.inner = inner
        self.code = f"not.{inner.code}"
        test = self.child.test
        return lambda r: not test(r)

    def inline(self, name: str) -> tuple[str, Mapping[str, object]] | None:
        expression, bindings = self.child.expression(name)
        return f"not ({expression})", bindings

    def expected(self) -> str:
        return f"not ({self.child.expected()})"

    def observed(self, request: AccessRequest) -> str:
        return self.inner.observed(request)

    def message(self, request: AccessRequest) -> str:
        return f"must not match: {self.inner.expected()} (observed: {self.inner.observed(request)})"

    def trace(self, request: AccessRequest) -> Trace:
        inner = self.child.trace(request)
        return Trace(
            self.node.path,
            self.code,
            not inner.passed,
            self.expected(),
            self.observed(request),
            (inner,),
        )


class LevelCheck(Check):
    """A reference to a named access level; failures name the level."""

    node: ast.LevelRef

    def __init__(self, node: ast.LevelRef, level: AllCheck) -> None:
        self.level = level
        super().__init__(node)

    def build(self) -> Test:
        self.code = f"level.{self.node.name}"
        return self.level.test

    def inline(self, name: str) -> tuple[str, Mapping[str, object]] | None:
        return self.level.expression(name)

    def expected(self) -> str:
        return f"access level {self.node.name}"

    def observed(self, request: AccessRequest) -> str:
        return self.level.observed(request)

    def leaf(self, request: AccessRequest) -> Check:
        return self.level.leaf(request)

    def failure(self, request: AccessRequest) -> Failure:
        inner = self.level.failure(request)
        return Failure(
            inner.code,
            f"{inner.message} [access level {self.node.name}]",
            inner.hint,
            inner.obligation,
        )

    def trace(self, request: AccessRequest) -> Trace:
        inner = self.level.trace(request)
        return Trace(
            self.node.path, self.code, inner.passed, self.expected(), inner.observed, inner.children
        )
