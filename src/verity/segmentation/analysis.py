"""The complete set of allowed connections between workloads and IP ranges outside the
cluster, with the ports per protocol and every rule that allows them.

Cost: classes are compared only where an ingress peer set and an egress peer set meet
(bitset intersections), so the work grows with the connections allowed, not with
pods x pods x rules.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from .adminpolicy import Action
from .decide import default_grants, direction_grants, elementary, networks_of
from .index import Index, PodClass, bits, compile_cluster
from .model import Cluster, Direction, WorkloadRef
from .networkpolicy import EVERYWHERE, IpBlock, IpNetwork
from .ports import Grant, PortSegment, combine, connect


@dataclass(frozen=True, slots=True, order=True)
class External:
    """Addresses outside the cluster, as an IP block of a rule (or everywhere)."""

    block: IpBlock

    def __str__(self) -> str:
        return str(self.block)


Endpoint = WorkloadRef | External


@dataclass(frozen=True, slots=True)
class Connection:
    source: Endpoint
    destination: Endpoint
    ports: tuple[PortSegment, ...]


class Isolation(enum.Enum):
    ISOLATED = "isolated"
    OPEN = "open"
    PARTIAL = "partial"


@dataclass(frozen=True, slots=True)
class WorkloadSummary:
    ref: WorkloadRef
    pods: int
    ingress: Isolation
    egress: Isolation


@dataclass(frozen=True, slots=True)
class Analysis:
    workloads: tuple[WorkloadSummary, ...]
    connections: tuple[Connection, ...]
    index: Index

    def between(self, source: Endpoint, destination: Endpoint) -> Connection | None:
        for connection in self.connections:
            if connection.source == source and connection.destination == destination:
                return connection
        return None


def pair_grants(index: Index, source: int, destination: int) -> tuple[list[Grant], list[Grant]]:
    """The egress grants of ``source`` toward ``destination`` and the ingress grants of
    ``destination`` from ``source`` (classes by id)."""
    target = index.classes[destination]
    return (
        direction_grants(index, Direction.EGRESS, index.classes[source], destination, target),
        direction_grants(index, Direction.INGRESS, target, source, target),
    )


def analyze(cluster: Cluster) -> Analysis:
    """Every allowed connection of ``cluster``."""
    index = compile_cluster(cluster)
    pairs = _class_pairs(index)
    outside = _external_by_region(index) if index.has_admin else _external_connections(index)
    connections = _workload_connections(index, pairs) + outside
    return Analysis(_summaries(index), tuple(sorted(connections, key=_order)), index)


def _order(connection: Connection) -> tuple[str, str, str, str]:
    def key(endpoint: Endpoint) -> tuple[str, str]:
        return ("0", str(endpoint)) if isinstance(endpoint, WorkloadRef) else ("1", str(endpoint))

    return (*key(connection.source), *key(connection.destination))


def _class_pairs(index: Index) -> dict[tuple[int, int], tuple[PortSegment, ...]]:
    everything = index.all_classes
    ingress_from = [
        everything if rules is None else _union(r.classes for r in rules) | admitted
        for rules, admitted in zip(
            index.rules[Direction.INGRESS], _admin_allowed(index, Direction.INGRESS), strict=True
        )
    ]
    open_egress = to_all = 0
    explicit = [0] * len(index.classes)
    admitted = _admin_allowed(index, Direction.EGRESS)
    for source, rules in enumerate(index.rules[Direction.EGRESS]):
        if rules is None:
            open_egress |= 1 << source
            continue
        reach = _union(r.classes for r in rules) | admitted[source]
        if reach == everything:
            to_all |= 1 << source
            continue
        for destination in bits(reach):
            explicit[destination] |= 1 << source
    result: dict[tuple[int, int], tuple[PortSegment, ...]] = {}
    memo: dict[tuple[object, ...], tuple[PortSegment, ...]] = {}
    for destination in range(len(index.classes)):
        candidates = ingress_from[destination] & (open_egress | to_all | explicit[destination])
        for source in bits(candidates):
            egress, ingress = pair_grants(index, source, destination)
            key = (tuple(egress), tuple(ingress))
            segments = memo.get(key)
            if segments is None:
                segments = memo[key] = connect(egress, ingress)
            if segments:
                result[(source, destination)] = segments
    return result


def _admin_allowed(index: Index, direction: Direction) -> list[int]:
    """Per class, the peers an AdminNetworkPolicy ``Allow`` rule may admit past the
    NetworkPolicy tier (candidates only: the decision is ``direction_grants``)."""
    return [
        _union(r.classes for r in rules if r.action is Action.ALLOW)
        for rules in index.admin[direction]
    ]


def _union(masks: Iterable[int]) -> int:
    result = 0
    for mask in masks:
        result |= mask
    return result


def _workload_connections(
    index: Index, pairs: dict[tuple[int, int], tuple[PortSegment, ...]]
) -> list[Connection]:
    grouped: dict[tuple[WorkloadRef, WorkloadRef], list[tuple[PortSegment, ...]]] = {}
    for (source, destination), segments in pairs.items():
        for from_workload in index.classes[source].workloads:
            for to_workload in index.classes[destination].workloads:
                grouped.setdefault((from_workload, to_workload), []).append(segments)
    return [
        Connection(
            src, dst, combine(lists, len(index.by_workload[src]) * len(index.by_workload[dst]))
        )
        for (src, dst), lists in grouped.items()
    ]


def _external_connections(index: Index) -> list[Connection]:
    inbound: dict[tuple[IpBlock, WorkloadRef], list[tuple[PortSegment, ...]]] = {}
    outbound: dict[tuple[IpBlock, WorkloadRef], list[tuple[PortSegment, ...]]] = {}
    outside_egress, outside_ingress = (
        default_grants(Direction.EGRESS),
        default_grants(Direction.INGRESS),
    )
    for pod_class in index.classes:
        for block, grants in _blocks(index, pod_class, Direction.INGRESS).items():
            segments = connect(outside_egress, grants)
            for workload in pod_class.workloads:
                inbound.setdefault((block, workload), []).append(segments)
        for block, grants in _blocks(index, pod_class, Direction.EGRESS).items():
            segments = connect(grants, outside_ingress)
            for workload in pod_class.workloads:
                outbound.setdefault((block, workload), []).append(segments)
    result = []
    for (block, workload), lists in inbound.items():
        ports = combine(lists, len(index.by_workload[workload]))
        result.append(Connection(External(block), workload, ports))
    for (block, workload), lists in outbound.items():
        ports = combine(lists, len(index.by_workload[workload]))
        result.append(Connection(workload, External(block), ports))
    return [c for c in result if c.ports]


def _blocks(index: Index, pod_class: PodClass, direction: Direction) -> dict[IpBlock, list[Grant]]:
    """The IP blocks a class may talk to (or hear from) outside the cluster, with ports."""
    rules = index.rules[direction][pod_class.id]
    if rules is None:
        return {block: list(default_grants(direction)) for block in EVERYWHERE}
    result: dict[IpBlock, list[Grant]] = {}
    for compiled in rules:
        grants = (
            index.grants(compiled, pod_class)
            if direction is Direction.INGRESS
            else index.external_grants(compiled)
        )
        for block in compiled.blocks:
            result.setdefault(block, []).extend(grants)
    return result


def _external_by_region(index: Index) -> list[Connection]:
    """Connections with the outside when AdminNetworkPolicies take part: their ordered
    rules can split an IP block, so the address space is cut at every network any rule
    names and each piece decided on its own; pieces with the same ports are reported
    together (as CIDRs, or as everything except a few CIDRs when that is shorter)."""
    result: list[Connection] = []
    for workload, class_ids in sorted(index.by_workload.items()):
        classes = [index.classes[c] for c in class_ids]
        for direction in Direction:
            groups: dict[tuple[int, tuple[PortSegment, ...]], list[tuple[int, int]]] = {}
            for version, first, last, sample in elementary(networks_of(index, classes, direction)):
                ports = _region_ports(index, classes, direction, sample)
                if ports:
                    groups.setdefault((version, ports), []).append((first, last))
            for (version, ports), ranges in groups.items():
                for block in _blocks_of(version, ranges):
                    outside = External(block)
                    if direction is Direction.INGRESS:
                        result.append(Connection(outside, workload, ports))
                    else:
                        result.append(Connection(workload, outside, ports))
    return result


def _blocks_of(version: int, ranges: list[tuple[int, int]]) -> list[IpBlock]:
    """Address ranges as IP blocks: one CIDR each, or everything minus the gaps."""
    make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    everything = EVERYWHERE[0].cidr if version == 4 else EVERYWHERE[1].cidr

    def cidrs(spans: list[tuple[int, int]]) -> list[IpNetwork]:
        return [n for a, b in spans for n in ipaddress.summarize_address_range(make(a), make(b))]

    inside = cidrs(ranges)
    gaps, cursor = [], 0
    for first, last in sorted(ranges):
        if first > cursor:
            gaps.append((cursor, first - 1))
        cursor = last + 1
    if cursor <= int(everything.broadcast_address):
        gaps.append((cursor, int(everything.broadcast_address)))
    outside = cidrs(gaps)
    if len(outside) + 1 < len(inside):
        return [IpBlock(everything, tuple(outside))]
    return [IpBlock(network) for network in inside]


def _region_ports(
    index: Index, classes: list[PodClass], direction: Direction, sample: IpNetwork
) -> tuple[PortSegment, ...]:
    lists = []
    for pod_class in classes:
        if direction is Direction.INGRESS:
            grants = direction_grants(index, direction, pod_class, sample, pod_class)
            segments = connect(default_grants(Direction.EGRESS), grants)
        else:
            grants = direction_grants(index, direction, pod_class, sample, None)
            segments = connect(grants, default_grants(Direction.INGRESS))
        if segments:
            lists.append(segments)
    return combine(lists, len(classes))


def _summaries(index: Index) -> tuple[WorkloadSummary, ...]:
    result = []
    for workload in sorted(index.by_workload):
        classes = index.by_workload[workload]
        pods = sum(
            m.count for c in classes for m in index.classes[c].members if m.owner == workload
        )
        result.append(
            WorkloadSummary(
                workload,
                pods,
                _isolation(index, classes, Direction.INGRESS),
                _isolation(index, classes, Direction.EGRESS),
            )
        )
    return tuple(result)


def _isolation(index: Index, classes: list[int], direction: Direction) -> Isolation:
    isolated = [index.rules[direction][c] is not None for c in classes]
    if all(isolated):
        return Isolation.ISOLATED
    return Isolation.PARTIAL if any(isolated) else Isolation.OPEN
