"""Port ranges with the reasons that allow them: the algebra behind every answer.

A ``Grant`` says one rule (a ``Reason``) allows a protocol's port range in one direction.
A connection's ports are where an egress grant and an ingress grant overlap; each resulting
``PortSegment`` keeps every egress and ingress reason that covers it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from .model import Direction, Protocol

T = TypeVar("T")
S = TypeVar("S")


@dataclass(frozen=True, slots=True, order=True)
class Reason:
    """Why a direction allows traffic: a policy's rule, or no isolation at all.

    ``policy`` is ``namespace/name``; ``rule`` is the index in its ``ingress``/``egress``
    list. An empty ``policy`` means no NetworkPolicy isolates the pod in ``direction``
    (and for traffic leaving or entering the cluster, that the outside is not governed).
    """

    direction: Direction
    policy: str = ""
    rule: int = -1
    kind: str = "NetworkPolicy"
    action: str = "Allow"

    @property
    def default(self) -> bool:
        return not self.policy

    def __str__(self) -> str:
        if self.default:
            return f"{self.direction.value}: not isolated"
        if self.kind == "NetworkPolicy":
            return f"{self.policy} {self.direction.value}[{self.rule}]"
        return f"{self.kind} {self.policy} {self.direction.value}[{self.rule}] ({self.action})"


@dataclass(frozen=True, slots=True, order=True)
class Grant:
    protocol_order: int
    first: int
    last: int
    reason: Reason

    @property
    def protocol(self) -> Protocol:
        return _PROTOCOLS[self.protocol_order]


_PROTOCOLS = (Protocol.TCP, Protocol.UDP, Protocol.SCTP)
_ORDER = {p: i for i, p in enumerate(_PROTOCOLS)}


def grant(protocol: Protocol, first: int, last: int, reason: Reason) -> Grant:
    return Grant(_ORDER[protocol], first, last, reason)


@dataclass(frozen=True, slots=True, order=True)
class PortSegment:
    """Ports ``first``..``last`` of ``protocol`` allowed, with every reason on both sides.

    ``partial`` is set when only some pod pairs of the two endpoints get these ports
    (pods of one workload may differ: labels, named ports, rollout revisions).
    """

    protocol_order: int
    first: int
    last: int
    egress: frozenset[Reason]
    ingress: frozenset[Reason]
    partial: bool = False

    @property
    def protocol(self) -> Protocol:
        return _PROTOCOLS[self.protocol_order]

    def covers(self, protocol: Protocol, port: int) -> bool:
        return self.protocol_order == _ORDER[protocol] and self.first <= port <= self.last

    @property
    def ports(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


def sweep(entries: Iterable[tuple[int, int, int, T]]) -> Iterator[tuple[int, int, int, list[T]]]:
    """Split overlapping ``(protocol, first, last, payload)`` ranges into disjoint pieces,
    each with the payloads of every range covering it (pieces nobody covers are left out)."""
    by_protocol: dict[int, list[tuple[int, int, T]]] = {}
    for protocol, first, last, payload in entries:
        by_protocol.setdefault(protocol, []).append((first, last, payload))
    for protocol in sorted(by_protocol):
        ranges = by_protocol[protocol]
        points = sorted({first for first, _, _ in ranges} | {last + 1 for _, last, _ in ranges})
        for start, stop in itertools.pairwise(points):
            covering = [p for first, last, p in ranges if first <= start and last >= stop - 1]
            if covering:
                yield protocol, start, stop - 1, covering


def merged(pieces: Iterable[tuple[int, int, int, S]]) -> list[tuple[int, int, int, S]]:
    """Join adjacent pieces of one protocol whose summaries are equal."""
    result: list[tuple[int, int, int, S]] = []
    for piece in pieces:
        if result:
            protocol, first, last, summary = result[-1]
            if protocol == piece[0] and last + 1 == piece[1] and summary == piece[3]:
                result[-1] = (protocol, first, piece[2], summary)
                continue
        result.append(piece)
    return result


def connect(egress: Iterable[Grant], ingress: Iterable[Grant]) -> tuple[PortSegment, ...]:
    """The ports both directions allow, each with the reasons of both sides."""
    entries = [(g.protocol_order, g.first, g.last, g) for g in egress]
    entries += [(g.protocol_order, g.first, g.last, g) for g in ingress]

    def summary(grants: list[Grant]) -> tuple[frozenset[Reason], frozenset[Reason]]:
        out = frozenset(g.reason for g in grants if g.reason.direction is Direction.EGRESS)
        into = frozenset(g.reason for g in grants if g.reason.direction is Direction.INGRESS)
        return out, into

    pieces = []
    for protocol, first, last, grants in sweep(entries):
        out, into = summary(grants)
        if out and into:
            pieces.append((protocol, first, last, (out, into)))
    return tuple(
        PortSegment(protocol, first, last, out, into)
        for protocol, first, last, (out, into) in merged(pieces)
    )


def combine(
    segment_lists: Iterable[tuple[PortSegment, ...]], total: int
) -> tuple[PortSegment, ...]:
    """The union of several pod pairs' segments; ``partial`` where fewer than ``total`` pairs
    (or an already partial pair) allow the port."""
    entries = []
    for member, segments in enumerate(segment_lists):
        entries += [(s.protocol_order, s.first, s.last, (member, s)) for s in segments]

    def summarize(
        covering: list[tuple[int, PortSegment]],
    ) -> tuple[frozenset[Reason], frozenset[Reason], bool]:
        out = frozenset().union(*(s.egress for _, s in covering))
        into = frozenset().union(*(s.ingress for _, s in covering))
        members = {m for m, _ in covering}
        partial = len(members) < total or any(s.partial for _, s in covering)
        return out, into, partial

    pieces = [(p, first, last, summarize(c)) for p, first, last, c in sweep(entries)]
    return tuple(
        PortSegment(protocol, first, last, out, into, partial)
        for protocol, first, last, (out, into, partial) in merged(pieces)
    )


# A set of ports: disjoint ``(protocol_order, first, last)`` ranges, sorted.
PortSpace = list[tuple[int, int, int]]
EVERY_PORT: PortSpace = [(order, 1, 65535) for order in range(len(_PROTOCOLS))]


def space_of(grants: Iterable[Grant]) -> PortSpace:
    """The ports ``grants`` cover, as a normalized space."""
    return union([], [(g.protocol_order, g.first, g.last) for g in grants])


def union(first: PortSpace, second: PortSpace) -> PortSpace:
    result: PortSpace = []
    for protocol, low, high in sorted(first + second):
        if result and result[-1][0] == protocol and low <= result[-1][2] + 1:
            result[-1] = (protocol, result[-1][1], max(result[-1][2], high))
        else:
            result.append((protocol, low, high))
    return result


def minus(space: PortSpace, removed: PortSpace) -> PortSpace:
    result: PortSpace = []
    for protocol, low, high in space:
        pieces = [(low, high)]
        for r_protocol, r_low, r_high in removed:
            if r_protocol != protocol:
                continue
            pieces = [
                part
                for a, b in pieces
                for part in ((a, min(b, r_low - 1)), (max(a, r_high + 1), b))
                if part[0] <= part[1]
            ]
        result.extend((protocol, a, b) for a, b in pieces)
    return result


def clip(grants: Iterable[Grant], space: PortSpace) -> list[Grant]:
    """``grants`` restricted to ``space``."""
    result = []
    for g in grants:
        for protocol, low, high in space:
            if protocol == g.protocol_order and low <= g.last and g.first <= high:
                result.append(Grant(protocol, max(low, g.first), min(high, g.last), g.reason))
    return result
