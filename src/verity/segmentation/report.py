"""JSON documents for analyses and query results (schema versioned, docs/segmentation.md)."""

from __future__ import annotations

from typing import Any

from .analysis import Analysis, Connection, Endpoint, External
from .loading import LoadResult
from .model import WorkloadRef
from .ports import PortSegment, Reason
from .query import DirectionDecision, QueryResult

ANALYSIS_SCHEMA = "verity.segment.analysis/v1"
QUERY_SCHEMA = "verity.segment.query/v1"
Json = dict[str, Any]


def reason_json(reason: Reason) -> Json:
    if reason.default:
        return {"direction": reason.direction.value, "default": True}
    body: Json = {"direction": reason.direction.value, "policy": reason.policy, "rule": reason.rule}
    if reason.kind != "NetworkPolicy":
        body.update(kind=reason.kind, action=reason.action)
    return body


def endpoint_json(endpoint: Endpoint) -> Json:
    if isinstance(endpoint, External):
        block = endpoint.block
        return {"cidr": str(block.cidr), "except": [str(e) for e in block.excepts]}
    return {"workload": str(endpoint), **_workload(endpoint)}


def _workload(ref: WorkloadRef) -> Json:
    return {"namespace": ref.namespace, "name": ref.name, "kind": ref.kind}


def segment_json(segment: PortSegment) -> Json:
    return {
        "protocol": segment.protocol.value,
        "from": segment.first,
        "to": segment.last,
        "partial": segment.partial,
        "egress": [reason_json(r) for r in sorted(segment.egress)],
        "ingress": [reason_json(r) for r in sorted(segment.ingress)],
    }


def connection_json(connection: Connection) -> Json:
    return {
        "from": endpoint_json(connection.source),
        "to": endpoint_json(connection.destination),
        "ports": [segment_json(s) for s in connection.ports],
    }


def analysis_json(analysis: Analysis, loaded: LoadResult) -> Json:
    return {
        "schema": ANALYSIS_SCHEMA,
        "workloads": [
            {
                "workload": str(w.ref),
                **_workload(w.ref),
                "pods": w.pods,
                "ingress": w.ingress.value,
                "egress": w.egress.value,
            }
            for w in analysis.workloads
        ],
        "connections": [connection_json(c) for c in analysis.connections],
        "ignored": [
            {
                "file": i.file,
                "document": i.document,
                "apiVersion": i.api_version,
                "kind": i.kind,
                "name": i.name,
            }
            for i in loaded.ignored
        ],
        "warnings": [
            {
                "file": i.file,
                "document": i.document,
                "message": f"{i.api_version} {i.kind} {i.name} is not analysed yet: "
                "the connections listed may be wrong",
            }
            for i in loaded.unanalysed_policies
        ],
        "problems": [
            {"file": e.file, "document": e.document, "path": p.path, "message": p.message}
            for e in loaded.problems
            for p in e.problems
        ],
    }


def _direction(decision: DirectionDecision) -> Json:
    return {
        "verdict": decision.verdict.value,
        "governed": decision.governed,
        "isolating": list(decision.isolating),
        "allowed_by": [reason_json(r) for r in decision.allowed_by],
        "denied_by": [reason_json(r) for r in decision.denied_by],
    }


def query_json(result: QueryResult) -> Json:
    return {
        "schema": QUERY_SCHEMA,
        "from": result.source,
        "to": result.destination,
        "port": result.port,
        "protocol": result.protocol.value,
        "verdict": result.verdict.value,
        "allowed": result.allowed,
        "pairs": [
            {
                "from": p.source,
                "to": p.destination,
                "verdict": p.verdict.value,
                "egress": _direction(p.egress),
                "ingress": _direction(p.ingress),
            }
            for p in result.pairs
        ],
    }
