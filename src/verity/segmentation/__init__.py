"""Microsegmentation: what Kubernetes NetworkPolicies and AdminNetworkPolicies allow.

Pure analysis at the core (``analyze``, ``query`` over a ``Cluster``); the only I/O is
``load_manifests``, which reads YAML files and directories. See docs/segmentation.md.
"""

from __future__ import annotations

from .adminpolicy import Action as AdminAction
from .adminpolicy import AdminPolicy as AdminPolicy
from .analysis import Analysis as Analysis
from .analysis import Connection as Connection
from .analysis import External as External
from .analysis import Isolation as Isolation
from .analysis import WorkloadSummary as WorkloadSummary
from .analysis import analyze as analyze
from .errors import ManifestError as ManifestError
from .errors import QueryError as QueryError
from .errors import SegmentationError as SegmentationError
from .index import Index as Index
from .index import compile_cluster as compile_cluster
from .loading import Ignored as Ignored
from .loading import LoadResult as LoadResult
from .loading import load_documents as load_documents
from .loading import load_manifests as load_manifests
from .model import Cluster as Cluster
from .model import ContainerPort as ContainerPort
from .model import Direction as Direction
from .model import Namespace as Namespace
from .model import PodTemplate as PodTemplate
from .model import Protocol as Protocol
from .model import WorkloadRef as WorkloadRef
from .networkpolicy import IpBlock as IpBlock
from .networkpolicy import NetworkPolicy as NetworkPolicy
from .ports import PortSegment as PortSegment
from .ports import Reason as Reason
from .query import DirectionDecision as DirectionDecision
from .query import PairDecision as PairDecision
from .query import QueryResult as QueryResult
from .query import Verdict as Verdict
from .query import query as query

__all__ = [
    "AdminAction",
    "AdminPolicy",
    "Analysis",
    "Cluster",
    "Connection",
    "ContainerPort",
    "Direction",
    "DirectionDecision",
    "External",
    "Ignored",
    "Index",
    "IpBlock",
    "Isolation",
    "LoadResult",
    "ManifestError",
    "Namespace",
    "NetworkPolicy",
    "PairDecision",
    "PodTemplate",
    "PortSegment",
    "Protocol",
    "QueryError",
    "QueryResult",
    "Reason",
    "SegmentationError",
    "Verdict",
    "WorkloadRef",
    "WorkloadSummary",
    "analyze",
    "compile_cluster",
    "load_documents",
    "load_manifests",
    "query",
]
