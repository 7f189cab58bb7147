"""Policy AST -> compiled rules: checks, plus one generated Python function per rule.

A rule's function returns ``NOT_APPLICABLE`` when the request is outside the rule's
resources, ``PASSED`` when every criterion holds, or the index of the first criterion that
fails (criteria are ordered identity-first, so a larger index means the request came
closer to being allowed by this rule). Simple criteria are spliced in as expressions;
the rest are called. Constants are bound by name, never written into the source, so
nothing from a policy file is ever executed as code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..errors import PolicyError
from ..model import AccessRequest, Effect
from . import ast
from .cel import CelCheck, CelRuntime
from .checks import Check, Test
from .codegen import first_failure, predicate
from .combinators import AllCheck, AnyCheck, LevelCheck, NotCheck
from .leaves_context import (
    DeviceFlagCheck,
    DeviceMinOsCheck,
    DeviceOsCheck,
    IpRangesCheck,
    JitGrantCheck,
    MinTrustCheck,
    RegionsCheck,
    TimeWindowCheck,
)
from .leaves_identity import (
    AuthenticatedCheck,
    AuthMethodsCheck,
    ClaimCheck,
    GroupsCheck,
    MaxAgeCheck,
    MfaCheck,
    RolesCheck,
    ServicesCheck,
    UsersCheck,
)
from .leaves_request import (
    ActionsCheck,
    HeaderCheck,
    HostsCheck,
    MethodsCheck,
    PathsCheck,
    RelationCheck,
    ResourceAttrCheck,
    ResourceTypesCheck,
    host_matcher,
    path_matcher,
)

NOT_APPLICABLE = -2
PASSED = -1
_PINS = ((False, False), (False, True), (True, False), (True, True))

_LEAVES: dict[type[ast.Node], type[Check]] = {
    ast.Authenticated: AuthenticatedCheck,
    ast.Users: UsersCheck,
    ast.Groups: GroupsCheck,
    ast.Roles: RolesCheck,
    ast.Services: ServicesCheck,
    ast.Claim: ClaimCheck,
    ast.Mfa: MfaCheck,
    ast.AuthMethods: AuthMethodsCheck,
    ast.MaxAge: MaxAgeCheck,
    ast.DeviceFlag: DeviceFlagCheck,
    ast.DeviceOs: DeviceOsCheck,
    ast.DeviceMinOs: DeviceMinOsCheck,
    ast.IpRanges: IpRangesCheck,
    ast.Regions: RegionsCheck,
    ast.TimeWindow: TimeWindowCheck,
    ast.MinTrust: MinTrustCheck,
    ast.JitGrant: JitGrantCheck,
    ast.Actions: ActionsCheck,
    ast.Methods: MethodsCheck,
    ast.Paths: PathsCheck,
    ast.Hosts: HostsCheck,
    ast.Header: HeaderCheck,
    ast.ResourceTypes: ResourceTypesCheck,
    ast.ResourceAttr: ResourceAttrCheck,
    ast.Relation: RelationCheck,
}


Pin = tuple[bool, bool]
Evaluate = Callable[[AccessRequest], int]


class RuleShape(NamedTuple):
    """What explaining a deny needs of an allow rule; rules alike share one (so a deny in a
    large policy touches no per-rule data but the rule's name)."""

    checks: tuple[Check, ...]
    hint: str | None
    message: str | None
    specific: bool


class _Variants(Mapping[Pin, "Evaluate"]):
    """A rule's generated functions per pin, built on first use (most never are: the
    index evaluates candidates through ``verity.policy.dispatch``)."""

    __slots__ = ("_built", "_compiler", "_rule", "_shape")

    def __init__(self, compiler: Compiler, rule: ast.Rule, shape: object) -> None:
        self._compiler = compiler
        self._rule = rule
        self._shape = shape
        self._built: dict[Pin, Evaluate] | None = None  # no dict per rule until used

    def __getitem__(self, pin: Pin) -> Evaluate:
        built = self._built
        if built is None:
            built = self._built = {}
        function = built.get(pin)
        if function is None:
            targets = _pinned(self._rule.targets, pin)
            function = self._compiler.variant(self._rule, self._shape, targets)
            built[pin] = function
        return function

    def __iter__(self) -> Iterator[Pin]:
        return iter(_PINS)

    def __len__(self) -> int:
        return len(_PINS)


class _Pinned(Mapping[Pin, "tuple[ast.Target, ...] | None"]):
    """``_pinned`` of a rule's selectors, computed when asked (when a group of the index
    is generated: rarely, and never for most rules)."""

    __slots__ = ("_targets",)

    def __init__(self, targets: tuple[ast.Target, ...]) -> None:
        self._targets = targets

    def __getitem__(self, pin: Pin) -> tuple[ast.Target, ...] | None:
        return _pinned(self._targets, pin)

    def __iter__(self) -> Iterator[Pin]:
        return iter(_PINS)

    def __len__(self) -> int:
        return len(_PINS)


class _TargetTest:
    """A rule's selector test (for ``explain``), generated on first call."""

    __slots__ = ("_compiler", "_targets", "_test")

    def __init__(self, compiler: Compiler, targets: tuple[ast.Target, ...]) -> None:
        self._compiler = compiler
        self._targets = targets
        self._test: Test | None = None

    def __call__(self, request: AccessRequest) -> bool:
        if self._test is None:
            self._test = self._compiler.target_test(self._targets)
        return self._test(request)


@dataclass(frozen=True, slots=True, eq=False)
class CompiledRule:
    """A rule ready to evaluate.

    ``variants[pin]`` is the generated function for a request that the index has already
    matched on exact host (``pin[0]``) and/or exact resource type (``pin[1]``): it tests
    only the rest of the resource selector, then the conditions. Rules that differ only
    in resources share the generated code of their conditions, and rules that differ only
    in their constants share the compiled code (``verity.policy.codegen``). Variants,
    pinned selectors and the selector test are built on first use, so compiling a rule
    costs its checks and little else.
    """

    index: int
    name: str
    effect: Effect
    rule: ast.Rule
    checks: tuple[Check, ...]
    targets: Callable[[AccessRequest], bool]
    variants: Mapping[Pin, Evaluate]
    pinned: Mapping[Pin, tuple[ast.Target, ...] | None]
    """The selectors left to test for each pin (None: nothing left)."""
    shape: RuleShape

    @property
    def specific(self) -> bool:
        """The rule names resources (it is not a catch-all): preferred to explain a deny."""
        return self.shape.specific

    def evaluate(self, request: AccessRequest) -> int:
        """``NOT_APPLICABLE``, ``PASSED`` or the index of the first failing check."""
        return self.variants[False, False](request)


class Compiler:
    """Turns one validated policy into compiled rules, sharing compiled access levels,
    the checks of identical conditions and the generated code of alike rules."""

    def __init__(self, policy: ast.Policy, cel: CelRuntime) -> None:
        self.policy = policy
        self.cel = cel
        self.levels: dict[str, AllCheck] = {}
        self._conditions: dict[object, tuple[list[str], dict[str, object]]] = {}
        self._checks: dict[object, tuple[Check, ...]] = {}
        self._shape_keys: dict[object, object] = {}
        self._criteria: dict[object, Check] = {}
        self._shapes: dict[RuleShape, RuleShape] = {}
        self._functions: dict[object, Evaluate] = {}
        self._targets: dict[object, Test] = {}

    def compile_rules(self) -> tuple[CompiledRule, ...]:
        return tuple(self.rule(rule) for rule in self.policy.rules)

    def rule(self, rule: ast.Rule) -> CompiledRule:
        # One description per distinct condition is kept, not one per rule.
        parts = tuple(structure(child) for child in rule.condition.children)
        described = ("All", parts)  # == structure(rule.condition)
        shape = self._shape_keys.setdefault(described, described)
        checks = self._checks.get(shape)
        if checks is None:
            checks = self._checks[shape] = tuple(
                self._shared_check(child, part)
                for child, part in zip(rule.condition.children, parts, strict=True)
            )
        specific = any(
            t.hosts or t.types or t.actions or t.methods or t.paths for t in rule.targets
        )
        found = RuleShape(checks, rule.hint, rule.message, specific)
        rule_shape = self._shapes.setdefault(found, found)
        return CompiledRule(
            rule.index,
            rule.name,
            rule.effect,
            rule,
            checks,
            _TargetTest(self, rule.targets),
            _Variants(self, rule, shape),
            _Pinned(rule.targets),
            rule_shape,
        )

    def variant(
        self, rule: ast.Rule, shape: object, targets: tuple[ast.Target, ...] | None
    ) -> Evaluate:
        """The generated function of a rule's condition behind the selectors ``targets``."""
        key = (shape, None if targets is None else tuple(structure(t) for t in targets))
        function = self._functions.get(key)
        if function is None:
            conditions = self._conditions.get(shape)
            if conditions is None:
                conditions = self._conditions[shape] = _expressions(self._checks[shape])
            expressions, bindings = conditions
            guard = None
            if targets is not None:
                guard, target_bindings = targets_expression(targets)
                bindings = {**bindings, **target_bindings}
            function = first_failure(expressions, bindings, f"rule {rule.name!r}", guard)
            self._functions[key] = function
        return function

    def target_test(self, targets: Sequence[ast.Target]) -> Test:
        """The generated test of a rule's selectors (any selector may match)."""
        key = tuple(structure(t) for t in targets)
        test = self._targets.get(key)
        if test is None:
            expression, bindings = targets_expression(targets)
            test = predicate(expression, bindings, "resources")
            self._targets[key] = test
        return test

    def _shared_check(self, node: ast.Node, described: object) -> Check:
        """One check for equal criteria of different rules (the time window every rule
        of a role repeats): fewer objects for a request to touch. Decisions do not show
        a check's key path; ``explain`` builds fresh checks (``checks``)."""
        check = self._criteria.get(described)
        if check is None:
            check = self._criteria[described] = self.check(node)
        return check

    def checks(self, condition: ast.All) -> tuple[Check, ...]:
        """Fresh checks for a rule's condition (their traces carry this rule's key paths)."""
        return tuple(self.check(node) for node in condition.children)

    def check(self, node: ast.Node) -> Check:
        leaf = _LEAVES.get(type(node))
        if leaf is not None:
            return leaf(node)
        if isinstance(node, ast.AnyOf):
            return AnyCheck(node, [self.check(c) for c in node.children])  # type: ignore[arg-type]
        if isinstance(node, ast.All):
            return AllCheck(node, [self.check(c) for c in node.children])
        if isinstance(node, ast.Not):
            return NotCheck(node, self.check(node.child))
        if isinstance(node, ast.LevelRef):
            return LevelCheck(node, self.level(node.name))
        if isinstance(node, ast.Cel):
            return CelCheck(node, self.cel)
        raise PolicyError(f"no compiled form for {type(node).__name__}")

    def level(self, name: str) -> AllCheck:
        compiled = self.levels.get(name)
        if compiled is None:
            body = self.policy.access_levels[name]
            compiled = AllCheck(body, [self.check(c) for c in body.children])
            self.levels[name] = compiled
        return compiled


def _pinned(targets: tuple[ast.Target, ...], pin: Pin) -> tuple[ast.Target, ...] | None:
    """The selectors left to test once the index matched host/type exactly (None: nothing)."""
    if len(targets) != 1 or pin == (False, False):
        rest = targets
    else:
        (target,) = targets
        rest = (
            dataclasses.replace(
                target,
                hosts=() if pin[0] else target.hosts,
                types=frozenset() if pin[1] else target.types,
            ),
        )
    if all(not (t.hosts or t.types or t.actions or t.methods or t.paths) for t in rest):
        return None
    return rest


def _expressions(checks: Sequence[Check]) -> tuple[list[str], dict[str, object]]:
    expressions: list[str] = []
    bindings: dict[str, object] = {}
    for i, check in enumerate(checks):
        expression, bound = check.expression(f"_c{i}")
        expressions.append(expression)
        bindings.update(bound)
    return expressions, bindings


def _direct(value: object) -> object:
    return value


def _scalar(value: object) -> object:
    return (type(value).__name__, value)


def _children(value: Any) -> object:
    return tuple(structure(child) for child in value)


def _mapping(value: Any) -> object:
    return tuple(sorted((str(k), _scalar(v)) for k, v in value.items()))


# How ``structure`` treats a field, by its declared type. Fields of one declared type hold
# values of that type only (the parser builds them), so sets and tuples of strings, ints
# and networks are their own description; scalars keep their type (``True == 1``); values
# of any type (claims, resource attributes) are described element by element.
_BY_TYPE: dict[str, Callable[[Any], object]] = {
    "str": _direct,
    "frozenset[str]": _direct,
    "tuple[str, ...]": _direct,
    "frozenset[int]": _direct,
    "tuple[Network, ...]": _direct,
    "bool": _scalar,
    "int": _scalar,
    "Mapping[str, str]": _mapping,
    "tuple[Node, ...]": _children,
}
_PLANS: dict[type, tuple[tuple[str, Callable[[Any], object]], ...]] = {}


def _plan(kind: type) -> tuple[tuple[str, Callable[[Any], object]], ...]:
    plan = _PLANS.get(kind)
    if plan is None:
        plan = _PLANS[kind] = tuple(
            (f.name, _BY_TYPE.get(str(f.type), structure))
            for f in dataclasses.fields(kind)
            if f.name != "path"
        )
    return plan


def structure(node: object) -> object:
    """A hashable description of a node without its key paths: equal for rules that
    differ only in where they were written. Scalars keep their type, because Python
    says ``True == 1 == 1.0`` while the policy language does not."""
    kind = type(node)
    if kind is str:
        return ("str", node)
    if isinstance(node, ast.Node | ast.Target):
        return (kind.__name__, *(describe(getattr(node, name)) for name, describe in _plan(kind)))
    if isinstance(node, Mapping):
        return tuple(sorted((str(k), structure(v)) for k, v in node.items()))
    if isinstance(node, tuple | list):
        return tuple(structure(v) for v in node)
    if isinstance(node, frozenset | set):
        return frozenset(structure(v) for v in node)
    return (type(node).__name__, node)


def targets_expression(
    targets: Sequence[ast.Target], prefix: str = "_t"
) -> tuple[str, dict[str, object]]:
    """An expression for a rule's resource selectors (any selector may match)."""
    expressions: list[str] = []
    bindings: dict[str, object] = {}
    for i, target in enumerate(targets):
        parts = _target_parts(target, f"{prefix}{i}", bindings)
        expressions.append(" and ".join(parts) if parts else "True")
    return " or ".join(f"({e})" for e in expressions), bindings


def _target_parts(target: ast.Target, name: str, bindings: dict[str, object]) -> list[str]:
    parts: list[str] = []
    if target.types:
        bindings[f"{name}_types"] = target.types
        parts.append(f"r.resource.type in {name}_types")
    if target.actions:
        bindings[f"{name}_actions"] = target.actions
        parts.append(f"r.action in {name}_actions")
    if target.hosts:
        bindings[f"{name}_hosts"] = host_matcher(target.hosts)
        parts.append(f"{name}_hosts(r)")
    if target.methods:
        bindings[f"{name}_methods"] = target.methods
        parts.append(f"(r.http is not None and r.http.method in {name}_methods)")
    if target.paths:
        bindings[f"{name}_paths"] = path_matcher(target.paths)
        parts.append(f"{name}_paths(r)")
    return parts
