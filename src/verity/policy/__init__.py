"""The policy language and the decision engine (the PDP).

policy = load_policy_file("policy.yaml")     # validate: PolicyLoadError lists every problem
engine = compile_policy(policy)              # compile once
decision = engine.decide(request)            # pure, microseconds, fail-closed
engine.explain(request)                      # every criterion, expected vs observed
"""

from __future__ import annotations

from pathlib import Path

from .ast import Policy
from .cel import CelRuntime
from .codegen import without_gc
from .compiler import Compiler
from .engine import Engine, Explanation, RuleExplanation
from .live import LivePolicy, ReloadResult
from .loader import load_policy_file as _load_file
from .loader import load_policy_text, parse_policy

_default_cel: CelRuntime | None = None


def cel_runtime() -> CelRuntime:
    """The process-wide CEL runtime (created on first use)."""
    global _default_cel  # noqa: PLW0603 - one lazily created, thread-safe runtime
    if _default_cel is None:
        _default_cel = CelRuntime()
    return _default_cel


def _check_cel(expression: str) -> None:
    cel_runtime().check(expression)


def load_policy_file(path: str | Path) -> Policy:
    """Read and validate a policy file (CEL expressions are compiled to check them)."""
    return _load_file(path, cel_check=_check_cel)


def load_policy(text: str, *, source: str = "<text>") -> Policy:
    """Validate a policy given as YAML text."""
    return load_policy_text(text, source=source, cel_check=_check_cel)


def compile_policy(policy: Policy, *, linear: bool = False) -> Engine:
    """Compile a validated policy into a decision engine.

    ``linear=True`` turns the rule index off (every request evaluates every rule in
    policy order): same decisions, slower; for tests and comparisons."""
    with without_gc():
        compiler = Compiler(policy, cel_runtime())
        return Engine(policy, compiler.compile_rules(), compiler, linear=linear)


__all__ = [
    "Engine",
    "Explanation",
    "LivePolicy",
    "Policy",
    "ReloadResult",
    "RuleExplanation",
    "compile_policy",
    "load_policy",
    "load_policy_file",
    "parse_policy",
]
