"""``networking.k8s.io/v1`` NetworkPolicy: the model and its exact per-field semantics.

References (Kubernetes API, networking.k8s.io/v1): NetworkPolicySpec, NetworkPolicyPeer,
NetworkPolicyPort, IPBlock; see docs/segmentation.md for the quoted rules.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from ._fields import Invalid, items, join, mapping, port_number, string
from .model import ALL_PROTOCOLS, ContainerPort, Direction, Protocol
from .selectors import LabelSelector, parse_selector

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_PORT = 65535


@dataclass(frozen=True, slots=True, order=True)
class IpBlock:
    """``cidr`` minus every ``except`` range (each inside ``cidr``)."""

    cidr: IpNetwork
    excepts: tuple[IpNetwork, ...] = ()

    def contains(self, network: IpNetwork) -> bool:
        """Whether every address of ``network`` is in the block."""
        return within(network, self.cidr) and not any(network.overlaps(e) for e in self.excepts)

    def regions(self) -> list[IpNetwork]:
        """The block as disjoint networks (``cidr`` with the ``except`` ranges cut out)."""
        result: list[IpNetwork] = [self.cidr]
        for excluded in self.excepts:
            result = subtract(result, excluded)
        return result

    def __str__(self) -> str:
        if not self.excepts:
            return str(self.cidr)
        return f"{self.cidr} except {', '.join(map(str, self.excepts))}"


def within(inner: IpNetwork, outer: IpNetwork) -> bool:
    """Whether every address of ``inner`` is in ``outer`` (false across IP versions)."""
    if isinstance(inner, ipaddress.IPv4Network) and isinstance(outer, ipaddress.IPv4Network):
        return inner.subnet_of(outer)
    if isinstance(inner, ipaddress.IPv6Network) and isinstance(outer, ipaddress.IPv6Network):
        return inner.subnet_of(outer)
    return False


def subtract(networks: list[IpNetwork], excluded: IpNetwork) -> list[IpNetwork]:
    """``networks`` without the addresses of ``excluded``."""
    result: list[IpNetwork] = []
    for network in networks:
        if network.version != excluded.version or not network.overlaps(excluded):
            result.append(network)
        elif not within(network, excluded):
            result.extend(network.address_exclude(excluded))  # type: ignore[arg-type]
    return result


EVERYWHERE = (
    IpBlock(ipaddress.ip_network("0.0.0.0/0")),
    IpBlock(ipaddress.ip_network("::/0")),
)


@dataclass(frozen=True, slots=True)
class Peer:
    """One ``from``/``to`` item: selectors (``None`` when absent) or an ``ipBlock``."""

    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: IpBlock | None = None


@dataclass(frozen=True, slots=True)
class PolicyPort:
    """One ``ports`` item; ``port`` is a number, a container port name, or ``None`` (all)."""

    protocol: Protocol = Protocol.TCP
    port: int | str | None = None
    end_port: int | None = None

    def ranges(
        self, destination_ports: tuple[ContainerPort, ...]
    ) -> list[tuple[Protocol, int, int]]:
        """The port ranges this item allows toward a pod with ``destination_ports``.

        A named port resolves on the destination pod only, to the container port of that
        name and protocol; a pod without one is not matched by this item.
        """
        if self.port is None:
            return [(self.protocol, 1, MAX_PORT)]
        if isinstance(self.port, int):
            return [(self.protocol, self.port, self.end_port or self.port)]
        return [
            (self.protocol, p.port, p.port)
            for p in destination_ports
            if p.name == self.port and p.protocol is self.protocol
        ]


ALL_PORTS = tuple(PolicyPort(protocol) for protocol in ALL_PROTOCOLS)


@dataclass(frozen=True, slots=True)
class Rule:
    """An ingress or egress rule. No peers: every peer; no ports: every port and protocol."""

    peers: tuple[Peer, ...] = ()
    ports: tuple[PolicyPort, ...] = ()

    @property
    def effective_ports(self) -> tuple[PolicyPort, ...]:
        return self.ports or ALL_PORTS


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    namespace: str
    name: str
    pod_selector: LabelSelector
    policy_types: frozenset[Direction]
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()

    def rules(self, direction: Direction) -> tuple[Rule, ...]:
        return self.ingress if direction is Direction.INGRESS else self.egress

    @property
    def id(self) -> str:
        return f"{self.namespace}/{self.name}"


def parse_network_policy(document: Any, namespace: str, name: str) -> NetworkPolicy:
    """Read a NetworkPolicy's ``spec``; raises ``Invalid`` with the key path of a problem."""
    spec = mapping(document.get("spec"), "spec", optional=False)
    selector = spec.get("podSelector")
    # Absent and {} both select every pod of the namespace (podSelector is optional since
    # Kubernetes 1.29's API; older servers required it and {} meant the same).
    pod_selector = parse_selector(selector, "spec.podSelector")
    ingress = _rules(spec.get("ingress"), "spec.ingress", "from")
    egress = _rules(spec.get("egress"), "spec.egress", "to")
    types = _policy_types(spec.get("policyTypes"), has_egress=bool(egress))
    return NetworkPolicy(namespace, name, pod_selector, types, ingress, egress)


def _policy_types(data: Any, *, has_egress: bool) -> frozenset[Direction]:
    """``policyTypes``, defaulted as the API server does: Ingress always, Egress if the
    policy has at least one egress rule (an empty ``egress: []`` does not count)."""
    listed = items(data, "spec.policyTypes")
    if not listed:
        return frozenset(
            {Direction.INGRESS, Direction.EGRESS} if has_egress else {Direction.INGRESS}
        )
    result: set[Direction] = set()
    for index, value in enumerate(listed):
        if value not in ("Ingress", "Egress"):
            raise Invalid(
                join("spec.policyTypes", index), f"expected Ingress or Egress, got {value!r}"
            )
        result.add(Direction.INGRESS if value == "Ingress" else Direction.EGRESS)
    return frozenset(result)


def _rules(data: Any, path: str, peers_key: str) -> tuple[Rule, ...]:
    rules = []
    for index, rule in enumerate(items(data, path)):
        rule_path = join(path, index)
        body = mapping(rule, rule_path)
        peers_path = join(rule_path, peers_key)
        peers = tuple(
            _peer(peer, join(peers_path, i))
            for i, peer in enumerate(items(body.get(peers_key), peers_path))
        )
        ports_path = join(rule_path, "ports")
        ports = tuple(
            _port(port, join(ports_path, i))
            for i, port in enumerate(items(body.get("ports"), ports_path))
        )
        rules.append(Rule(peers, ports))
    return tuple(rules)


def _peer(data: Any, path: str) -> Peer:
    body = mapping(data, path, optional=False)
    pods = body.get("podSelector")
    namespaces = body.get("namespaceSelector")
    block = body.get("ipBlock")
    if block is not None:
        if pods is not None or namespaces is not None:
            raise Invalid(path, "ipBlock cannot be combined with podSelector or namespaceSelector")
        return Peer(ip_block=_ip_block(block, join(path, "ipBlock")))
    if pods is None and namespaces is None:
        raise Invalid(path, "a peer needs podSelector, namespaceSelector or ipBlock")
    return Peer(
        pod_selector=None if pods is None else parse_selector(pods, join(path, "podSelector")),
        namespace_selector=(
            None
            if namespaces is None
            else parse_selector(namespaces, join(path, "namespaceSelector"))
        ),
    )


def _network(value: Any, path: str) -> IpNetwork:
    try:
        return ipaddress.ip_network(string(value, path), strict=False)
    except ValueError:
        raise Invalid(path, f"not a CIDR: {value!r}") from None


def _ip_block(data: Any, path: str) -> IpBlock:
    body = mapping(data, path, optional=False)
    cidr = _network(body.get("cidr"), join(path, "cidr"))
    except_path = join(path, "except")
    excepts = []
    for index, value in enumerate(items(body.get("except"), except_path)):
        excluded = _network(value, join(except_path, index))
        if not within(excluded, cidr):
            raise Invalid(join(except_path, index), f"{excluded} is not inside cidr {cidr}")
        excepts.append(excluded)
    return IpBlock(cidr, tuple(excepts))


def _port(data: Any, path: str) -> PolicyPort:
    body = mapping(data, path)
    raw_protocol = body.get("protocol", "TCP")
    try:
        protocol = Protocol(raw_protocol)
    except ValueError:
        raise Invalid(
            join(path, "protocol"), f"expected TCP, UDP or SCTP, got {raw_protocol!r}"
        ) from None
    raw_port = body.get("port")
    end_raw = body.get("endPort")
    port: int | str | None
    if raw_port is None or isinstance(raw_port, str):
        port = None if raw_port is None else string(raw_port, join(path, "port"))
        if end_raw is not None:
            raise Invalid(join(path, "endPort"), "endPort needs a numeric port")
        return PolicyPort(protocol, port)
    port = port_number(raw_port, join(path, "port"))
    end_port = None if end_raw is None else port_number(end_raw, join(path, "endPort"))
    if end_port is not None and end_port < port:
        raise Invalid(join(path, "endPort"), f"endPort {end_port} is below port {port}")
    return PolicyPort(protocol, port, end_port)
