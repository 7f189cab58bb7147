"""The seed guides' NetworkPolicies (examples/guides/microsegmentation), analysed: what
``api-service-policy`` and ``zero-trust-policy`` allow, and what they silently do not."""

from __future__ import annotations

from pathlib import Path

from verity.segmentation import (
    Direction,
    Isolation,
    Reason,
    WorkloadRef,
    analyze,
    load_manifests,
    query,
)
from verity.segmentation.analysis import Analysis, External
from verity.segmentation.model import Protocol

GUIDES = Path(__file__).resolve().parents[2] / "examples" / "guides" / "microsegmentation"
API = WorkloadRef("default", "api-service", "Deployment")
WEB = WorkloadRef("production", "web-service", "Deployment")


def _analysis(*paths: Path) -> Analysis:
    loaded = load_manifests(paths or [GUIDES])
    assert loaded.problems == ()
    assert loaded.ignored == ()  # README.md is not read: only YAML and JSON
    return analyze(loaded.cluster)


def _ports(analysis: Analysis, source: object, destination: object) -> list[str]:
    connection = analysis.between(source, destination)  # type: ignore[arg-type]
    return [f"{s.protocol.value}/{s.ports}" for s in connection.ports] if connection else []


def test_api_service_policy_allows_exactly_what_it_lists() -> None:
    analysis = _analysis()
    into_api = {
        str(c.source): _ports(analysis, c.source, API)
        for c in analysis.connections
        if c.destination == API
    }
    assert into_api == {"default/gateway[Deployment]": ["TCP/8080"]}
    out_of_api = {
        str(c.destination): _ports(analysis, API, c.destination)
        for c in analysis.connections
        if c.source == API
    }
    assert out_of_api == {
        "default/database[StatefulSet]": ["TCP/5432"],
        "default/redis[Deployment]": ["TCP/6379"],
        "monitoring/otel-collector[DaemonSet]": ["TCP/4318"],
    }
    gateway = analysis.between(WorkloadRef("default", "gateway", "Deployment"), API)
    assert gateway is not None
    assert gateway.ports[0].ingress == {Reason(Direction.INGRESS, "default/api-service-policy", 0)}


def test_the_guides_policies_block_dns_and_the_outside() -> None:
    analysis = _analysis()
    dns = query(
        analysis.index, "default/api-service", "monitoring/otel-collector", 53, Protocol.UDP
    )
    assert not dns.allowed  # no egress rule for DNS: the pods cannot resolve names
    assert not query(
        analysis.index, "203.0.113.9", "default/api-service", 8080, Protocol.TCP
    ).allowed
    assert not any(
        isinstance(c.source, External) for c in analysis.connections if c.destination in (API, WEB)
    )


def test_zero_trust_policy_two_peers_are_alternatives() -> None:
    analysis = _analysis()
    into_web = sorted(str(c.source) for c in analysis.connections if c.destination == WEB)
    assert into_web == ["api-gateway/edge[Deployment]", "production/api-gateway[Deployment]"]
    assert _ports(analysis, WorkloadRef("api-gateway", "edge", "Deployment"), WEB) == ["TCP/8000"]
    out_of_web = sorted(str(c.destination) for c in analysis.connections if c.source == WEB)
    assert out_of_web == ["database/postgres[StatefulSet]"]  # not default/database
    summary = {w.ref: w for w in analysis.workloads}
    assert (summary[WEB].ingress, summary[WEB].egress) == (Isolation.ISOLATED, Isolation.ISOLATED)
    assert summary[API].pods == 3


def test_without_the_name_labels_the_namespace_selectors_match_nothing() -> None:
    # Kubernetes sets only kubernetes.io/metadata.name; `name: database` must be added by hand
    analysis = _analysis(GUIDES / "seed-policies.yaml", GUIDES / "workloads.yaml")
    assert _ports(analysis, WEB, WorkloadRef("database", "postgres", "StatefulSet")) == []
    assert _ports(analysis, WorkloadRef("api-gateway", "edge", "Deployment"), WEB) == []
