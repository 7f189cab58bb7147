"""Fact gathering: device posture, trust score and JIT grants for one request.

The policy engine does no I/O, so the enforcement point gathers every fact first. Each
``FactSource`` (device registry, risk engine, JIT grants: later slices) contributes what
it knows; ``gather_facts`` merges them in order, a later source filling only what the
earlier ones left empty. No sources: no device, unknown trust score, no grants.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from ..model import Device, HttpTarget, NetworkContext, Principal

_NO_GRANTS: Mapping[str, float] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class FactQuery:
    """What a fact source may look at: who asks, for what, from where."""

    principal: Principal
    http: HttpTarget
    network: NetworkContext
    route: str


@dataclass(frozen=True, slots=True)
class Facts:
    """Facts about a request beyond its identity (``None``/empty when unknown)."""

    device: Device | None = None
    trust_score: int | None = None
    grants: Mapping[str, float] = field(default_factory=lambda: _NO_GRANTS)


NO_FACTS = Facts()


class FactSource(Protocol):
    """A provider of facts (e.g. the device registry). May do I/O; may raise (fail closed)."""

    async def facts(self, query: FactQuery) -> Facts:
        """The facts this source knows for ``query``."""
        ...


def _merge(known: Facts, more: Facts) -> Facts:
    grants = dict(more.grants)
    grants.update(known.grants)
    return Facts(
        device=known.device if known.device is not None else more.device,
        trust_score=known.trust_score if known.trust_score is not None else more.trust_score,
        grants=MappingProxyType(grants),
    )


async def gather_facts(sources: Sequence[FactSource], query: FactQuery) -> Facts:
    """Ask every source in order and merge the answers; exceptions propagate (deny)."""
    facts = NO_FACTS
    for source in sources:
        facts = _merge(facts, await source.facts(query))
    return facts
