"""The repository's own Kubernetes manifest (deploy/kubernetes/verity.yaml), analysed
next to a few neighbours: what its NetworkPolicy lets in and out."""

from __future__ import annotations

from pathlib import Path

from verity.segmentation import Protocol, analyze, load_manifests, query

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "verity.yaml"
NEIGHBOURS = """
apiVersion: v1
kind: Pod
metadata: {name: controller, namespace: ingress-nginx, labels: {app: ingress-nginx}}
spec: {containers: [{name: c, image: i}]}
---
apiVersion: v1
kind: Pod
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec: {containers: [{name: c, image: i}]}
---
apiVersion: v1
kind: Pod
metadata: {name: postgres, namespace: db, labels: {app: postgres}}
spec: {containers: [{name: c, image: i}]}
---
apiVersion: v1
kind: Pod
metadata: {name: tool, namespace: other, labels: {app: tool}}
spec: {containers: [{name: c, image: i}]}
"""


def test_the_deploy_policy_admits_only_the_ingress_controller(tmp_path: Path) -> None:
    neighbours = tmp_path / "neighbours.yaml"
    neighbours.write_text(NEIGHBOURS, encoding="utf-8")
    loaded = load_manifests([DEPLOY, neighbours])
    assert loaded.problems == ()
    index = analyze(loaded.cluster).index

    def allowed(
        source: str, destination: str, port: int, protocol: Protocol = Protocol.TCP
    ) -> bool:
        return query(index, source, destination, port, protocol).allowed

    assert allowed("ingress-nginx/controller", "default/verity", 8080)
    assert not allowed("other/tool", "default/verity", 8080)
    assert not allowed("ingress-nginx/controller", "default/verity", 9090)
    assert allowed("default/verity", "kube-system/coredns", 53, Protocol.UDP)
    assert allowed("default/verity", "db/postgres", 5432)
    assert not allowed("default/verity", "db/postgres", 22)
    # HTTPS to the identity provider outside the cluster, not to every pod on 443
    assert not allowed("default/verity", "other/tool", 443)
    assert allowed("default/verity", "198.51.100.7", 443)
    assert not allowed("default/verity", "10.1.2.3", 443)
