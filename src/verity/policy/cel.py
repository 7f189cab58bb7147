"""CEL (Common Expression Language) for ``when:`` conditions, on Google's cel-cpp runtime
via the ``cel-expr-python`` bindings.

Expressions are parsed and type-checked once, when the policy loads (a syntax or type
error is a policy error naming the key path); evaluation gets an activation with
``principal``, ``resource``, ``request``, ``device``, ``network``, ``http`` and ``context``
as maps. An expression must yield a boolean. Evaluation errors (a missing key, a type
error, division by zero) raise ``CelError``; the engine then treats the rule as not
allowing, or a deny rule as denying — never as allowing.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Mapping
from typing import Any

from ..errors import CelError
from ..model import AccessRequest
from . import ast
from .checks import Check, Test

VARIABLES = ("principal", "resource", "request", "device", "network", "http", "context")


class CelProgram:
    """A compiled expression; ``evaluate`` is thread-safe."""

    def __init__(self, expression: str, compiled: Any, runtime: CelRuntime) -> None:
        self.expression = expression
        self._compiled = compiled
        self._runtime = runtime

    def evaluate(self, activation: Mapping[str, Any]) -> bool:
        try:
            result = self._compiled.eval(data=self._runtime.convert(activation))
        except (RuntimeError, TypeError, ValueError) as exc:
            raise CelError(self.expression, f"evaluation failed: {exc}") from None
        kind = result.type()
        if kind == self._runtime.error_type:
            raise CelError(self.expression, f"evaluation error: {result.value()}")
        value = result.value()
        if not isinstance(value, bool):
            raise CelError(self.expression, f"must yield a boolean, got {value!r}")
        return value


class CelRuntime:
    """The CEL environment shared by every expression of an engine."""

    def __init__(self) -> None:
        from cel_expr_python import cel  # noqa: PLC0415 - heavy native module, loaded on first use
        from google.protobuf import duration_pb2, timestamp_pb2  # noqa: PLC0415

        self._cel = cel
        self._timestamp = timestamp_pb2.Timestamp
        self._duration = duration_pb2.Duration
        dyn_map = cel.Type.Map(cel.Type.STRING, cel.Type.DYN)
        self._env = cel.NewEnv(variables=dict.fromkeys(VARIABLES, dyn_map))
        self.error_type = cel.Type.ERROR
        self._lock = threading.Lock()
        self._cache: dict[str, CelProgram] = {}

    def compile(self, expression: str) -> CelProgram:
        """Parse and type-check ``expression``; raises ``CelError`` with the position."""
        with self._lock:
            program = self._cache.get(expression)
            if program is None:
                try:
                    compiled = self._env.compile(expression)
                except RuntimeError as exc:
                    raise CelError(expression, _clean(str(exc))) from None
                program = CelProgram(expression, compiled, self)
                self._cache[expression] = program
            return program

    def check(self, expression: str) -> None:
        self.compile(expression)

    def convert(self, value: Any) -> Any:
        """Python values -> values the CEL runtime accepts (times become protobuf)."""
        if isinstance(value, Mapping):
            return {str(k): self.convert(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            items = sorted(value) if isinstance(value, set | frozenset) else value
            return [self.convert(v) for v in items]
        if isinstance(value, dt.datetime):
            stamp = self._timestamp()
            stamp.FromDatetime(value)
            return stamp
        if isinstance(value, dt.timedelta):
            span = self._duration()
            span.FromTimedelta(value)
            return span
        return value


def _clean(message: str) -> str:
    """The first line of a cel-cpp error, as "at LINE:COLUMN: message"."""
    first = message.strip().splitlines()[0] if message.strip() else "invalid expression"
    return first.removeprefix("INVALID_ARGUMENT: ").replace("ERROR: <input>:", "at ").strip()


def activation(request: AccessRequest) -> dict[str, Any]:
    """The request as CEL sees it (see docs/policy-language.md, "when")."""
    p, d, n, h = request.principal, request.device, request.network, request.http
    moment = dt.datetime.fromtimestamp(request.time, dt.UTC)
    principal: dict[str, Any] = {
        "id": p.id,
        "kind": p.kind.value,
        "email": p.email or "",
        "groups": p.groups,
        "roles": p.roles,
        "claims": p.claims,
        "auth_methods": p.auth_methods,
        "mfa": p.mfa,
        "spiffe_id": p.spiffe_id or "",
    }
    for name, stamp in (("auth_time", p.auth_time), ("mfa_time", p.mfa_time)):
        if stamp is not None:
            principal[name] = dt.datetime.fromtimestamp(stamp, dt.UTC)
    resource = {
        **request.resource.attributes,
        "type": request.resource.type or "",
        "id": request.resource.id or "",
    }
    req: dict[str, Any] = {
        "time": moment,
        "action": request.action or "",
        "grants": list(request.grants),
    }
    if request.trust_score is not None:
        req["trust_score"] = request.trust_score
    return {
        "principal": principal,
        "resource": resource,
        "request": req,
        "device": {}
        if d is None
        else {
            "id": d.id,
            "managed": d.managed,
            "disk_encrypted": d.disk_encrypted,
            "screen_lock": d.screen_lock,
            "firewall": d.firewall,
            "os": d.os_type,
            "os_version": d.os_version,
        },
        "network": {"ip": "" if n.ip is None else str(n.ip), "region": n.region or ""},
        "http": {}
        if h is None
        else {"host": h.host, "method": h.method, "path": h.path, "headers": h.headers},
        "context": request.context,
    }


class CelCheck(Check):
    code = "when"
    node: ast.Cel

    def __init__(self, node: ast.Cel, runtime: CelRuntime) -> None:
        self.program = runtime.compile(node.expression)
        super().__init__(node)

    def build(self) -> Test:
        program = self.program
        return lambda r: program.evaluate(activation(r))

    def expected(self) -> str:
        return f"when: {self.node.expression}"

    def observed(self, request: AccessRequest) -> str:
        try:
            return str(self.program.evaluate(activation(request))).lower()
        except CelError as exc:
            return f"error: {exc.message}"

    def message(self, request: AccessRequest) -> str:
        try:
            self.program.evaluate(activation(request))
        except CelError as exc:
            return f"condition could not be evaluated ({exc.message}): {self.node.expression}"
        return f"condition not met: {self.node.expression}"
