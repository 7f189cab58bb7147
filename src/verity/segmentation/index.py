"""The cluster compiled for analysis: pods grouped into equivalence classes, selectors
evaluated once, and every class's rules per direction with the peers they select.

Two pods are equivalent when they share a namespace, the values of every label key some
selector reads, and the container ports every named port of a policy resolves to: no
NetworkPolicy can tell them apart. Peer sets are bitsets over classes (Python ints), so a
union or an intersection of thousands of pods costs a few machine words per class.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .adminpolicy import Action, AdminPolicy, AdminPort, AdminRule
from .model import ALL_PROTOCOLS, Cluster, ContainerPort, Direction, PodTemplate, WorkloadRef
from .networkpolicy import EVERYWHERE, MAX_PORT, IpBlock, IpNetwork, NetworkPolicy, Peer, Rule
from .ports import Grant, Reason, grant
from .selectors import MATCH_ALL, LabelSelector, Operator


@dataclass(frozen=True, slots=True)
class PodClass:
    """Pods no policy can tell apart; ``labels`` and ``ports`` keep only what policies read."""

    id: int
    namespace: str
    labels: Mapping[str, str]
    ports: tuple[ContainerPort, ...]
    members: tuple[PodTemplate, ...]

    @property
    def workloads(self) -> frozenset[WorkloadRef]:
        return frozenset(member.owner for member in self.members)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule of a policy with its peers resolved: the classes its selectors match and its
    IP blocks (a rule without peers matches every class and every address)."""

    reason: Reason
    rule: Rule
    classes: int
    blocks: tuple[IpBlock, ...]


@dataclass(frozen=True, slots=True)
class CompiledAdminRule:
    """A rule of an AdminNetworkPolicy or of the BaselineAdminNetworkPolicy, resolved."""

    reason: Reason
    action: Action
    classes: int
    networks: tuple[IpNetwork, ...]
    ports: tuple[AdminPort, ...] | None


@dataclass
class Index:
    cluster: Cluster
    classes: list[PodClass] = field(default_factory=list)
    by_workload: dict[WorkloadRef, list[int]] = field(default_factory=dict)
    # per class and direction: the rules of the policies isolating it, or None (not isolated)
    rules: dict[Direction, list[list[CompiledRule] | None]] = field(default_factory=dict)
    selecting: dict[Direction, list[tuple[str, ...]]] = field(default_factory=dict)
    # per class and direction, in evaluation order: AdminNetworkPolicy rules (by priority,
    # then name, then position) and BaselineAdminNetworkPolicy rules
    admin: dict[Direction, list[list[CompiledAdminRule]]] = field(default_factory=dict)
    baseline: dict[Direction, list[list[CompiledAdminRule]]] = field(default_factory=dict)
    _grants: dict[tuple[int, tuple[ContainerPort, ...]], tuple[Grant, ...]] = field(
        default_factory=dict
    )

    @property
    def all_classes(self) -> int:
        return (1 << len(self.classes)) - 1

    def grants(self, compiled: CompiledRule, destination: PodClass) -> tuple[Grant, ...]:
        """The ports ``compiled`` allows toward pods of ``destination`` (named ports resolve
        on the destination pod)."""
        key = (id(compiled), destination.ports)
        found = self._grants.get(key)
        if found is None:
            found = tuple(
                grant(protocol, first, last, compiled.reason)
                for port in compiled.rule.effective_ports
                for protocol, first, last in port.ranges(destination.ports)
            )
            self._grants[key] = found
        return found

    @property
    def has_admin(self) -> bool:
        return bool(self.cluster.admin_policies)

    def admin_grants(
        self, compiled: CompiledAdminRule, destination: PodClass | None
    ) -> tuple[Grant, ...]:
        """The ports an admin rule names toward ``destination`` (``None``: outside the
        cluster, where a named port resolves on nothing). A ``namedPort`` matches the
        destination's container port of that name, whatever its protocol."""
        if compiled.ports is None:
            return tuple(grant(p, 1, MAX_PORT, compiled.reason) for p in ALL_PROTOCOLS)
        result = []
        for port in compiled.ports:
            if port.name is None:
                result.append(grant(port.protocol, port.first, port.last, compiled.reason))
            elif destination is not None:
                result += [
                    grant(c.protocol, c.port, c.port, compiled.reason)
                    for c in destination.ports
                    if c.name == port.name
                ]
        return tuple(result)

    def external_grants(self, compiled: CompiledRule) -> tuple[Grant, ...]:
        """The ports ``compiled`` allows toward an address outside the cluster: named ports
        resolve on no pod there, so they allow nothing."""
        return tuple(
            grant(protocol, first, last, compiled.reason)
            for port in compiled.rule.effective_ports
            if not isinstance(port.port, str)
            for protocol, first, last in port.ranges(())
        )


def bits(value: int) -> Iterator[int]:
    """The positions of the set bits of ``value``, lowest first."""
    while value:
        low = value & -value
        yield low.bit_length() - 1
        value ^= low


def compile_cluster(cluster: Cluster) -> Index:
    """Group pods into classes and resolve every policy's selectors and peers once."""
    index = Index(cluster)
    keys, names = _relevant(cluster.policies, cluster.admin_policies)
    _group(index, keys, names)
    builder = _Builder(index)
    for direction in Direction:
        index.rules[direction] = [None] * len(index.classes)
        index.selecting[direction] = [()] * len(index.classes)
        index.admin[direction] = [[] for _ in index.classes]
        index.baseline[direction] = [[] for _ in index.classes]
    for policy in sorted(cluster.policies, key=lambda p: (p.namespace, p.name)):
        builder.add(policy)
    ordered = sorted(cluster.admin_policies, key=lambda p: (p.priority is None, p.priority, p.name))
    for admin_policy in ordered:
        builder.add_admin(admin_policy)
    return index


def _relevant(
    policies: tuple[NetworkPolicy, ...], admin_policies: tuple[AdminPolicy, ...]
) -> tuple[frozenset[str], frozenset[str]]:
    """The pod label keys some selector reads, and the port names some rule uses."""
    keys: set[str] = set()
    names: set[str] = set()
    for admin in admin_policies:
        keys |= admin.subject_pods.keys
        for admin_rule in admin.ingress + admin.egress:
            keys.update(*(p.pod_selector.keys for p in admin_rule.peers if p.pod_selector))
            names.update(p.name for p in admin_rule.ports or () if p.name is not None)
    for policy in policies:
        keys |= policy.pod_selector.keys
        for rule in policy.ingress + policy.egress:
            keys.update(*(p.pod_selector.keys for p in rule.peers if p.pod_selector))
            names.update(p.port for p in rule.ports if isinstance(p.port, str))
    return frozenset(keys), frozenset(names)


def _group(index: Index, keys: frozenset[str], names: frozenset[str]) -> None:
    groups: dict[
        tuple[str, tuple[tuple[str, str], ...], tuple[ContainerPort, ...]], list[PodTemplate]
    ] = {}
    for pod in index.cluster.pods:
        if pod.count == 0:
            continue  # a controller scaled to zero (an old ReplicaSet) runs no pod
        labels = tuple(sorted((k, v) for k, v in pod.labels.items() if k in keys))
        ports = tuple(p for p in pod.ports if p.name in names)
        groups.setdefault((pod.namespace, labels, ports), []).append(pod)
    for (namespace, labels, ports), members in sorted(groups.items(), key=lambda kv: repr(kv[0])):
        class_id = len(index.classes)
        pod_class = PodClass(
            class_id,
            str(namespace),
            MappingProxyType(dict(labels)),
            ports,
            tuple(members),
        )
        index.classes.append(pod_class)
        for workload in pod_class.workloads:
            index.by_workload.setdefault(workload, []).append(class_id)


class _Builder:
    """Evaluates selectors with caches keyed by what they depend on."""

    def __init__(self, index: Index) -> None:
        self.index = index
        self.in_namespace: dict[str, int] = {}
        for pod_class in index.classes:
            mask = self.in_namespace.get(pod_class.namespace, 0)
            self.in_namespace[pod_class.namespace] = mask | (1 << pod_class.id)
        # inverted index: (key, value) -> classes with that label, key -> classes with the key
        self.by_label: dict[tuple[str, str], int] = {}
        self.by_key: dict[str, int] = {}
        for pod_class in index.classes:
            bit = 1 << pod_class.id
            for key, value in pod_class.labels.items():
                self.by_label[(key, value)] = self.by_label.get((key, value), 0) | bit
                self.by_key[key] = self.by_key.get(key, 0) | bit
        self._pods: dict[tuple[str | int, LabelSelector], int] = {}
        self._namespaces: dict[LabelSelector, int] = {}

    def pods(self, scope: int, selector: LabelSelector, *, namespace: str | None = None) -> int:
        """Classes of ``scope`` (or of ``namespace``, when given) matching ``selector``.

        ``In`` and ``Exists`` requirements narrow the candidates through the label index
        first, so the cost follows the classes that can match, not every class.
        """
        key = (namespace if namespace is not None else scope, selector)
        found = self._pods.get(key)
        if found is not None:
            return found
        if namespace is not None:
            scope = self.in_namespace.get(namespace, 0)
        remaining = []
        for requirement in selector.requirements:
            if requirement.operator is Operator.IN:
                candidates = 0
                for value in requirement.values:
                    candidates |= self.by_label.get((requirement.key, value), 0)
                scope &= candidates
            elif requirement.operator is Operator.EXISTS:
                scope &= self.by_key.get(requirement.key, 0)
            else:
                remaining.append(requirement)
        result = scope
        if remaining:
            result = 0
            for class_id in bits(scope):
                labels = self.index.classes[class_id].labels
                if all(r.matches(labels) for r in remaining):
                    result |= 1 << class_id
        self._pods[key] = result
        return result

    def namespaces(self, selector: LabelSelector) -> int:
        """Classes in every namespace ``selector`` matches."""
        found = self._namespaces.get(selector)
        if found is None:
            found = 0
            for name, mask in self.in_namespace.items():
                if selector.matches(self.index.cluster.namespace(name).labels):
                    found |= mask
            self._namespaces[selector] = found
        return found

    def peer(self, policy: NetworkPolicy, peer: Peer) -> int:
        if peer.ip_block is not None:
            return 0
        if peer.namespace_selector is None:  # pods of the policy's own namespace
            return self.pods(0, peer.pod_selector or MATCH_ALL, namespace=policy.namespace)
        scope = self.namespaces(peer.namespace_selector)
        if peer.pod_selector is None or peer.pod_selector.empty:
            return scope
        return self.pods(scope, peer.pod_selector)

    def add(self, policy: NetworkPolicy) -> None:
        selected = self.pods(0, policy.pod_selector, namespace=policy.namespace)
        for direction in policy.policy_types:
            compiled = [
                self._rule(policy, direction, i, r) for i, r in enumerate(policy.rules(direction))
            ]
            lists = self.index.rules[direction]
            names = self.index.selecting[direction]
            for class_id in bits(selected):
                current = lists[class_id]
                lists[class_id] = compiled if current is None else current + compiled
                names[class_id] = (*names[class_id], policy.id)

    def add_admin(self, policy: AdminPolicy) -> None:
        """Append the policy's rules to every class of its subject (callers go in order)."""
        scope = self.namespaces(policy.subject_namespaces)
        subject = self.pods(scope, policy.subject_pods)
        target = self.index.baseline if policy.baseline else self.index.admin
        for direction in Direction:
            compiled = [
                self._admin_rule(policy, direction, i, r)
                for i, r in enumerate(policy.rules(direction))
            ]
            if not compiled:
                continue
            for class_id in bits(subject):
                target[direction][class_id].extend(compiled)

    def _admin_rule(
        self, policy: AdminPolicy, direction: Direction, position: int, rule: AdminRule
    ) -> CompiledAdminRule:
        reason = Reason(direction, policy.name, position, policy.kind, rule.action.value)
        classes = 0
        networks: list[IpNetwork] = []
        for peer in rule.peers:
            networks.extend(peer.networks)
            if peer.namespace_selector is not None:
                scope = self.namespaces(peer.namespace_selector)
                classes |= self.pods(scope, peer.pod_selector or MATCH_ALL)
        return CompiledAdminRule(reason, rule.action, classes, tuple(networks), rule.ports)

    def _rule(
        self, policy: NetworkPolicy, direction: Direction, position: int, rule: Rule
    ) -> CompiledRule:
        reason = Reason(direction, policy.id, position)
        if not rule.peers:
            return CompiledRule(reason, rule, self.index.all_classes, EVERYWHERE)
        classes = 0
        for peer in rule.peers:
            classes |= self.peer(policy, peer)
        blocks = tuple(p.ip_block for p in rule.peers if p.ip_block is not None)
        return CompiledRule(reason, rule, classes, blocks)
