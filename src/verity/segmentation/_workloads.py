"""Namespaces, Services, Pods and workload controllers read from manifests, and the
ownership chain that names every pod by its top owner (``Deployment`` over ``ReplicaSet``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ._fields import Invalid, items, join, labels, mapping, optional_string, port_number, string
from .model import (
    ContainerPort,
    Namespace,
    PodTemplate,
    Protocol,
    Service,
    ServicePort,
    WorkloadRef,
)

# Where each kind keeps its pod template, and the field giving its pod count.
_TEMPLATES: dict[str, tuple[tuple[str, ...], str | None]] = {
    "Pod": ((), None),
    "Deployment": (("spec", "template"), "replicas"),
    "StatefulSet": (("spec", "template"), "replicas"),
    "ReplicaSet": (("spec", "template"), "replicas"),
    "ReplicationController": (("spec", "template"), "replicas"),
    "DaemonSet": (("spec", "template"), None),
    "Job": (("spec", "template"), "parallelism"),
    "CronJob": (("spec", "jobTemplate", "spec", "template"), None),
}


@dataclass(frozen=True, slots=True)
class RawPods:
    """A pod template before its owner chain is resolved."""

    self_ref: WorkloadRef
    owner: tuple[str, str] | None  # (kind, name) of the controlling owner, same namespace
    labels: Mapping[str, str]
    service_account: str
    ports: tuple[ContainerPort, ...]
    count: int


def parse_namespace(metadata: Mapping[str, Any], name: str) -> Namespace:
    return Namespace.build(name, labels(metadata.get("labels"), "metadata.labels"))


def parse_service(body: Mapping[str, Any], namespace: str, name: str) -> Service:
    spec = mapping(body.get("spec"), "spec")
    selector = spec.get("selector")
    ports = []
    for index, raw in enumerate(items(spec.get("ports"), "spec.ports")):
        path = join("spec.ports", index)
        entry = mapping(raw, path, optional=False)
        port = port_number(entry.get("port"), join(path, "port"))
        target = entry.get("targetPort", port)
        if not isinstance(target, str):
            target = port_number(target, join(path, "targetPort"))
        ports.append(
            ServicePort(
                port,
                _protocol(entry.get("protocol"), join(path, "protocol")),
                target,
                entry.get("name"),
            )
        )
    return Service(
        namespace,
        name,
        None if selector is None else MappingProxyType(labels(selector, "spec.selector")),
        tuple(ports),
    )


def parse_pods(body: Mapping[str, Any], kind: str, namespace: str, name: str) -> RawPods:
    """The pod template of a Pod or a workload controller."""
    where, count_field = _TEMPLATES[kind]
    template: Any = body
    path = ""
    for key in where:
        path = join(path, key)
        template = mapping(template.get(key), path, optional=False)
    meta_path = join(path, "metadata") if path else "metadata"
    spec_path = join(path, "spec") if path else "spec"
    metadata = mapping(template.get("metadata"), meta_path)
    spec = mapping(template.get("spec"), spec_path, optional=False)
    count = 1
    if count_field is not None:
        raw_count = mapping(body.get("spec"), "spec").get(count_field, 1)
        if isinstance(raw_count, bool) or not isinstance(raw_count, int) or raw_count < 0:
            raise Invalid(join("spec", count_field), f"expected a count, got {raw_count!r}")
        count = raw_count
    return RawPods(
        WorkloadRef(namespace, name, kind),
        _controller(mapping(body.get("metadata"), "metadata")),
        MappingProxyType(labels(metadata.get("labels"), join(meta_path, "labels"))),
        optional_string(
            spec.get("serviceAccountName"), join(spec_path, "serviceAccountName"), "default"
        ),
        _container_ports(spec, spec_path),
        count,
    )


def _controller(metadata: Mapping[str, Any]) -> tuple[str, str] | None:
    path = "metadata.ownerReferences"
    for index, raw in enumerate(items(metadata.get("ownerReferences"), path)):
        ref = mapping(raw, join(path, index), optional=False)
        if ref.get("controller") is True:
            return (
                string(ref.get("kind"), join(join(path, index), "kind")),
                string(ref.get("name"), join(join(path, index), "name")),
            )
    return None


def _container_ports(spec: Mapping[str, Any], spec_path: str) -> tuple[ContainerPort, ...]:
    result = []
    containers_path = join(spec_path, "containers")
    for c_index, raw in enumerate(items(spec.get("containers"), containers_path)):
        container_path = join(containers_path, c_index)
        container = mapping(raw, container_path, optional=False)
        ports_path = join(container_path, "ports")
        for p_index, raw_port in enumerate(items(container.get("ports"), ports_path)):
            path = join(ports_path, p_index)
            entry = mapping(raw_port, path, optional=False)
            name = entry.get("name")
            result.append(
                ContainerPort(
                    port_number(entry.get("containerPort"), join(path, "containerPort")),
                    _protocol(entry.get("protocol"), join(path, "protocol")),
                    None if name is None else string(name, join(path, "name")),
                )
            )
    return tuple(sorted(result))


def _protocol(value: Any, path: str) -> Protocol:
    try:
        return Protocol(value or "TCP")
    except ValueError:
        raise Invalid(path, f"expected TCP, UDP or SCTP, got {value!r}") from None


def resolve_owners(raw: list[RawPods]) -> tuple[PodTemplate, ...]:
    """Each template under its top owner: follow controller references through the loaded
    controllers; an owner that was not loaded is named from the reference itself.

    A controller whose pods (or child controllers) are loaded too is represented by them,
    not by its own template: a dump holding a Deployment, its ReplicaSets and their Pods
    counts each pod once, and during a rollout the ReplicaSets' differing templates (with
    their own replica counts) are what runs.
    """
    owners = {(r.self_ref.namespace, r.self_ref.kind, r.self_ref.name): r.owner for r in raw}
    parents = {(r.self_ref.namespace, r.owner[0], r.owner[1]) for r in raw if r.owner}
    return tuple(
        PodTemplate(
            _top(owners, r.self_ref, r.owner), r.labels, r.service_account, r.ports, r.count
        )
        for r in raw
        if (r.self_ref.namespace, r.self_ref.kind, r.self_ref.name) not in parents
    )


def _top(
    owners: Mapping[tuple[str, str, str], tuple[str, str] | None],
    ref: WorkloadRef,
    owner: tuple[str, str] | None,
) -> WorkloadRef:
    seen = {ref}
    while owner is not None:
        ref = WorkloadRef(ref.namespace, owner[1], owner[0])
        if ref in seen:  # a reference cycle: stop at the last distinct owner
            break
        seen.add(ref)
        owner = owners.get((ref.namespace, ref.kind, ref.name))
    return ref
