"""Generated Python for compiled criteria: the "compile" in "compiled policy".

Every check can be written as a Python expression over the request ``r`` and the locals
``p`` (principal), ``d`` (device) and ``n`` (network); simple criteria are spliced in as
expressions and the rest are called by name. All policy values are *bound names* in the
function's namespace, never text in its source, so nothing from a policy file is ever
executed as code: the source is built only from the fixed templates of the checks.

Rules that are alike produce the same source text (binding names are positional, never
derived from values), so the text is compiled once and its code object is shared: binding
a new rule's constants is an ``exec`` of that code in a fresh namespace, which only
creates a function object. A policy of 35,000 similar rules compiles a handful of
functions, not 35,000.
"""

from __future__ import annotations

import contextlib
import gc
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import CodeType
from typing import Any

from ..errors import PolicyError

_LOCALS = (("p", "principal"), ("d", "device"), ("n", "network"))
_NAME = re.compile(r"^_[A-Za-z0-9_]+$")
_CODE: dict[str, CodeType] = {}
_MAX_CODE = 4096


def prologue(body: str) -> list[str]:
    """Local aliases (p, d, n) for the request parts that ``body`` uses."""
    return [f"    {var} = r.{attr}" for var, attr in _LOCALS if re.search(rf"\b{var}\b", body)]


def build(source: str, namespace: dict[str, object], label: str) -> Callable[..., Any]:
    for name in namespace:
        if not _NAME.match(name):
            raise PolicyError(f"code generation: bad binding name {name!r}")
    code = _CODE.get(source)
    if code is None:
        if len(_CODE) >= _MAX_CODE:
            _CODE.clear()
        # The label names the first rule compiled to this text (tracebacks only).
        code = _CODE[source] = compile(source, f"<verity {label}>", "exec")
    exec(code, namespace)  # noqa: S102 - fixed templates; policy values are bound names only
    function = namespace["_generated"]
    if not callable(function):  # pragma: no cover - the templates always define it
        raise PolicyError("code generation failed")
    return function


def predicate(expression: str, bindings: Mapping[str, object], label: str) -> Callable[[Any], bool]:
    """``def _generated(r): return <expression>``."""
    lines = ["def _generated(r):", *prologue(expression), f"    return bool({expression})"]
    return build("\n".join(lines), dict(bindings), label)


def first_failure(
    expressions: Sequence[str], bindings: Mapping[str, object], label: str, guard: str | None = None
) -> Callable[[Any], int]:
    """A function returning -2 if ``guard`` is false, else the index of the first
    expression that is false, or -1 when all hold."""
    body: list[str] = []
    if guard is not None:
        body += [f"    if not ({guard}):", "        return -2"]
    for i, expression in enumerate(expressions):
        body += [f"    if not ({expression}):", f"        return {i}"]
    text = "\n".join(body)
    lines = ["def _generated(r):", *prologue(text), *body, "    return -1"]
    return build("\n".join(lines), dict(bindings), label)


@contextlib.contextmanager
def without_gc() -> Iterator[None]:
    """No cyclic garbage collection while a large policy is built.

    Building allocates many objects and nothing it builds is garbage; every collection
    would scan them all again (without this, 35,000 rules take about 2.5 times as long).
    Reference counting still frees everything; the collector is restored afterwards
    (if another thread turned it off meanwhile, it is left as that thread left it).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
