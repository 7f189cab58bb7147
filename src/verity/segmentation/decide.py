"""One direction's decision at one pod class, toward one peer, in evaluation order:

1. AdminNetworkPolicy rules of the policies whose subject holds the pod, by ascending
   priority (then name, then position; the spec leaves equal priorities to the plugin): the
   first rule matching the peer and the port decides: ``Allow``, ``Deny``, or ``Pass``,
   which hands the port to step 2.
2. NetworkPolicy, for ports not decided in step 1: if a policy isolates the pod in this
   direction, a port is allowed when one of their rules allows it, denied otherwise.
3. Where no NetworkPolicy isolates the pod: the BaselineAdminNetworkPolicy's rules, first
   match ``Allow`` or ``Deny``; a port no rule matches is allowed.

The result is the list of grants (ports with the rule that allows each). A peer is a pod
class (by id) or an *elementary* address range outside the cluster: one that every
network of every rule either contains or does not touch.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Callable
from typing import cast

from .adminpolicy import Action
from .index import CompiledAdminRule, Index, PodClass
from .model import ALL_PROTOCOLS, Direction
from .networkpolicy import EVERYWHERE, MAX_PORT, IpNetwork, within
from .ports import EVERY_PORT, Grant, PortSpace, Reason, clip, grant, minus, space_of, union

Peer = int | IpNetwork


def default_grants(direction: Direction) -> tuple[Grant, ...]:
    """Every port of every protocol, because nothing isolates the pod in ``direction``."""
    return tuple(grant(p, 1, MAX_PORT, Reason(direction)) for p in ALL_PROTOCOLS)


def network_grants(
    index: Index, direction: Direction, subject: PodClass, peer: Peer, target: PodClass | None
) -> list[Grant] | None:
    """What NetworkPolicies allow (``None``: no NetworkPolicy isolates ``subject``)."""
    rules = index.rules[direction][subject.id]
    if rules is None:
        return None
    if isinstance(peer, int):
        mask = 1 << peer
        destination = target if target is not None else index.classes[peer]
        return [g for r in rules if r.classes & mask for g in index.grants(r, destination)]
    result: list[Grant] = []
    for compiled in rules:
        if any(block.contains(peer) for block in compiled.blocks):
            if target is not None:
                result.extend(index.grants(compiled, target))
            else:
                result.extend(index.external_grants(compiled))
    return result


def admin_matches(compiled: CompiledAdminRule, peer: Peer) -> bool:
    if isinstance(peer, int):
        return bool(compiled.classes >> peer & 1)
    return any(within(peer, network) for network in compiled.networks)


def direction_grants(
    index: Index, direction: Direction, subject: PodClass, peer: Peer, target: PodClass | None
) -> list[Grant]:
    """The ports ``subject`` allows in ``direction`` with ``peer``; ``target`` is the
    destination class (named ports resolve on it), ``None`` outside the cluster."""
    network = network_grants(index, direction, subject, peer, target)
    admin = index.admin[direction][subject.id]
    baseline = index.baseline[direction][subject.id]
    if not admin and not baseline:
        return network if network is not None else list(default_grants(direction))
    allowed: list[Grant] = []
    undecided: PortSpace = EVERY_PORT
    passed: PortSpace = []
    for compiled in admin:
        if not admin_matches(compiled, peer):
            continue
        grants = index.admin_grants(compiled, target)
        if compiled.action is Action.ALLOW:
            allowed += clip(grants, undecided)
        elif compiled.action is Action.PASS:
            passed = union(passed, space_of(clip(grants, undecided)))
        undecided = minus(undecided, space_of(grants))
    space = union(undecided, passed)
    if network is not None:
        return allowed + clip(network, space)
    for compiled in baseline:
        if admin_matches(compiled, peer):
            grants = index.admin_grants(compiled, target)
            if compiled.action is Action.ALLOW:
                allowed += clip(grants, space)
            space = minus(space, space_of(grants))
    return allowed + clip(default_grants(direction), space)


def deciding_denial(
    index: Index,
    direction: Direction,
    subject: PodClass,
    peer: Peer,
    target: PodClass | None,
    covers: Callable[[Grant], bool],
) -> Reason | None:
    """The ``Deny`` rule (admin or baseline) that decides a port, if one does; ``covers``
    tells whether a grant covers the port."""
    tiers = [index.admin[direction][subject.id]]
    if index.rules[direction][subject.id] is None:
        tiers.append(index.baseline[direction][subject.id])
    for tier in tiers:
        for compiled in tier:
            if admin_matches(compiled, peer) and any(
                covers(g) for g in index.admin_grants(compiled, target)
            ):
                if compiled.action is Action.PASS:
                    break
                return compiled.reason if compiled.action is Action.DENY else None
    return None


def networks_of(index: Index, classes: list[PodClass], direction: Direction) -> set[IpNetwork]:
    """Every network a rule of these classes names in ``direction``, and everywhere."""
    networks: set[IpNetwork] = {block.cidr for block in EVERYWHERE}
    for pod_class in classes:
        for compiled in index.rules[direction][pod_class.id] or ():
            for block in compiled.blocks:
                networks.add(block.cidr)
                networks.update(block.excepts)
        for tier in (index.admin, index.baseline):
            for admin_rule in tier[direction][pod_class.id]:
                networks.update(admin_rule.networks)
    return networks


def elementary(networks: set[IpNetwork]) -> list[tuple[int, int, int, IpNetwork]]:
    """The address space cut at every network's edges: ``(version, first, last, sample)``,
    where ``sample`` is a CIDR inside the piece (every network holds all of it or none)."""
    result = []
    for version in (4, 6):
        points = sorted(
            {int(n.network_address) for n in networks if n.version == version}
            | {int(n.broadcast_address) + 1 for n in networks if n.version == version}
        )
        make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
        for start, stop in itertools.pairwise(points):
            first_cidr = next(ipaddress.summarize_address_range(make(start), make(stop - 1)))
            sample = cast(IpNetwork, first_cidr)
            result.append((version, start, stop - 1, sample))
    return result
