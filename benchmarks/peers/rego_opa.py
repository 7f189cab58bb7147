"""OPA peer: the Rego policy evaluated by OPA's Go engine, embedded in-process.

Package: ``opa-golib-python-bindings`` (import ``opa_bindings``), a ctypes wrapper over
a Go c-shared build of ``github.com/open-policy-agent/opa/v1/rego``. Its metadata says
``Requires-Python >=3.14`` but the wrapper is stdlib-only ctypes and runs unchanged on
3.11; install it with ``pip install --ignore-requires-python``.

Build (untimed): the generated modules are added once; one warm-up evaluation makes the
binding compile and cache the prepared query for ``data.verity.authz.allow`` (the
binding keeps one prepared query per query string until the policy/data changes).

prepare (timed, the engine's input conversion): a shallow copy of the neutral request
plus ``time_ns`` (the
timestamp as integer nanoseconds, OPA's native time unit). Nothing else: local time in
Europe/Berlin / America/New_York, CIDR matching and version comparison are done by
OPA builtins (``time.clock``, ``time.weekday``, ``net.cidr_contains``, ``to_number``).

decide (timed): ``OpaEngine.eval_document`` on the prepared query; this includes the
binding's JSON encoding of the input dict and decoding of the result envelope.
"""

from __future__ import annotations

from typing import Any

from opa_bindings import OpaEngine  # type: ignore[import-untyped]

from benchmarks.peers.rego_policy import ALLOW_REF, rego_modules
from benchmarks.peers.scenario import Size, time_ns

_DOC_PATH = ALLOW_REF.removeprefix("data.")


class OpaPeer:
    name = "rego-opa"

    def __init__(self, size: Size) -> None:
        self.size = size
        self.engine = OpaEngine()
        for file_name, source in rego_modules(size):
            self.engine.add_policy(file_name, source)
        self.engine.eval_document(_DOC_PATH, {})  # compile + cache the prepared query

    def prepare(self, req: dict[str, Any]) -> dict[str, Any]:
        return {**req, "time_ns": time_ns(req["time"])}

    def decide(self, prepared: dict[str, Any]) -> bool:
        return self.engine.eval_document(_DOC_PATH, prepared) is True

    def close(self) -> None:
        self.engine.close()
