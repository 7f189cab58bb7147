"""The cluster as the analysis sees it: frozen values, no I/O.

Pods are described by their template (a workload controller's pod template, or a Pod), each
under its *top owner* (``Deployment`` over ``ReplicaSet`` over ``Pod``), named
``namespace/name[Kind]``. Pod IP addresses are not known from manifests, so cluster pods are
identified by their labels and namespace, and everything outside the cluster by IP range.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .adminpolicy import AdminPolicy
    from .networkpolicy import NetworkPolicy

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


class Protocol(enum.Enum):
    """The transport protocols NetworkPolicy ports speak of."""

    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"


ALL_PROTOCOLS = (Protocol.TCP, Protocol.UDP, Protocol.SCTP)


class Direction(enum.Enum):
    INGRESS = "ingress"
    EGRESS = "egress"


@dataclass(frozen=True, slots=True, order=True)
class WorkloadRef:
    """A top owner of pods: ``namespace/name[Kind]``."""

    namespace: str
    name: str
    kind: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}[{self.kind}]"


@dataclass(frozen=True, slots=True, order=True)
class ContainerPort:
    """A container port; ``name`` is what a NetworkPolicy's named port refers to."""

    port: int
    protocol: Protocol = Protocol.TCP
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    labels: Mapping[str, str]

    @classmethod
    def build(cls, name: str, labels: Mapping[str, str] | None = None) -> Namespace:
        """A namespace with the label Kubernetes sets on every one (``metadata.name``)."""
        merged = dict(labels or {})
        merged[NAMESPACE_NAME_LABEL] = name
        return cls(name, MappingProxyType(merged))


@dataclass(frozen=True, slots=True)
class PodTemplate:
    """Pods that share labels, service account and container ports, under one top owner."""

    owner: WorkloadRef
    labels: Mapping[str, str]
    service_account: str = "default"
    ports: tuple[ContainerPort, ...] = ()
    count: int = 1

    @property
    def namespace(self) -> str:
        return self.owner.namespace


@dataclass(frozen=True, slots=True)
class ServicePort:
    port: int
    protocol: Protocol
    target: int | str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Service:
    namespace: str
    name: str
    selector: Mapping[str, str] | None
    ports: tuple[ServicePort, ...] = ()


@dataclass(frozen=True, slots=True)
class Cluster:
    """Everything loaded: namespaces, pod templates, services and policies
    (``admin_policies``: AdminNetworkPolicies and the BaselineAdminNetworkPolicy)."""

    namespaces: Mapping[str, Namespace] = field(default_factory=dict)
    pods: tuple[PodTemplate, ...] = ()
    services: tuple[Service, ...] = ()
    policies: tuple[NetworkPolicy, ...] = ()
    admin_policies: tuple[AdminPolicy, ...] = ()

    def namespace(self, name: str) -> Namespace:
        """A namespace; one that no manifest declares has only its automatic label."""
        found = self.namespaces.get(name)
        return found if found is not None else Namespace.build(name)

    @property
    def workloads(self) -> tuple[WorkloadRef, ...]:
        return tuple(sorted({pod.owner for pod in self.pods}))
