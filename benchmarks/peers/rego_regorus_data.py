"""regorus peer, data-driven form: a handful of Rego rules over a permission table
loaded as data (``rego_data_policy.py``), evaluated by regorus (package
``gordon-to-regorus``, see ``rego_regorus.py`` for the choice).

Build (untimed): the one policy module is added with ``add_policy`` and the table
(``grants[role][type]`` -> actions, ``roles[role]`` -> hour window and corporate-network
requirement) with ``add_data_json`` under ``data.rbac``; a warm-up evaluation runs once.

prepare and decide (timed) are exactly those of the per-pair peer (``rego_regorus.py``):
the neutral request plus ``time_ns`` as a JSON string; ``set_input_json`` +
``eval_rule`` of ``data.verity.authz.allow``.
"""

from __future__ import annotations

import json
from typing import Any

import regorus  # type: ignore[import-untyped]

from benchmarks.peers.rego_data_policy import (
    ALLOW_REF,
    DATA_ROOT,
    MODULE_NAME,
    rbac_data,
    rego_module,
)
from benchmarks.peers.scenario import Size, time_ns


class RegorusDataPeer:
    name = "rego-regorus-data"

    def __init__(self, size: Size) -> None:
        self.size = size
        self.engine = regorus.Engine()
        self.engine.add_policy(MODULE_NAME, rego_module())
        self.engine.add_data_json(json.dumps({DATA_ROOT: rbac_data(size)}))
        self.engine.set_input_json("{}")
        self.engine.eval_rule(ALLOW_REF)

    def prepare(self, req: dict[str, Any]) -> str:
        return json.dumps({**req, "time_ns": time_ns(req["time"])})

    def decide(self, prepared: str) -> bool:
        self.engine.set_input_json(prepared)
        return self.engine.eval_rule(ALLOW_REF) is True
