"""One generated function per list of candidate rules: the whole decision, inlined.

The index gives, for a request, the deny and allow rules that may apply. Calling one
generated function per rule costs a Python call, a frame and a loop step each; instead,
each distinct candidate list (lists are shared by every index key whose candidates
evaluate the same way) is compiled into a single function that tests every candidate's
remaining selector and criteria inline, in policy order, and returns:

- ``(ALLOWED, i, -1, None)``: allow candidate ``i`` allows (a constant: no allocation);
- ``(DENIED, i, -1, None)``: deny candidate ``i`` matched;
- ``(DENY_ERROR, i, -1, error)``: deny candidate ``i``'s CEL raised: it denies;
- ``(NO_MATCH, closest, at, failed)``: nothing allowed; ``closest`` got furthest (to
  criterion ``at``), ``failed`` is ``(i, CelError)`` for the first allow candidate whose
  CEL raised, or None.

A CEL error in an allow candidate skips that candidate; in a deny candidate it denies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..errors import CelError
from .codegen import build, prologue
from .compiler import CompiledRule, Pin, targets_expression

ALLOWED, DENIED, DENY_ERROR, NO_MATCH = 0, 1, 2, 3

Outcome = tuple[int, int, int, Any]
Dispatch = Callable[[Any], Outcome]
Candidate = tuple[CompiledRule, Pin]


def _code(
    rule: CompiledRule, pin: Pin, prefix: str
) -> tuple[str | None, list[str], dict[str, object]]:
    bindings: dict[str, object] = {}
    guard = None
    targets = rule.pinned[pin]
    if targets is not None:
        guard, target_bindings = targets_expression(targets, f"{prefix}t")
        bindings.update(target_bindings)
    expressions = []
    for i, check in enumerate(rule.checks):
        expression, bound = check.expression(f"{prefix}c{i}")
        expressions.append(expression)
        bindings.update(bound)
    return guard, expressions, bindings


def generate(denies: Sequence[Candidate], allows: Sequence[Candidate]) -> Dispatch:
    """Compile one candidate list (deny candidates, allow candidates) into a function."""
    namespace: dict[str, object] = {"_CelError": CelError}
    body: list[str] = []
    for j, (rule, pin) in enumerate(denies):
        guard, expressions, bindings = _code(rule, pin, f"_d{j}")
        namespace.update(bindings)
        namespace[f"_deny{j}"] = (DENIED, j, -1, None)
        test = " and ".join(f"({e})" for e in ([guard] if guard else []) + expressions) or "True"
        body += ["    try:", f"        if {test}:", f"            return _deny{j}"]
        body += ["    except _CelError as _e:", f"        return ({DENY_ERROR}, {j}, -1, _e)"]
    body += ["    _best = -1", "    _at = -1", "    _failed = None"]
    for j, (rule, pin) in enumerate(allows):
        guard, expressions, bindings = _code(rule, pin, f"_a{j}")
        namespace.update(bindings)
        namespace[f"_allow{j}"] = (ALLOWED, j, -1, None)
        body += ["    try:", *_allow_lines(j, guard, expressions)]
        body += [
            "    except _CelError as _e:",
            "        if _failed is None:",
            f"            _failed = ({j}, _e)",
        ]
    body.append(f"    return ({NO_MATCH}, _best, _at, _failed)")
    text = "\n".join(body)
    source = "\n".join(["def _generated(r):", *prologue(text), text])
    function: Dispatch = build(
        source, namespace, f"candidates ({len(denies)} deny, {len(allows)} allow)"
    )
    return function


def _allow_lines(j: int, guard: str | None, expressions: Sequence[str]) -> list[str]:
    pad = "        "
    lines: list[str] = []
    if guard:
        lines.append(f"{pad}if {guard}:")
        pad += "    "
    if not expressions:
        return [*lines, f"{pad}return _allow{j}"]
    for i, expression in enumerate(expressions):
        keyword = "if" if i == 0 else "elif"
        lines += [f"{pad}{keyword} not ({expression}):", f"{pad}    _o = {i}"]
    lines += [f"{pad}else:", f"{pad}    return _allow{j}"]
    lines += [f"{pad}if _o > _at:", f"{pad}    _best = {j}", f"{pad}    _at = _o"]
    return lines
