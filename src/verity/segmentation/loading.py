"""Reading Kubernetes manifests (files or directories, multi-document, ``List`` kinds) into a
``Cluster``. The only module of the package that does I/O.

Each document is read on its own: a malformed one raises ``ManifestError`` (file, document
index, key path), or with ``keep_going`` is recorded and skipped while the rest is read.
Kinds outside the analysis (and other API groups' kinds of the same name, such as Calico's
``NetworkPolicy``) are listed in ``LoadResult.ignored``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import yamlio
from ..errors import Problem
from ._fields import Invalid, items, join, mapping, optional_string, string
from ._workloads import RawPods, parse_namespace, parse_pods, parse_service, resolve_owners
from .adminpolicy import AdminPolicy, parse_admin_policy
from .errors import ManifestError
from .model import Cluster, Namespace, Service
from .networkpolicy import NetworkPolicy, parse_network_policy

SUFFIXES = (".yaml", ".yml", ".json")
_GROUPS = {
    "Namespace": "",
    "Pod": "",
    "Service": "",
    "ReplicationController": "",
    "Deployment": "apps",
    "StatefulSet": "apps",
    "DaemonSet": "apps",
    "ReplicaSet": "apps",
    "Job": "batch",
    "CronJob": "batch",
    "NetworkPolicy": "networking.k8s.io",
    "AdminNetworkPolicy": "policy.networking.k8s.io",
    "BaselineAdminNetworkPolicy": "policy.networking.k8s.io",
}
_VERSIONS = {
    "NetworkPolicy": "v1",
    "AdminNetworkPolicy": "v1alpha1",
    "BaselineAdminNetworkPolicy": "v1alpha1",
}
_CLUSTER_SCOPED = frozenset({"Namespace", "AdminNetworkPolicy", "BaselineAdminNetworkPolicy"})


@dataclass(frozen=True, slots=True)
class Ignored:
    """A document of a kind the analysis does not read."""

    file: str
    document: int
    api_version: str
    kind: str
    name: str


# Policy kinds that change what may connect but that this analysis does not read yet:
# their presence means the answer may be wrong, so it is said out loud.
_UNANALYSED_POLICIES = frozenset(
    {
        "AdminNetworkPolicy",  # of another API version
        "BaselineAdminNetworkPolicy",
        "NetworkPolicy",  # of another API group (Calico, Cilium's CiliumNetworkPolicy below)
        "GlobalNetworkPolicy",
        "CiliumNetworkPolicy",
        "CiliumClusterwideNetworkPolicy",
        "AuthorizationPolicy",
        "PeerAuthentication",
    }
)


@dataclass(frozen=True, slots=True)
class LoadResult:
    cluster: Cluster
    ignored: tuple[Ignored, ...] = ()
    problems: tuple[ManifestError, ...] = ()

    @property
    def unanalysed_policies(self) -> tuple[Ignored, ...]:
        """Ignored documents that are policies of another kind: AdminNetworkPolicy can deny
        what a NetworkPolicy allows (and allow what it denies), Istio can deny at L7, so an
        analysis without them may be wrong."""
        return tuple(i for i in self.ignored if i.kind in _UNANALYSED_POLICIES)


@dataclass
class _Collector:
    keep_going: bool
    namespaces: dict[str, Namespace] = field(default_factory=dict)
    pods: list[RawPods] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    policies: list[NetworkPolicy] = field(default_factory=list)
    admin_policies: list[AdminPolicy] = field(default_factory=list)
    ignored: list[Ignored] = field(default_factory=list)
    problems: list[ManifestError] = field(default_factory=list)
    seen: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def fail(self, file: str, document: int, path: str, message: str) -> None:
        error = ManifestError(file, document, [Problem(path, message)])
        if not self.keep_going:
            raise error
        self.problems.append(error)


def manifest_files(paths: Iterable[str | Path]) -> list[Path]:
    """The files to read: each file given, and every YAML/JSON file under each directory."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES))
        else:
            files.append(path)
    return files


def load_manifests(paths: Iterable[str | Path], *, keep_going: bool = False) -> LoadResult:
    """Read every manifest under ``paths`` into a ``Cluster``."""
    collector = _Collector(keep_going)
    for path in manifest_files(paths):
        _read_file(collector, path)
    return _result(collector)


def load_documents(
    documents: Iterable[Any], *, source: str = "<memory>", keep_going: bool = False
) -> LoadResult:
    """Read already-parsed documents (as ``load_manifests`` does for one file)."""
    collector = _Collector(keep_going)
    for index, document in enumerate(documents):
        _read_document(collector, source, index, document, "")
    return _result(collector)


def _result(collector: _Collector) -> LoadResult:
    cluster = Cluster(
        namespaces=dict(collector.namespaces),
        pods=resolve_owners(collector.pods),
        services=tuple(collector.services),
        policies=tuple(collector.policies),
        admin_policies=tuple(collector.admin_policies),
    )
    return LoadResult(cluster, tuple(collector.ignored), tuple(collector.problems))


def _read_file(collector: _Collector, path: Path) -> None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        collector.fail(str(path), 0, "", f"cannot read file: {exc}")
        return
    read = 0  # documents read so far: the index of the one a syntax error is in
    documents: Iterator[Any] = yamlio.loads_all(text)
    try:
        for document in documents:
            _read_document(collector, str(path), read, document, "")
            read += 1
    except yamlio.YamlProblem as exc:  # the stream cannot be read past a syntax error
        collector.fail(str(path), read, exc.problem.path, exc.problem.message)


def _read_document(
    collector: _Collector, file: str, index: int, document: Any, prefix: str
) -> None:
    if document is None:
        return  # an empty document (a trailing ``---``)
    try:
        body = mapping(document, "", optional=False)
        kind = string(body.get("kind"), "kind")
        api_version = string(body.get("apiVersion"), "apiVersion")
        if kind == "List" or (kind.endswith("List") and "items" in body):
            for position, item in enumerate(items(body.get("items"), "items")):
                _read_document(collector, file, index, item, join(join(prefix, "items"), position))
            return
        _read_object(collector, file, index, body, kind, api_version, prefix)
    except Invalid as exc:
        collector.fail(file, index, _prefixed(prefix, exc.path), exc.message)


def _prefixed(prefix: str, path: str) -> str:
    if not prefix:
        return path
    return prefix if not path else f"{prefix}.{path}"


def _read_object(
    collector: _Collector,
    file: str,
    index: int,
    body: Mapping[str, Any],
    kind: str,
    api_version: str,
    prefix: str,
) -> None:
    metadata = mapping(body.get("metadata"), "metadata", optional=False)
    name = string(metadata.get("name"), "metadata.name")
    group, _, version = api_version.rpartition("/")
    if _GROUPS.get(kind) != group or _VERSIONS.get(kind, version) != version:
        collector.ignored.append(Ignored(file, index, api_version, kind, name))
        return
    namespace = optional_string(metadata.get("namespace"), "metadata.namespace", "default")
    key = (kind, "" if kind in _CLUSTER_SCOPED else namespace, name)
    where = f"{file} document {index}" + (f" {prefix}" if prefix else "")
    if key in collector.seen:
        raise Invalid("metadata.name", f"duplicate {kind} {name!r}, first in {collector.seen[key]}")
    if kind == "Namespace":
        collector.namespaces[name] = parse_namespace(metadata, name)
    elif kind == "Service":
        collector.services.append(parse_service(body, namespace, name))
    elif kind == "NetworkPolicy":
        collector.policies.append(parse_network_policy(body, namespace, name))
    elif kind in ("AdminNetworkPolicy", "BaselineAdminNetworkPolicy"):
        baseline = kind == "BaselineAdminNetworkPolicy"
        collector.admin_policies.append(parse_admin_policy(body, name, baseline=baseline))
    else:
        collector.pods.append(parse_pods(body, kind, namespace, name))
    collector.seen[key] = where
