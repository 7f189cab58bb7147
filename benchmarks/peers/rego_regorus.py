"""regorus peer: the same Rego policy evaluated by regorus (Microsoft's Rust Rego interpreter).

Package: ``gordon-to-regorus`` (import ``regorus``). Of the PyPI candidates it is the
best maintained: it is an unmodified mirror of upstream ``microsoft/regorus`` (a daily
sync job; a new upstream version triggers a publish, the only patch renames the
distribution) and ships the newest engine (regorus 0.13.0, abi3 wheel for CPython
>= 3.10, manylinux_2_34 x86_64). ``celine-regorus`` is also an automated upstream
rebuild but lags (regorus 0.9.1); ``hobofan-regorus`` (0.2.5) and ``lakera-regorus``
(0.1.0) are single 2024 snapshots.

Build (untimed): the generated modules are added to one ``regorus.Engine``; a warm-up
evaluation runs once.

prepare (timed, the engine's input conversion): the neutral request plus ``time_ns``
(integer nanoseconds), encoded
as a JSON string, because ``Engine.set_input_json`` takes JSON text directly and
avoids converting a Python dict object-by-object. Local time per zone, CIDR matching and
version comparison are computed by regorus builtins (``time.clock``,
``time.weekday``, ``net.cidr_contains``, ``to_number``).

decide (timed): ``set_input_json`` (regorus parses the JSON) + ``eval_rule`` of
``data.verity.authz.allow``.
"""

from __future__ import annotations

import json
from typing import Any

import regorus  # type: ignore[import-untyped]

from benchmarks.peers.rego_policy import ALLOW_REF, rego_modules
from benchmarks.peers.scenario import Size, time_ns


class RegorusPeer:
    name = "rego-regorus"

    def __init__(self, size: Size) -> None:
        self.size = size
        self.engine = regorus.Engine()
        for file_name, source in rego_modules(size):
            self.engine.add_policy(file_name, source)
        self.engine.set_input_json("{}")
        self.engine.eval_rule(ALLOW_REF)

    def prepare(self, req: dict[str, Any]) -> str:
        return json.dumps({**req, "time_ns": time_ns(req["time"])})

    def decide(self, prepared: str) -> bool:
        self.engine.set_input_json(prepared)
        return self.engine.eval_rule(ALLOW_REF) is True
