"""OPA peer, data-driven form: a handful of Rego rules over a permission table loaded
as data (``rego_data_policy.py``), evaluated by OPA's Go engine in-process (package
``opa-golib-python-bindings``, see ``rego_opa.py``).

Build (untimed): the one policy module is added with ``add_policy`` and the table
(``grants[role][type]`` -> actions, ``roles[role]`` -> hour window and corporate-network
requirement) with the binding's ``add_data(value, path)`` under ``data.rbac`` (OPA's
in-memory store: the table is data, not Rego text); one warm-up evaluation compiles and
caches the prepared query.

prepare and decide (timed) are exactly those of the per-pair peer (``rego_opa.py``):
a shallow copy of the neutral request plus ``time_ns``; ``eval_document`` of
``verity.authz.allow`` (including the binding's JSON encoding of the input).
"""

from __future__ import annotations

from typing import Any

from opa_bindings import OpaEngine  # type: ignore[import-untyped]

from benchmarks.peers.rego_data_policy import (
    ALLOW_REF,
    DATA_ROOT,
    MODULE_NAME,
    rbac_data,
    rego_module,
)
from benchmarks.peers.scenario import Size, time_ns

_DOC_PATH = ALLOW_REF.removeprefix("data.")


class OpaDataPeer:
    name = "rego-opa-data"

    def __init__(self, size: Size) -> None:
        self.size = size
        self.engine = OpaEngine()
        self.engine.add_policy(MODULE_NAME, rego_module())
        self.engine.add_data(rbac_data(size), DATA_ROOT)
        self.engine.eval_document(_DOC_PATH, {})  # compile + cache the prepared query

    def prepare(self, req: dict[str, Any]) -> dict[str, Any]:
        return {**req, "time_ns": time_ns(req["time"])}

    def decide(self, prepared: dict[str, Any]) -> bool:
        return self.engine.eval_document(_DOC_PATH, prepared) is True

    def close(self) -> None:
        self.engine.close()
