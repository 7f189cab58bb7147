"""Property tests on random small clusters: the fast analyzer and ``query`` agree with the
reference evaluator (the spec read per connection), and with each other, on every pair of
workloads, on sampled ports of every protocol and on sampled outside addresses."""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verity.segmentation import (
    Analysis,
    Cluster,
    External,
    PodTemplate,
    Protocol,
    Verdict,
    WorkloadRef,
    analyze,
    load_documents,
    query,
)

from .reference import Side, allowed
from .strategies import SAMPLE_ADDRESSES, SAMPLE_PORTS, admin_cluster_documents, cluster_documents

CLUSTERS = st.one_of(
    cluster_documents(),
    admin_cluster_documents(baseline=False),
    admin_cluster_documents(baseline=True),
)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _pods(cluster: Cluster, workload: WorkloadRef) -> list[PodTemplate]:
    return [pod for pod in cluster.pods if pod.owner == workload]


def _expected(results: list[bool]) -> Verdict:
    if all(results):
        return Verdict.ALLOWED
    return Verdict.PARTIAL if any(results) else Verdict.DENIED


def _analysis_verdict(
    analysis: Analysis, source: Any, destination: Any, protocol: Protocol, port: int
) -> Verdict:
    connection = analysis.between(source, destination)
    covering = [s for s in (connection.ports if connection else ()) if s.covers(protocol, port)]
    if not covering:
        return Verdict.DENIED
    return Verdict.PARTIAL if covering[0].partial else Verdict.ALLOWED


def _cluster(documents: list[dict[str, Any]]) -> Cluster:
    loaded = load_documents(documents)
    assert loaded.problems == ()
    return loaded.cluster


@SETTINGS
@given(CLUSTERS)
def test_analysis_and_query_agree_with_the_reference_between_workloads(
    documents: list[dict[str, Any]],
) -> None:
    cluster = _cluster(documents)
    analysis = analyze(cluster)
    for source in cluster.workloads:
        for destination in cluster.workloads:
            for protocol in Protocol:
                for port in SAMPLE_PORTS:
                    results: list[bool] = [
                        allowed(cluster, s, d, protocol, port)
                        for s in _pods(cluster, source)
                        for d in _pods(cluster, destination)
                    ]
                    expected = _expected(results)
                    case = (str(source), str(destination), protocol, port)
                    assert (
                        _analysis_verdict(analysis, source, destination, protocol, port) is expected
                    ), case
                    answer = query(analysis.index, str(source), str(destination), port, protocol)
                    assert answer.verdict is expected, case


@SETTINGS
@given(CLUSTERS)
def test_outside_addresses_agree_with_the_reference(documents: list[dict[str, Any]]) -> None:
    cluster = _cluster(documents)
    analysis = analyze(cluster)
    for text in SAMPLE_ADDRESSES:
        address = ipaddress.ip_address(text)
        network = ipaddress.ip_network(text)
        for workload in cluster.workloads:
            for protocol in Protocol:
                for port in SAMPLE_PORTS:
                    pods: list[Side] = list(_pods(cluster, workload))
                    inbound = _expected(
                        [allowed(cluster, address, d, protocol, port) for d in pods]
                    )
                    outbound = _expected(
                        [allowed(cluster, s, address, protocol, port) for s in pods]
                    )
                    case = (text, str(workload), protocol, port)
                    assert (
                        query(analysis.index, text, str(workload), port, protocol).verdict
                        is inbound
                    ), case
                    assert (
                        query(analysis.index, str(workload), text, port, protocol).verdict
                        is outbound
                    ), case
                    # analyze: some connection from a block holding the address has the port
                    # exactly when the reference allows some pod; an unqualified one means all
                    for verdict, pairs in (
                        (
                            inbound,
                            [
                                (c.source, c.destination)
                                for c in analysis.connections
                                if c.destination == workload
                                and isinstance(c.source, External)
                                and c.source.block.contains(network)
                            ],
                        ),
                        (
                            outbound,
                            [
                                (c.source, c.destination)
                                for c in analysis.connections
                                if c.source == workload
                                and isinstance(c.destination, External)
                                and c.destination.block.contains(network)
                            ],
                        ),
                    ):
                        found = [
                            _analysis_verdict(analysis, s, d, protocol, port) for s, d in pairs
                        ]
                        listed = [v for v in found if v is not Verdict.DENIED]
                        assert bool(listed) == (verdict is not Verdict.DENIED), case
                        if Verdict.ALLOWED in listed:
                            assert verdict is Verdict.ALLOWED, case
