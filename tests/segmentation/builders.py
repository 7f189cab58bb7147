"""Compact builders of Kubernetes documents for the golden tests."""

from __future__ import annotations

from typing import Any

from verity.segmentation import Analysis, Protocol, QueryResult, analyze, load_documents, query

Doc = dict[str, Any]


def namespace(name: str, **labels: str) -> Doc:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def deployment(ns: str, name: str, labels: dict[str, str], ports: list[Doc] | None = None) -> Doc:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "i", "ports": ports or []}]},
            },
        },
    }


def pod(
    ns: str,
    name: str,
    labels: dict[str, str],
    ports: list[Doc] | None = None,
    owner: str | None = None,
) -> Doc:
    metadata: Doc = {"name": name, "namespace": ns, "labels": labels}
    if owner is not None:
        metadata["ownerReferences"] = [{"kind": "ReplicaSet", "name": owner, "controller": True}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"containers": [{"name": "c", "image": "i", "ports": ports or []}]},
    }


def policy(ns: str, name: str, spec: Doc) -> Doc:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def run(*documents: Doc) -> Analysis:
    loaded = load_documents(documents)
    assert loaded.problems == ()
    return analyze(loaded.cluster)


def ask(
    analysis: Analysis, source: str, destination: str, port: int, protocol: str = "TCP"
) -> QueryResult:
    return query(analysis.index, source, destination, port, Protocol(protocol))


def verdict(
    analysis: Analysis, source: str, destination: str, port: int, protocol: str = "TCP"
) -> str:
    return ask(analysis, source, destination, port, protocol).verdict.value
