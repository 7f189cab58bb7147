"""Kubernetes label selectors (``matchLabels`` and ``matchExpressions``), exactly.

A selector is the AND of its requirements; ``matchLabels: {k: v}`` is ``k In (v)``. An empty
selector (``{}``) matches everything; whether an *absent* selector matches everything or
nothing depends on the field, so callers keep ``None`` for absent.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._fields import Invalid, items, join, labels, mapping, string


class Operator(enum.Enum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


@dataclass(frozen=True, slots=True)
class Requirement:
    """One requirement: ``key operator values``."""

    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        if self.operator is Operator.IN:
            return value is not None and value in self.values
        if self.operator is Operator.NOT_IN:  # an absent label is "not in" any set
            return value is None or value not in self.values
        if self.operator is Operator.EXISTS:
            return value is not None
        return value is None


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """The AND of ``requirements``; no requirement matches every label set."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements

    @property
    def keys(self) -> frozenset[str]:
        """The label keys this selector reads (the only ones that can change its answer)."""
        return frozenset(r.key for r in self.requirements)

    def __str__(self) -> str:
        if not self.requirements:
            return "{}"
        return ", ".join(_describe(r) for r in self.requirements)


def _describe(requirement: Requirement) -> str:
    values = ",".join(sorted(requirement.values))
    if requirement.operator is Operator.IN and len(requirement.values) == 1:
        return f"{requirement.key}={values}"
    if requirement.operator is Operator.IN:
        return f"{requirement.key} in ({values})"
    if requirement.operator is Operator.NOT_IN:
        return f"{requirement.key} notin ({values})"
    if requirement.operator is Operator.EXISTS:
        return requirement.key
    return f"!{requirement.key}"


MATCH_ALL = LabelSelector()


def parse_selector(data: Any, path: str) -> LabelSelector:
    """Read a ``LabelSelector`` mapping; every problem names its key path."""
    body = mapping(data, path)
    unknown = set(body) - {"matchLabels", "matchExpressions"}
    if unknown:
        raise Invalid(join(path, sorted(map(str, unknown))[0]), "unknown selector field")
    requirements = [
        Requirement(key, Operator.IN, frozenset({value}))
        for key, value in labels(body.get("matchLabels"), join(path, "matchLabels")).items()
    ]
    expressions_path = join(path, "matchExpressions")
    for index, expression in enumerate(items(body.get("matchExpressions"), expressions_path)):
        requirements.append(_expression(expression, join(expressions_path, index)))
    return LabelSelector(tuple(requirements))


def _expression(data: Any, path: str) -> Requirement:
    body = mapping(data, path, optional=False)
    key = string(body.get("key"), join(path, "key"))
    raw_operator = body.get("operator")
    try:
        operator = Operator(raw_operator)
    except ValueError:
        raise Invalid(
            join(path, "operator"),
            f"expected In, NotIn, Exists or DoesNotExist, got {raw_operator!r}",
        ) from None
    values_path = join(path, "values")
    values = [
        string(v, join(values_path, i))
        for i, v in enumerate(items(body.get("values"), values_path))
    ]
    if operator in (Operator.IN, Operator.NOT_IN) and not values:
        raise Invalid(values_path, f"{operator.value} needs at least one value")
    if operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST) and values:
        raise Invalid(values_path, f"{operator.value} takes no values")
    return Requirement(key, operator, frozenset(values))
