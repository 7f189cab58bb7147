"""Rule index: which rules can possibly apply to a request, without looking at the rest.

Each resource selector is filed under a key (host, first path segment, resource type),
with ``None`` for "any" in a dimension (wildcard hosts, globbed first segments and absent
fields are ``None``). A request looks up the eight combinations of its own key and
``None``; the merged, ordered result is cached per key. A request whose host, segment or
type no rule names is looked up as ``None`` in that dimension, so the cache holds at most
one entry per combination of values that appear in the policy, and building an entry costs
the number of candidate rules, never the size of the policy.
"""

from __future__ import annotations

import itertools
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..model import AccessRequest, Effect
from . import ast
from .compiler import CompiledRule
from .dispatch import Dispatch, generate

Key = tuple[str | None, str | None, str | None]
Evaluate = Callable[[AccessRequest], int]
Candidates = tuple[Any, ...]
"""``(dispatch, deny rules, allow functions, allow rule shapes, *allow rule names)``, in
policy order. Everything but the names is shared between keys whose candidates evaluate
the same way; the names are stored inline (from index ``NAMES``), so a decision reads one
tuple of per-key data, keeping the hot data of a policy of many similar rules small."""
NAMES = 4

_MAX_CACHE = 65536
_MAX_KEYS_PER_TARGET = 256


def first_segment(path: str) -> str:
    """``/docs/a/b`` -> ``docs``; ``/`` -> ``""``."""
    end = path.find("/", 1)
    return path[1:] if end < 0 else path[1:end]


def _literal_segment(pattern: str) -> str | None:
    segment = first_segment(pattern)
    return None if "*" in segment else segment


class RuleIndex:
    def __init__(self, rules: Sequence[CompiledRule]) -> None:
        self._rules = tuple(rules)
        buckets: dict[Key, set[int]] = defaultdict(set)
        for position, rule in enumerate(self._rules):
            for target in rule.rule.targets:
                for key in _keys(target):
                    buckets[key].add(position)
        self._buckets = {key: frozenset(members) for key, members in buckets.items()}
        self._hosts = frozenset(k[0] for k in self._buckets if k[0] is not None)
        self._segments = frozenset(k[1] for k in self._buckets if k[1] is not None)
        self._types = frozenset(k[2] for k in self._buckets if k[2] is not None)
        self._cache: dict[Key, Candidates] = {}
        self._interned: dict[tuple[object, ...], Any] = {}
        self._dispatchers: dict[tuple[tuple[Evaluate, ...], tuple[Evaluate, ...]], Dispatch] = {}
        # Requests without HTTP (application authorisation) are looked up by resource type
        # alone, in a table filled now: one probe, and no growth from unknown types.
        self._by_type: dict[str | None, Candidates] = {
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

    def candidates(self, request: AccessRequest) -> Candidates:
        """The rules that may apply to ``request`` (see ``Candidates``)."""
        http = request.http
        if http is None:
            return self._by_type.get(request.resource.type, self._untyped)
        key = self.key(request)
        found = self._cache.get(key)
        if found is None:
            found = self._build(key)
            if len(self._cache) >= _MAX_CACHE:
                self._cache.clear()
                self._interned.clear()
                self._dispatchers.clear()
            self._cache[key] = found
        return found

    def _build(self, key: Key) -> Candidates:
        """Candidates for ``key``, each with the selector test still needed after the
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
        ordered = [(self._rules[p], pins[p]) for p in sorted(pins)]
        denies = [(rule, pin) for rule, pin in ordered if rule.effect is Effect.DENY]
        allows = [(rule, pin) for rule, pin in ordered if rule.effect is Effect.ALLOW]
        deny_functions = tuple(rule.variants[pin] for rule, pin in denies)
        allow_functions: tuple[Evaluate, ...] = self._shared(
            tuple(rule.variants[pin] for rule, pin in allows)
        )
        shape = (deny_functions, allow_functions)
        dispatch = self._dispatchers.get(shape)
        if dispatch is None:
            dispatch = self._dispatchers[shape] = generate(denies, allows)
        candidates = (
            dispatch,
            self._shared(tuple(rule for rule, _ in denies)),
            allow_functions,
            self._shared(tuple(rule.shape for rule, _ in allows)),
            *(rule.name for rule, _ in allows),
        )
        shared: Candidates = self._shared(candidates)
        return shared

    def _shared(self, value: Any) -> Any:
        """One object for equal tuples (of functions and rules, compared by identity)."""
        return self._interned.setdefault(value, value)


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
