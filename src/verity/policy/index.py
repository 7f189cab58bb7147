"""Rule index: which rules can possibly apply to a request, without looking at the rest.

Two levels.

1. **Resources.** Each resource selector is filed under a key (host, first path segment,
   resource type), with ``None`` for "any" in a dimension (wildcard hosts, globbed first
   segments and absent fields are ``None``). A request looks up the eight combinations of
   its own key and ``None``; the merged, ordered result is a ``Slot``, cached per key. A
   request whose host, segment or type no rule names is looked up as ``None`` in that
   dimension, so the cache holds at most one entry per combination of values that appear
   in the policy. Requests without HTTP (application authorisation) use a table of slots
   by resource type, filled at compile time.

2. **Equality criteria.** Within a slot, every rule is filed under its most selective
   *equality key*: a criterion of the form "attribute is one of these constants" -- the
   principal's roles, groups, user id or e-mail, sign-in methods; the request's action or
   HTTP method; the network region; the device's OS type -- from the rule's conditions
   or from its selectors (every selector naming actions, or methods). "Most selective"
   is the key whose values are named by the fewest rules in the whole policy. A rule
   with no equality key goes in the slot's catch-all group. A request probes the groups
   of the values it has (each of its roles, its action, ...), so it evaluates only the
   catch-all and the groups it can match: the cost depends on the rules that can match
   it, not on the size of the policy. Negative criteria (``not: {groups: [...]}``) are
   not keys.

A condition criterion is a key only when no criterion before it in the rule can raise
(a CEL condition, or a block containing one): a rule whose key does not match is then
known to fail *at* that criterion, without raising. That bound is what lets the engine
explain a deny exactly as a linear scan would (``Slot.closest``): the rules skipped by the
index can only have come as close as their key's position.

Each group is compiled, on first use, into one ``verity.policy.dispatch`` function that
evaluates its rules inline in policy order. The engine merges the outcomes of the groups
a request probes by policy order, so deny-overrides, first-match and the choice of the
closest rule are those of one scan over the whole slot (tested against the reference
interpreter and against a forced linear engine on random policies).
"""

from __future__ import annotations

import itertools
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..errors import CelError
from ..model import AccessRequest, Effect
from . import ast
from .compiler import CompiledRule, Pin
from .dispatch import Dispatch, generate

Key = tuple[str | None, str | None, str | None]
Evaluate = Callable[[AccessRequest], int]
EqKey = tuple[str, frozenset[str], int]
"""(dimension, values, position of the criterion in the rule, or -1 for a selector)."""

_MAX_CACHE = 65536
_SMALL_SLOT = 16  # a slot of at most this many rules is evaluated whole
_MIN_DIMENSION = 8  # a dimension fewer rules of a slot are keyed by joins the catch-all
_MAX_FOLDED = 32  # a catch-all of at most this many rules is evaluated in every group
_MAX_KEYS_PER_TARGET = 256
_NO_VALUES: tuple[str, ...] = ()


def _none(_: AccessRequest) -> tuple[str, ...]:
    return _NO_VALUES


def _probe_users(r: AccessRequest) -> tuple[Any, ...]:
    p = r.principal
    return (p.id, p.email)


def _probe_method(r: AccessRequest) -> tuple[str, ...]:
    return _NO_VALUES if r.http is None else (r.http.method,)


def _probe_os(r: AccessRequest) -> tuple[str, ...]:
    return _NO_VALUES if r.device is None else (r.device.os_type,)


# How a request is probed in each dimension: the values it has there. Each must agree
# exactly with its check (``x in values`` for every x the probe returns).
PROBES: dict[str, Callable[[AccessRequest], Iterable[Any]]] = {
    "role": lambda r: r.principal.roles,
    "group": lambda r: r.principal.groups,
    "user": _probe_users,
    "auth_method": lambda r: r.principal.auth_methods,
    "action": lambda r: (r.action,),
    "method": _probe_method,
    "region": lambda r: (r.network.region,),
    "os": _probe_os,
}
_CRITERIA: dict[type[ast.Node], str] = {
    ast.Roles: "role",
    ast.Groups: "group",
    ast.Users: "user",
    ast.AuthMethods: "auth_method",
    ast.Actions: "action",
    ast.Methods: "method",
    ast.Regions: "region",
    ast.DeviceOs: "os",
}


def first_segment(path: str) -> str:
    """``/docs/a/b`` -> ``docs``; ``/`` -> ``""``."""
    end = path.find("/", 1)
    return path[1:] if end < 0 else path[1:end]


def _literal_segment(pattern: str) -> str | None:
    segment = first_segment(pattern)
    return None if "*" in segment else segment


def equality_keys(rule: ast.Rule, levels: dict[str, ast.All] | None = None) -> list[EqKey]:
    """Every equality key of a rule (see the module docstring)."""
    keys: list[EqKey] = []
    targets = rule.targets
    if targets and all(t.actions for t in targets):
        keys.append(("action", frozenset().union(*(t.actions for t in targets)), -1))
    if targets and all(t.methods for t in targets):
        keys.append(("method", frozenset().union(*(t.methods for t in targets)), -1))
    for position, node in enumerate(rule.condition.children):
        dimension = _CRITERIA.get(type(node))
        if dimension is not None:
            values = node.types if isinstance(node, ast.DeviceOs) else node.values  # type: ignore[attr-defined]
            keys.append((dimension, values, position))
        elif _may_raise(node, levels or {}):
            break
    return keys


def _may_raise(node: ast.Node, levels: dict[str, ast.All]) -> bool:
    """Whether evaluating ``node`` may raise (it is, or contains, a CEL condition)."""
    if isinstance(node, ast.Cel):
        return True
    if isinstance(node, ast.All | ast.AnyOf):
        return any(_may_raise(c, levels) for c in node.children)
    if isinstance(node, ast.Not):
        return _may_raise(node.child, levels)
    if isinstance(node, ast.LevelRef):
        body = levels.get(node.name)
        return body is None or _may_raise(body, levels)
    return False


def choose_keys(rules: Sequence[ast.Rule], levels: dict[str, ast.All]) -> list[EqKey | None]:
    """Each rule's most selective equality key (None: the rule goes in the catch-all).

    Selectivity is estimated over the whole policy: a key costs the number of rules that
    name each of its values in that dimension; the cheapest wins, a selector key (free
    to skip: a rule it excludes does not apply) before a condition key on a tie."""
    found = [equality_keys(rule, levels) for rule in rules]
    counts: Counter[tuple[str, str]] = Counter()
    for keys in found:
        for dimension, values, _ in keys:
            counts.update((dimension, v) for v in values)
    chosen: list[EqKey | None] = []
    for keys in found:
        best: EqKey | None = None
        best_cost = (0, 0)
        for key in keys:
            cost = (sum(counts[key[0], v] for v in key[1]), key[2])
            if best is None or cost < best_cost:
                best, best_cost = key, cost
        chosen.append(best)
    return chosen


class Group:
    """Rules of one slot filed under one equality value (or the catch-all), in policy
    order; ``run`` evaluates them all (``verity.policy.dispatch``), generated on first use
    (``build``: no per-group object until then, which matters with 350,000 groups)."""

    __slots__ = ("allows", "denies", "run")

    def __init__(self, entries: Sequence[tuple[CompiledRule, Pin]]) -> None:
        allow = Effect.ALLOW
        self.denies = tuple(entry for entry in entries if entry[0].effect is not allow)
        self.allows = tuple(entry for entry in entries if entry[0].effect is allow)
        self.run: Dispatch | None = None  # call ``(group.run or group.build())(request)``

    def build(self) -> Dispatch:
        """Generate (once) the function that evaluates the group."""
        run = self.run = generate(self.denies, self.allows)
        return run


class Slot:
    """The candidates for one resource key: a catch-all group plus, per dimension, a
    table of groups by value; and what ``closest`` needs to explain a deny exactly.

    Probing a group and merging its outcome costs more than evaluating a few rules
    inline, so a small slot is all catch-all, and so are the rules of a dimension that
    few rules of the slot use (e.g. one deny rule keyed by region). When the catch-all
    is small, each group's function evaluates the catch-all rules too (in policy order),
    so a request that probes one group gets its whole answer from one call.
    """

    __slots__ = ("_shared", "allows", "bounded", "catchall", "folded", "suffix", "tables")

    def __init__(
        self,
        ordered: Sequence[tuple[CompiledRule, Pin]],
        keys: Sequence[EqKey | None],
        positions: Sequence[int],
        *,
        linear: bool = False,
        shared: dict[tuple[int, ...], Group] | None = None,
    ) -> None:
        self._shared = {} if shared is None else shared
        chosen = [None if linear else keys[p] for p in positions]
        if len(ordered) <= _SMALL_SLOT:
            chosen = [None] * len(ordered)
        used = Counter(key[0] for key in chosen if key is not None)
        chosen = [None if key is None or used[key[0]] < _MIN_DIMENSION else key for key in chosen]
        common = [entry for entry, key in zip(ordered, chosen, strict=True) if key is None]
        self.folded = len(chosen) - len(common) > 0 and len(common) <= _MAX_FOLDED
        self.catchall: Group | None = None
        if common:
            self.catchall = self._group(common)
        tables: dict[str, dict[Any, list[tuple[CompiledRule, Pin]]]] = {}
        bounded: list[tuple[int, CompiledRule, Pin]] = []
        for (rule, pin), key in zip(ordered, chosen, strict=True):
            if key is None:
                continue
            table = tables.setdefault(key[0], {})
            for value in key[1]:
                table.setdefault(value, []).append((rule, pin))
            if key[2] >= 0 and rule.effect is Effect.ALLOW:
                bounded.append((key[2], rule, pin))
        self.tables = tuple(
            (
                PROBES[d],
                {value: self._group(self._fold(group, common)) for value, group in t.items()},
            )
            for d, t in tables.items()
        )
        self.allows = tuple((rule, pin) for rule, pin in ordered if rule.effect is Effect.ALLOW)
        self.bounded = tuple(bounded)
        suffix: list[int] = []
        top = -1
        for bound, _, _ in reversed(bounded):
            top = max(top, bound)
            suffix.append(top)
        self.suffix = tuple(reversed(suffix))

    def _fold(
        self, members: list[tuple[CompiledRule, Pin]], common: list[tuple[CompiledRule, Pin]]
    ) -> list[tuple[CompiledRule, Pin]]:
        if not self.folded:
            return members
        return sorted([*members, *common], key=lambda entry: entry[0].index)

    def _group(self, members: list[tuple[CompiledRule, Pin]]) -> Group:
        """The group of ``members`` (one object for equal groups across slots)."""
        key = tuple(rule.index << 2 | pin[0] << 1 | pin[1] for rule, pin in members)
        group = self._shared.get(key)
        if group is None:
            group = self._shared[key] = Group(members)
        return group

    def probe(self, request: AccessRequest) -> list[Group]:
        """The groups ``request`` can match: the catch-all and one per value it has
        (only those when the catch-all is folded into them; the catch-all if none)."""
        found = [] if self.catchall is None or self.folded else [self.catchall]
        for values_of, table in self.tables:
            for value in values_of(request):
                group = table.get(value)
                if group is not None:
                    found.append(group)
        if not found and self.catchall is not None:
            found.append(self.catchall)
        return found

    def closest(
        self, request: AccessRequest, best: CompiledRule | None, at: int
    ) -> tuple[CompiledRule | None, int]:
        """The allow rule a linear scan of the slot finds closest (first to get furthest),
        given the best of the probed groups. A rule the index skipped fails at its key's
        position at the latest, so only rules whose bound can beat (or, earlier in the
        policy, tie) the best are evaluated, and the scan stops when none is left."""
        bounded, suffix = self.bounded, self.suffix
        for i, (bound, rule, pin) in enumerate(bounded):
            top = suffix[i]
            if top < at or (top == at and best is not None and rule.index > best.index):
                break
            if bound < at or (bound == at and best is not None and rule.index > best.index):
                continue
            try:
                found = rule.variants[pin](request)
            except CelError:
                continue  # probed already: its failure is accounted for
            if found > at or (
                found == at and found >= 0 and (best is None or rule.index < best.index)
            ):
                best, at = rule, found
        return best, at

    def prefer_specific(self, request: AccessRequest) -> CompiledRule | None:
        """The first rule written for resources that fails at its first criterion."""
        for rule, pin in self.allows:
            if rule.shape.specific:
                try:
                    if rule.variants[pin](request) == 0:
                        return rule
                except CelError:
                    continue
        return None


class RuleIndex:
    """Both levels of the index. ``linear=True`` turns it off: every request gets one slot
    holding every rule, evaluated in policy order (the reference the tests compare with)."""

    def __init__(
        self,
        rules: Sequence[CompiledRule],
        levels: dict[str, ast.All] | None = None,
        *,
        linear: bool = False,
    ) -> None:
        self._rules = tuple(rules)
        self._keys = choose_keys([rule.rule for rule in self._rules], dict(levels or {}))
        self._linear: Slot | None = None
        if linear:
            every = [(rule, (False, False)) for rule in self._rules]
            self._linear = Slot(every, self._keys, range(len(every)), linear=True)
        buckets: dict[Key, set[int]] = defaultdict(set)
        for position, rule in enumerate(self._rules):
            for target in rule.rule.targets:
                for key in _keys(target):
                    buckets[key].add(position)
        self._buckets = {key: frozenset(members) for key, members in buckets.items()}
        self._hosts = frozenset(k[0] for k in self._buckets if k[0] is not None)
        self._segments = frozenset(k[1] for k in self._buckets if k[1] is not None)
        self._types = frozenset(k[2] for k in self._buckets if k[2] is not None)
        self._cache: dict[Key, Slot] = {}
        # Slots share equal groups (and their generated functions): with one rule per
        # role naming many types, every type's slot has the same group for a role.
        self._groups: dict[tuple[int, ...], Group] = {}
        # Requests without HTTP (application authorisation) are looked up by resource type
        # alone, in a table filled now: one probe, and no growth from unknown types.
        self._by_type: dict[str | None, Slot] = {
            sys.intern(t): self._build((None, None, t)) for t in self._types
        }
        self._untyped = self._build((None, None, None))

    def key(self, request: AccessRequest) -> Key:
        """The normalised index key of a request (unknown values become ``None``)."""
        http = request.http
        host = segment = None
        if http is not None:
            if http.host in self._hosts:
                host = http.host
            if self._segments:
                seg = first_segment(http.path)
                segment = seg if seg in self._segments else None
        kind = request.resource.type
        return host, segment, kind if kind in self._types else None

    def slot(self, request: AccessRequest) -> Slot:
        """The candidates of ``request``'s resource key (see ``Slot``)."""
        if self._linear is not None:
            return self._linear
        if request.http is None:
            return self._by_type.get(request.resource.type, self._untyped)
        key = self.key(request)
        found = self._cache.get(key)
        if found is None:
            found = self._build(key)
            if len(self._cache) >= _MAX_CACHE:
                self._cache.clear()
                self._groups.clear()
            self._cache[key] = found
        return found

    def _build(self, key: Key) -> Slot:
        """The slot for ``key``, each rule with the selector test still needed after the
        index matched host and type: a rule found only under a key that names the
        request's exact host (or type) needs no host (or type) test."""
        pins: dict[int, tuple[bool, bool]] = {}
        host, segment, kind = key
        for combo in itertools.product(_either(host), _either(segment), _either(kind)):
            pinned = (combo[0] is not None, combo[2] is not None)
            for position in self._buckets.get(combo, frozenset()):
                seen = pins.get(position)
                pins[position] = (
                    pinned if seen is None else (seen[0] and pinned[0], seen[1] and pinned[1])
                )
        positions = sorted(pins)
        ordered = [(self._rules[p], pins[p]) for p in positions]
        return Slot(ordered, self._keys, positions, shared=self._groups)


def _either(value: str | None) -> tuple[str | None, ...]:
    return (None,) if value is None else (value, None)


def _keys(target: ast.Target) -> Iterable[Key]:
    hosts = _dimension(target.hosts, lambda h: None if h.startswith("*.") else h)
    segments = _dimension(target.paths, _literal_segment)
    types = _dimension(sorted(target.types), lambda t: t)
    if len(hosts) * len(segments) * len(types) > _MAX_KEYS_PER_TARGET:
        return (
            [(None, None, t) for t in types]
            if len(types) <= _MAX_KEYS_PER_TARGET
            else [(None, None, None)]
        )
    return itertools.product(hosts, segments, types)


def _dimension(values: Iterable[str], convert: Callable[[str], str | None]) -> list[str | None]:
    items = {convert(v) for v in values}
    if not items or None in items:
        return [None]
    return [*sorted(i for i in items if i is not None)]
