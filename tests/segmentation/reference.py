"""A reference evaluator: the NetworkPolicy and AdminNetworkPolicy specs read literally, one
connection at a time (AdminNetworkPolicies by priority, first matching rule; then
NetworkPolicy where one isolates the pod; else the BaselineAdminNetworkPolicy).

No classes, no bitsets, no caches, no port algebra: for one source pod (or address), one
destination pod (or address), one protocol and one port, walk every policy. The fast
analyzer and ``query`` must agree with it on every random cluster.
"""

from __future__ import annotations

import ipaddress

from verity.segmentation import Cluster, Direction, NetworkPolicy, PodTemplate, Protocol
from verity.segmentation.adminpolicy import Action, AdminPeer, AdminPolicy, AdminPort
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


def _admin_subject(cluster: Cluster, policy: AdminPolicy, pod: PodTemplate) -> bool:
    namespace = cluster.namespace(pod.namespace)
    return policy.subject_namespaces.matches(namespace.labels) and policy.subject_pods.matches(
        pod.labels
    )


def _admin_peer(cluster: Cluster, peer: AdminPeer, other: Side) -> bool:
    if not isinstance(other, PodTemplate):
        return any(other in network for network in peer.networks)
    if peer.namespace_selector is None:
        return False  # a networks (or nodes) peer: pods are not matched by address
    namespace = cluster.namespace(other.namespace)
    return peer.namespace_selector.matches(namespace.labels) and (
        peer.pod_selector is None or peer.pod_selector.matches(other.labels)
    )


def _admin_port(item: AdminPort, protocol: Protocol, port: int, destination: Side) -> bool:
    if item.name is not None:
        return isinstance(destination, PodTemplate) and any(
            c.name == item.name and c.protocol is protocol and c.port == port
            for c in destination.ports
        )
    return item.protocol is protocol and item.first <= port <= item.last


def _admin_action(
    cluster: Cluster,
    policies: list[AdminPolicy],
    pod: PodTemplate,
    direction: Direction,
    other: Side,
    protocol: Protocol,
    port: int,
    destination: Side,
) -> Action | None:
    """The action of the first rule (in the order given) matching the connection."""
    for policy in policies:
        if not _admin_subject(cluster, policy, pod):
            continue
        for rule in policy.rules(direction):
            if any(_admin_peer(cluster, p, other) for p in rule.peers) and (
                rule.ports is None
                or any(_admin_port(i, protocol, port, destination) for i in rule.ports)
            ):
                return rule.action
    return None


def _tiered(
    cluster: Cluster,
    pod: PodTemplate,
    direction: Direction,
    other: Side,
    protocol: Protocol,
    port: int,
    destination: Side,
) -> bool:
    admin = sorted(
        (p for p in cluster.admin_policies if not p.baseline),
        key=lambda p: (p.priority or 0, p.name),
    )
    action = _admin_action(cluster, admin, pod, direction, other, protocol, port, destination)
    if action is Action.ALLOW:
        return True
    if action is Action.DENY:
        return False
    isolated = any(_selects(p, pod) and direction in p.policy_types for p in cluster.policies)
    if isolated:
        return _direction_allows(cluster, pod, direction, other, protocol, port, destination)
    baseline = [p for p in cluster.admin_policies if p.baseline]
    action = _admin_action(cluster, baseline, pod, direction, other, protocol, port, destination)
    return action is not Action.DENY


def allowed(
    cluster: Cluster, source: Side, destination: Side, protocol: Protocol, port: int
) -> bool:
    """Egress at the source (if it is a pod) and ingress at the destination (if a pod)."""
    egress = not isinstance(source, PodTemplate) or _tiered(
        cluster, source, Direction.EGRESS, destination, protocol, port, destination
    )
    ingress = not isinstance(destination, PodTemplate) or _tiered(
        cluster, destination, Direction.INGRESS, source, protocol, port, destination
    )
    return egress and ingress
