"""``policy.networking.k8s.io/v1alpha1`` AdminNetworkPolicy and BaselineAdminNetworkPolicy.

Reference: the Network Policy API specification (network-policy-api.sigs.k8s.io/reference/
spec/). Cluster-scoped; ``subject`` selects pods; rules are evaluated in order, the first
matching rule decides: ``Allow``, ``Deny``, or (AdminNetworkPolicy only) ``Pass`` to the
NetworkPolicy tier. AdminNetworkPolicies are checked by ascending ``priority`` (0-1000),
before every NetworkPolicy; the single BaselineAdminNetworkPolicy (named ``default``) only
where no NetworkPolicy isolates the pod.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass
from typing import Any

from ._fields import Invalid, items, join, mapping, port_number, string
from .model import Direction, Protocol
from .networkpolicy import MAX_PORT, IpNetwork
from .selectors import MATCH_ALL, LabelSelector, parse_selector


class Action(enum.Enum):
    ALLOW = "Allow"
    DENY = "Deny"
    PASS = "Pass"  # noqa: S105 - an action name, not a password


@dataclass(frozen=True, slots=True)
class AdminPeer:
    """``namespaces`` (every pod of matching namespaces), ``pods`` (pods matching
    ``pod_selector`` in namespaces matching ``namespace_selector``), or ``networks``
    (CIDRs, egress only). ``nodes`` peers are not modelled: they match nothing here."""

    namespace_selector: LabelSelector | None = None
    pod_selector: LabelSelector | None = None
    networks: tuple[IpNetwork, ...] = ()


@dataclass(frozen=True, slots=True)
class AdminPort:
    """A port number or range of a protocol, or a named port (resolved on the destination)."""

    protocol: Protocol = Protocol.TCP
    first: int = 1
    last: int = MAX_PORT
    name: str | None = None


@dataclass(frozen=True, slots=True)
class AdminRule:
    name: str
    action: Action
    peers: tuple[AdminPeer, ...]
    ports: tuple[AdminPort, ...] | None  # None: every port of every protocol


@dataclass(frozen=True, slots=True)
class AdminPolicy:
    """An AdminNetworkPolicy (``priority`` set) or the BaselineAdminNetworkPolicy."""

    name: str
    priority: int | None
    subject_namespaces: LabelSelector
    subject_pods: LabelSelector
    ingress: tuple[AdminRule, ...] = ()
    egress: tuple[AdminRule, ...] = ()

    @property
    def kind(self) -> str:
        return "BaselineAdminNetworkPolicy" if self.priority is None else "AdminNetworkPolicy"

    @property
    def baseline(self) -> bool:
        return self.priority is None

    def rules(self, direction: Direction) -> tuple[AdminRule, ...]:
        return self.ingress if direction is Direction.INGRESS else self.egress


def parse_admin_policy(document: Any, name: str, *, baseline: bool) -> AdminPolicy:
    spec = mapping(document.get("spec"), "spec", optional=False)
    priority = None
    if not baseline:
        raw = spec.get("priority")
        if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= 1000:
            raise Invalid("spec.priority", f"expected a priority 0-1000, got {raw!r}")
        priority = raw
    elif name != "default":
        raise Invalid("metadata.name", "a BaselineAdminNetworkPolicy must be named 'default'")
    namespaces, pods = _subject(spec.get("subject"), "spec.subject")
    actions = {Action.ALLOW, Action.DENY} if baseline else set(Action)
    return AdminPolicy(
        name,
        priority,
        namespaces,
        pods,
        _rules(spec.get("ingress"), "spec.ingress", "from", actions),
        _rules(spec.get("egress"), "spec.egress", "to", actions),
    )


def _subject(data: Any, path: str) -> tuple[LabelSelector, LabelSelector]:
    body = mapping(data, path, optional=False)
    if ("namespaces" in body) == ("pods" in body):
        raise Invalid(path, "exactly one of namespaces or pods is required")
    if "namespaces" in body:
        return parse_selector(body["namespaces"], join(path, "namespaces")), MATCH_ALL
    return _pods(body["pods"], join(path, "pods"))


def _pods(data: Any, path: str) -> tuple[LabelSelector, LabelSelector]:
    body = mapping(data, path, optional=False)
    return (
        parse_selector(body.get("namespaceSelector"), join(path, "namespaceSelector")),
        parse_selector(body.get("podSelector"), join(path, "podSelector")),
    )


def _rules(data: Any, path: str, peers_key: str, actions: set[Action]) -> tuple[AdminRule, ...]:
    result = []
    for index, raw in enumerate(items(data, path)):
        rule_path = join(path, index)
        body = mapping(raw, rule_path, optional=False)
        action_raw = body.get("action")
        try:
            action = Action(action_raw)
        except ValueError:
            action = None
        if action is None or action not in actions:
            allowed = ", ".join(sorted(a.value for a in actions))
            raise Invalid(join(rule_path, "action"), f"expected {allowed}, got {action_raw!r}")
        peers_path = join(rule_path, peers_key)
        raw_peers = items(body.get(peers_key), peers_path)
        if not raw_peers:
            raise Invalid(peers_path, "at least one peer is required")
        peers = tuple(
            _peer(p, join(peers_path, i), egress=peers_key == "to") for i, p in enumerate(raw_peers)
        )
        ports = None
        if body.get("ports") is not None:
            ports_path = join(rule_path, "ports")
            ports = tuple(
                _port(p, join(ports_path, i))
                for i, p in enumerate(items(body["ports"], ports_path))
            )
        name = body.get("name")
        result.append(AdminRule(name if isinstance(name, str) else "", action, peers, ports))
    return tuple(result)


def _peer(data: Any, path: str, *, egress: bool) -> AdminPeer:
    body = mapping(data, path, optional=False)
    kinds = [k for k in ("namespaces", "pods", "nodes", "networks") if k in body]
    if len(kinds) != 1:
        raise Invalid(path, "exactly one of namespaces, pods, nodes or networks is required")
    kind = kinds[0]
    if kind in ("nodes", "networks") and not egress:
        raise Invalid(join(path, kind), f"{kind} peers are for egress rules only")
    if kind == "namespaces":
        return AdminPeer(namespace_selector=parse_selector(body[kind], join(path, kind)))
    if kind == "pods":
        namespaces, pods = _pods(body[kind], join(path, kind))
        return AdminPeer(namespace_selector=namespaces, pod_selector=pods)
    if kind == "nodes":
        return AdminPeer()  # nodes are not modelled: the peer matches nothing
    networks_path = join(path, kind)
    networks = []
    for i, value in enumerate(items(body[kind], networks_path)):
        try:
            networks.append(
                ipaddress.ip_network(string(value, join(networks_path, i)), strict=False)
            )
        except ValueError:
            raise Invalid(join(networks_path, i), f"not a CIDR: {value!r}") from None
    return AdminPeer(networks=tuple(networks))


def _port(data: Any, path: str) -> AdminPort:
    body = mapping(data, path, optional=False)
    if len(body) != 1 or next(iter(body)) not in ("portNumber", "namedPort", "portRange"):
        raise Invalid(path, "exactly one of portNumber, namedPort or portRange is required")
    kind, value = next(iter(body.items()))
    if kind == "namedPort":
        return AdminPort(name=string(value, join(path, kind)))
    entry = mapping(value, join(path, kind), optional=False)
    raw_protocol = entry.get("protocol", "TCP")
    try:
        protocol = Protocol(raw_protocol)
    except ValueError:
        raise Invalid(
            join(join(path, kind), "protocol"), f"expected TCP, UDP or SCTP, got {raw_protocol!r}"
        ) from None
    if kind == "portNumber":
        number = port_number(entry.get("port"), join(join(path, kind), "port"))
        return AdminPort(protocol, number, number)
    first = port_number(entry.get("start"), join(join(path, kind), "start"))
    last = port_number(entry.get("end"), join(join(path, kind), "end"))
    if last < first:
        raise Invalid(join(join(path, kind), "end"), f"end {last} is below start {first}")
    return AdminPort(protocol, first, last)
