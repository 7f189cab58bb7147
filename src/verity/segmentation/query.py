"""One question: may SOURCE reach DESTINATION on PORT/PROTOCOL? The answer is a value:
the verdict, and for every pair of pod classes the decision of each direction with the
policies that isolate the pod and the rules that allow the port.

A source or destination is a workload (``namespace/name`` or ``namespace/name[Kind]``)
or addresses outside the cluster (an IP address or a CIDR). Pods of one workload can
differ (labels, named ports), so the verdict is ``allowed`` when every pod pair is,
``denied`` when none is, and ``partial`` otherwise.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .decide import Peer, deciding_denial, direction_grants, elementary, networks_of
from .errors import QueryError
from .index import Index, PodClass
from .model import Direction, Protocol, WorkloadRef
from .networkpolicy import IpNetwork, within
from .ports import Grant, Reason


class Verdict(enum.Enum):
    ALLOWED = "allowed"
    PARTIAL = "partial"
    DENIED = "denied"


@dataclass(frozen=True, slots=True)
class DirectionDecision:
    """One direction's say: ``governed`` is false outside the cluster (no policy applies);
    ``isolating`` names the NetworkPolicies that select the pod for this direction;
    ``allowed_by`` the rules (or the absence of isolation) that allow the port;
    ``denied_by`` the AdminNetworkPolicy or BaselineAdminNetworkPolicy ``Deny`` rules that
    refuse it."""

    direction: Direction
    governed: bool
    isolating: tuple[str, ...]
    allowed_by: tuple[Reason, ...]
    verdict: Verdict
    denied_by: tuple[Reason, ...] = ()


@dataclass(frozen=True, slots=True)
class PairDecision:
    source: str
    destination: str
    egress: DirectionDecision
    ingress: DirectionDecision
    verdict: Verdict


@dataclass(frozen=True, slots=True)
class QueryResult:
    source: str
    destination: str
    port: int
    protocol: Protocol
    verdict: Verdict
    pairs: tuple[PairDecision, ...]

    @property
    def allowed(self) -> bool:
        """Whether some pod pair is allowed (``partial`` counts: the path exists)."""
        return self.verdict is not Verdict.DENIED


Target = WorkloadRef | IpNetwork


def resolve(index: Index, text: str) -> Target:
    """A workload (``ns/name`` or ``ns/name[Kind]``) or an IP address / CIDR."""
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        pass
    namespace, slash, rest = text.partition("/")
    if not slash or not namespace or not rest:
        raise QueryError(f"{text!r} is neither NAMESPACE/WORKLOAD nor an IP address or CIDR")
    name, bracket, kind = rest.partition("[")
    kind = kind.removesuffix("]") if bracket else ""
    found = [
        w
        for w in index.by_workload
        if w.namespace == namespace and w.name == name and (not kind or w.kind == kind)
    ]
    if not found:
        raise QueryError(f"no workload {text!r} with pods in the manifests")
    if len(found) > 1:
        kinds = ", ".join(sorted(str(w) for w in found))
        raise QueryError(f"{text!r} is ambiguous: {kinds}; add the kind, as NS/NAME[Kind]")
    return found[0]


def query(
    index: Index, source: str, destination: str, port: int, protocol: Protocol
) -> QueryResult:
    """Decide one connection; raises ``QueryError`` for an unknown endpoint or a bad port."""
    if not 1 <= port <= 65535:
        raise QueryError(f"port {port} is outside 1-65535")
    src, dst = resolve(index, source), resolve(index, destination)
    if not isinstance(src, WorkloadRef) and not isinstance(dst, WorkloadRef):
        raise QueryError(
            "at least one side must be a workload: traffic between two addresses "
            "outside the cluster is not governed by NetworkPolicy"
        )
    pairs = tuple(_pairs(index, src, dst, port, protocol))
    return QueryResult(
        str(src), str(dst), port, protocol, _overall(p.verdict for p in pairs), pairs
    )


def _both(egress: Verdict, ingress: Verdict) -> Verdict:
    """A connection needs both directions: denied if either denies."""
    if Verdict.DENIED in (egress, ingress):
        return Verdict.DENIED
    return Verdict.ALLOWED if egress is ingress is Verdict.ALLOWED else Verdict.PARTIAL


def _overall(verdicts: Iterable[Verdict]) -> Verdict:
    """Over pod pairs: allowed if all are, denied if none is allowed at all."""
    found = set(verdicts)
    if found == {Verdict.ALLOWED}:
        return Verdict.ALLOWED
    if found <= {Verdict.DENIED}:
        return Verdict.DENIED
    return Verdict.PARTIAL


def _pairs(
    index: Index, src: Target, dst: Target, port: int, protocol: Protocol
) -> list[PairDecision]:
    """One decision per (source class, destination class); an address is one "class"."""
    result = []
    if isinstance(src, WorkloadRef) and isinstance(dst, WorkloadRef):
        for s in _classes(index, src):
            for d in _classes(index, dst):
                out = _decide(index, Direction.EGRESS, s, [(d.id, d)], port, protocol)
                into = _decide(index, Direction.INGRESS, d, [(s.id, d)], port, protocol)
                result.append(_pair(_describe(s, src), _describe(d, dst), out, into))
    elif isinstance(dst, WorkloadRef) and not isinstance(src, WorkloadRef):
        for d in _classes(index, dst):  # from outside the cluster: only ingress governs
            regions = [(r, d) for r in _regions(index, d, Direction.INGRESS, src)]
            into = _decide(index, Direction.INGRESS, d, regions, port, protocol)
            result.append(_pair(str(src), _describe(d, dst), _outside(Direction.EGRESS), into))
    elif isinstance(src, WorkloadRef) and not isinstance(dst, WorkloadRef):
        for s in _classes(index, src):  # to outside the cluster: only egress governs
            pieces = [(r, None) for r in _regions(index, s, Direction.EGRESS, dst)]
            out = _decide(index, Direction.EGRESS, s, pieces, port, protocol)
            result.append(_pair(_describe(s, src), str(dst), out, _outside(Direction.INGRESS)))
    return result


def _regions(
    index: Index, pod_class: PodClass, direction: Direction, network: IpNetwork
) -> list[IpNetwork]:
    """``network`` cut at the edges of every network the class's rules name: each piece is
    decided as a whole."""
    networks = networks_of(index, [pod_class], direction) | {network}
    return [
        sample
        for _, _, _, sample in elementary(networks)
        if sample.version == network.version and within(sample, network)
    ]


def _decide(
    index: Index,
    direction: Direction,
    subject: PodClass,
    peers: Sequence[tuple[Peer, PodClass | None]],
    port: int,
    protocol: Protocol,
) -> DirectionDecision:
    """The decision at ``subject`` for every peer (a class, or the pieces of an address
    range, each with its destination class): allowed for all, some or none of them."""
    allowed: set[Reason] = set()
    denied: set[Reason] = set()
    count = 0

    def covers(g: Grant) -> bool:
        return g.protocol is protocol and g.first <= port <= g.last

    for peer, target in peers:
        reasons = {
            g.reason for g in direction_grants(index, direction, subject, peer, target) if covers(g)
        }
        allowed |= reasons
        count += bool(reasons)
        denial = deciding_denial(index, direction, subject, peer, target, covers)
        if denial is not None:
            denied.add(denial)
    verdict = Verdict.PARTIAL if count else Verdict.DENIED
    if count == len(peers):
        verdict = Verdict.ALLOWED
    return DirectionDecision(
        direction,
        True,
        index.selecting[direction][subject.id],
        tuple(sorted(allowed)),
        verdict,
        tuple(sorted(denied)),
    )


def _pair(
    source: str, destination: str, out: DirectionDecision, into: DirectionDecision
) -> PairDecision:
    return PairDecision(source, destination, out, into, _both(out.verdict, into.verdict))


def _classes(index: Index, workload: WorkloadRef) -> list[PodClass]:
    return [index.classes[c] for c in index.by_workload[workload]]


def _describe(pod_class: PodClass, target: WorkloadRef) -> str:
    labels = ",".join(f"{k}={v}" for k, v in sorted(pod_class.labels.items()))
    ports = ",".join(f"{p.name}={p.port}/{p.protocol.value}" for p in pod_class.ports)
    detail = "; ".join(part for part in (labels, ports and f"ports {ports}") if part)
    return f"{target} ({detail})" if detail else str(target)


def _outside(direction: Direction) -> DirectionDecision:
    return DirectionDecision(direction, False, (), (Reason(direction),), Verdict.ALLOWED)
