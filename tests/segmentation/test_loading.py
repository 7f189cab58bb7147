"""Loading manifests: files and directories, multi-document streams, List kinds, every
workload kind and its top owner, ignored kinds, and malformed documents located by file,
document index and key path (raised, or collected under keep_going)."""

from __future__ import annotations

from pathlib import Path

import pytest

from verity.segmentation import ContainerPort, ManifestError, Protocol, WorkloadRef, load_manifests

TEMPLATE = """
    metadata: {labels: {app: %s}}
    spec:
      serviceAccountName: sa-%s
      containers:
        - name: c
          image: i
          ports: [{name: http, containerPort: 8080}, {containerPort: 53, protocol: UDP}]
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _workload(kind: str, api: str, name: str) -> str:
    template = TEMPLATE % (name, name)
    if kind == "CronJob":
        body = (
            "  schedule: '* * * * *'\n  jobTemplate:\n    spec:\n      template:"
            + template.replace("\n    ", "\n        ")
        )
    else:
        body = "  template:" + template.replace("\n    ", "\n    ")
    metadata = f"metadata: {{name: {name}, namespace: prod}}"
    return f"apiVersion: {api}\nkind: {kind}\n{metadata}\nspec:\n{body}"


KINDS = [
    ("Deployment", "apps/v1"),
    ("StatefulSet", "apps/v1"),
    ("DaemonSet", "apps/v1"),
    ("ReplicaSet", "apps/v1"),
    ("ReplicationController", "v1"),
    ("Job", "batch/v1"),
    ("CronJob", "batch/v1"),
]


def test_every_workload_kind_gives_labels_service_account_and_named_ports(tmp_path: Path) -> None:
    text = "\n---\n".join(_workload(kind, api, kind.lower()) for kind, api in KINDS)
    result = load_manifests([_write(tmp_path, "w.yaml", text)])
    assert result.problems == ()
    by_owner = {pod.owner: pod for pod in result.cluster.pods}
    assert set(by_owner) == {WorkloadRef("prod", kind.lower(), kind) for kind, _ in KINDS}
    cron = by_owner[WorkloadRef("prod", "cronjob", "CronJob")]
    assert dict(cron.labels) == {"app": "cronjob"}
    assert cron.service_account == "sa-cronjob"
    assert cron.ports == (
        ContainerPort(53, Protocol.UDP),
        ContainerPort(8080, Protocol.TCP, "http"),
    )


def test_pods_are_named_by_their_top_owner(tmp_path: Path) -> None:
    text = """
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web-7d9
  namespace: prod
  ownerReferences: [{apiVersion: apps/v1, kind: Deployment, name: web, controller: true}]
spec:
  template: {metadata: {labels: {app: web}}, spec: {containers: []}}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-7d9-abc
  namespace: prod
  labels: {app: web}
  ownerReferences: [{kind: ReplicaSet, name: web-7d9, controller: true}]
spec: {containers: []}
---
apiVersion: v1
kind: Pod
metadata: {name: lonely, namespace: prod}
spec: {containers: []}
"""
    result = load_manifests([_write(tmp_path, "pods.yaml", text)])
    owners = [str(pod.owner) for pod in result.cluster.pods]
    # the ReplicaSet is represented by its listed pod, not by its template as well
    assert owners == ["prod/web[Deployment]", "prod/lonely[Pod]"]


def test_lists_directories_namespaces_and_ignored_kinds(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "a/list.yaml",
        """
apiVersion: v1
kind: List
items:
  - {apiVersion: v1, kind: Namespace, metadata: {name: prod, labels: {env: prod}}}
  - {apiVersion: v1, kind: ConfigMap, metadata: {name: settings, namespace: prod}}
""",
    )
    _write(
        tmp_path,
        "b/calico.yml",
        """
apiVersion: crd.projectcalico.org/v1
kind: NetworkPolicy
metadata: {name: calico-one, namespace: prod}
spec: {}
""",
    )
    _write(tmp_path, "b/notes.txt", "not a manifest")
    result = load_manifests([tmp_path])
    namespace = result.cluster.namespace("prod")
    assert dict(namespace.labels) == {"env": "prod", "kubernetes.io/metadata.name": "prod"}
    assert [(i.kind, i.name, i.document) for i in result.ignored] == [
        ("ConfigMap", "settings", 0),
        ("NetworkPolicy", "calico-one", 0),  # another API group's kind of the same name
    ]
    assert result.cluster.policies == ()


BAD = [
    ("spec:\n  podSelector: {matchLabels: {app: 3}}", "spec.podSelector.matchLabels.app"),
    (
        "spec:\n  ingress:\n    - from:\n        - {ipBlock: {cidr: 10.0.0.0/33}}",
        "spec.ingress[0].from[0].ipBlock.cidr",
    ),
    (
        "spec:\n  ingress:\n    - from:\n"
        "        - ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16]}",
        "spec.ingress[0].from[0].ipBlock.except[0]",
    ),
    (
        "spec:\n  egress:\n    - to:\n        - {ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}",
        "spec.egress[0].to[0]",
    ),
    (
        "spec:\n  ingress:\n    - ports: [{port: http, endPort: 90}]",
        "spec.ingress[0].ports[0].endPort",
    ),
    (
        "spec:\n  ingress:\n    - ports: [{port: 100, endPort: 90}]",
        "spec.ingress[0].ports[0].endPort",
    ),
    ("spec:\n  ingress:\n    - ports: [{port: 70000}]", "spec.ingress[0].ports[0].port"),
    ("spec:\n  ingress:\n    - ports: [{protocol: ICMP}]", "spec.ingress[0].ports[0].protocol"),
    ("spec:\n  policyTypes: [Inbound]", "spec.policyTypes[0]"),
    ("spec:\n  ingress:\n    - from: [{}]", "spec.ingress[0].from[0]"),
]


@pytest.mark.parametrize(("spec", "path"), BAD)
def test_a_malformed_policy_names_file_document_and_key_path(
    tmp_path: Path, spec: str, path: str
) -> None:
    good = "apiVersion: v1\nkind: Namespace\nmetadata: {name: prod}\n"
    bad = (
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
        f"metadata: {{name: p, namespace: prod}}\n{spec}\n"
    )
    file = _write(tmp_path, "p.yaml", f"{good}---\n{bad}")
    with pytest.raises(ManifestError) as caught:
        load_manifests([file])
    error = caught.value
    assert (error.file, error.document) == (str(file), 1)
    assert [p.path for p in error.problems] == [path]
    assert f"{file} document 1: {path}: " in str(error)


def test_keep_going_records_the_bad_document_and_reads_the_rest(tmp_path: Path) -> None:
    file = _write(
        tmp_path,
        "m.yaml",
        """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: prod}
spec:
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, ports: [{containerPort: 0}]}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: prod}
spec: {template: {metadata: {labels: {app: api}}, spec: {containers: []}}}
---
kind: Service
""",
    )
    result = load_manifests([file], keep_going=True)
    assert [str(w) for w in result.cluster.workloads] == ["prod/api[Deployment]"]
    located = [(e.document, e.problems[0].path) for e in result.problems]
    assert located == [
        (0, "spec.template.spec.containers[0].ports[0].containerPort"),
        (2, "apiVersion"),
    ]


def test_a_yaml_syntax_error_names_the_document_and_line(tmp_path: Path) -> None:
    file = _write(
        tmp_path, "s.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\nkind: [\n"
    )
    with pytest.raises(ManifestError) as caught:
        load_manifests([file])
    assert caught.value.document == 1
    assert caught.value.problems[0].path.startswith("line 6")
    result = load_manifests([file], keep_going=True)
    assert list(result.cluster.namespaces) == ["a"]


def test_duplicate_objects_and_list_items_are_located(tmp_path: Path) -> None:
    file = _write(
        tmp_path,
        "d.yaml",
        """
apiVersion: v1
kind: List
items:
  - {apiVersion: v1, kind: Namespace, metadata: {name: a}}
  - {apiVersion: v1, kind: Namespace, metadata: {name: a}}
""",
    )
    with pytest.raises(ManifestError) as caught:
        load_manifests([file])
    assert caught.value.problems[0].path == "items[1].metadata.name"
    assert "duplicate Namespace 'a'" in caught.value.problems[0].message


def test_a_dump_counts_each_pod_once_and_old_replica_sets_run_nothing(tmp_path: Path) -> None:
    from verity.segmentation import analyze

    def template(port: int) -> str:
        return (
            "{metadata: {labels: {app: web}}, spec: {containers: "
            f"[{{name: c, ports: [{{name: http, containerPort: {port}}}]}}]}}}}"
        )

    file = _write(
        tmp_path,
        "dump.yaml",
        f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: prod}}
spec: {{replicas: 2, template: {template(9090)}}}
---
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web-new
  namespace: prod
  ownerReferences: [{{kind: Deployment, name: web, controller: true}}]
spec: {{replicas: 2, template: {template(9090)}}}
---
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web-old
  namespace: prod
  ownerReferences: [{{kind: Deployment, name: web, controller: true}}]
spec: {{replicas: 0, template: {template(8080)}}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: web, namespace: prod}}
spec: {{podSelector: {{}}, ingress: [{{ports: [{{port: http}}]}}]}}
""",
    )
    analysis = analyze(load_manifests([file]).cluster)
    assert [(str(w.ref), w.pods) for w in analysis.workloads] == [("prod/web[Deployment]", 2)]
    web = WorkloadRef("prod", "web", "Deployment")
    connection = analysis.between(web, web)
    assert connection is not None
    assert [(s.ports, s.partial) for s in connection.ports] == [("9090", False)]
