"""A reference evaluator: the NetworkPolicy spec read literally, one connection at a time.

No classes, no bitsets, no caches, no port algebra: for one source pod (or address), one
destination pod (or address), one protocol and one port, walk every policy. The fast
analyzer and ``query`` must agree with it on every random cluster.
"""

from __future__ import annotations

import ipaddress

from verity.segmentation import Cluster, Direction, NetworkPolicy, PodTemplate, Protocol
from verity.segmentation.networkpolicy import Peer, PolicyPort, Rule

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Side = PodTemplate | Address


def _selects(policy: NetworkPolicy, pod: PodTemplate) -> bool:
    return policy.namespace == pod.namespace and policy.pod_selector.matches(pod.labels)


def _peer_matches(cluster: Cluster, policy: NetworkPolicy, peer: Peer, other: Side) -> bool:
    if not isinstance(other, PodTemplate):  # an address outside the cluster
        block = peer.ip_block
        return (
            block is not None
            and other in block.cidr
            and not any(other in excluded for excluded in block.excepts)
        )
    if peer.ip_block is not None:  # pod IPs are not known: ipBlocks match outside only
        return False
    if peer.namespace_selector is None:
        in_namespace = other.namespace == policy.namespace
    else:
        in_namespace = peer.namespace_selector.matches(cluster.namespace(other.namespace).labels)
    return in_namespace and (peer.pod_selector is None or peer.pod_selector.matches(other.labels))


def _port_matches(item: PolicyPort, protocol: Protocol, port: int, destination: Side) -> bool:
    if item.protocol is not protocol:
        return False
    if item.port is None:
        return True
    if isinstance(item.port, int):
        return item.port <= port <= (item.end_port or item.port)
    if not isinstance(destination, PodTemplate):
        return False  # a named port resolves on a pod only
    return any(
        c.name == item.port and c.protocol is protocol and c.port == port for c in destination.ports
    )


def _rule_matches(
    cluster: Cluster,
    policy: NetworkPolicy,
    rule: Rule,
    other: Side,
    protocol: Protocol,
    port: int,
    destination: Side,
) -> bool:
    # no peers: every source or destination, inside the cluster or outside
    peers_ok = not rule.peers or any(_peer_matches(cluster, policy, p, other) for p in rule.peers)
    ports_ok = not rule.ports or any(
        _port_matches(item, protocol, port, destination) for item in rule.ports
    )
    return peers_ok and ports_ok


def _direction_allows(
    cluster: Cluster,
    pod: PodTemplate,
    direction: Direction,
    other: Side,
    protocol: Protocol,
    port: int,
    destination: Side,
) -> bool:
    policies = [p for p in cluster.policies if _selects(p, pod) and direction in p.policy_types]
    if not policies:
        return True  # not isolated in this direction
    return any(
        _rule_matches(cluster, p, rule, other, protocol, port, destination)
        for p in policies
        for rule in p.rules(direction)
    )


def allowed(
    cluster: Cluster, source: Side, destination: Side, protocol: Protocol, port: int
) -> bool:
    """Egress at the source (if it is a pod) and ingress at the destination (if a pod)."""
    egress = not isinstance(source, PodTemplate) or _direction_allows(
        cluster, source, Direction.EGRESS, destination, protocol, port, destination
    )
    ingress = not isinstance(destination, PodTemplate) or _direction_allows(
        cluster, destination, Direction.INGRESS, source, protocol, port, destination
    )
    return egress and ingress
