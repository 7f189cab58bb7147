"""Analysis time, peak memory and query latency of ``verity.segmentation`` on generated
clusters (issue 16): 100, 1,000 and 5,000 pods with proportional NetworkPolicies.

A cluster is written the way a cluster dump looks: every pod is its own ``Pod`` document
under a ``ReplicaSet`` owned by a ``Deployment``, carrying a unique ``pod-template-hash``;
one workload in ten is mid-rollout (two ReplicaSets whose named port ``http`` differs).
Three AdminNetworkPolicies (dev kept out of prod, monitoring passed to the namespace
owners, no cloud metadata address) and a baseline deny sit on top. Per namespace there is a
default-deny policy and a DNS egress policy; per workload an
ingress policy (same-namespace callers on the named port ``http``, callers of another
namespace by label, sometimes an IP block with an ``except``), and for one in three an
egress policy for four in five (its callee's port range, HTTPS outside 10/8). 5,000 pods
give 1,000 workloads, 100 namespaces and about 2,000 policies.

Each size runs in a fresh interpreter (``--one``), which writes the cluster as one YAML
file and reports the seconds to read it (``load_s``, what the CLI pays), to analyse
(``analyze_s``), each also in CPU seconds of the process (``*_cpu_s``: on a shared machine
the wall clock also counts other processes' turns), the connections found, its peak RSS
(``ru_maxrss``), and the latency of 2,000 random queries after one ``compile_cluster``
(wall median, p99 and max; CPU p99). ``meets_target_wall`` / ``meets_target_cpu``: read
and analysed in under 30 s (wall clock / CPU time), and a query's CPU p99 under 10 ms.
Results go to ``benchmarks/results/segmentation.json``.

    python benchmarks/segmentation.py                  # every size
    python benchmarks/segmentation.py --one 5000       # one size, printed, no file

Targets (issue 16): 5,000 pods and 2,000 policies analysed in under 30 s; a query in
under 10 ms on the largest.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "segmentation.json"
DEFAULT_SIZES = (100, 1000, 5000)
TARGET_ANALYZE_S = 30.0
TARGET_QUERY_MS = 10.0
PODS_PER_WORKLOAD = 5
WORKLOADS_PER_NAMESPACE = 10
Doc = dict[str, Any]


def _pod(ns: str, name: str, labels: dict[str, str], http: int, owner: str) -> Doc:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": labels,
            "ownerReferences": [{"kind": "ReplicaSet", "name": owner, "controller": True}],
        },
        "spec": {
            "serviceAccountName": labels["app"],
            "containers": [
                {
                    "name": "app",
                    "image": "example/app:1",
                    "ports": [
                        {"name": "http", "containerPort": http},
                        {"name": "metrics", "containerPort": 9100},
                    ],
                }
            ],
        },
    }


def _replica_set(ns: str, name: str, deployment: str, labels: dict[str, str], http: int) -> Doc:
    """A ReplicaSet as a dump shows it, with its template (its pods are listed too)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": name,
            "namespace": ns,
            "ownerReferences": [{"kind": "Deployment", "name": deployment, "controller": True}],
        },
        "spec": {
            "replicas": PODS_PER_WORKLOAD,
            "template": _pod(ns, name, labels, http, name),
        },
    }


def _policy(ns: str, name: str, spec: Doc) -> Doc:
    meta = {"name": name, "namespace": ns}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta,
        "spec": spec,
    }


def cluster(pods: int, seed: int = 16) -> list[Doc]:
    """The documents of a generated cluster of about ``pods`` pods."""
    rng = random.Random(seed)
    workloads = max(1, pods // PODS_PER_WORKLOAD)
    namespaces = max(1, workloads // WORKLOADS_PER_NAMESPACE)
    tiers = ("web", "api", "db", "cache")
    docs: list[Doc] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": f"ns{n}",
                "labels": {"team": f"t{n % 7}", "env": rng.choice(("prod", "dev"))},
            },
        }
        for n in range(namespaces)
    ]
    docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "monitoring"}})
    for w in range(workloads):
        ns = f"ns{w % namespaces}"
        app, tier = f"app{w}", tiers[w % len(tiers)]
        revisions = 2 if w % 10 == 0 else 1
        for r in range(revisions):
            rs = f"{app}-{r}"
            template_labels = {"app": app, "tier": tier, "pod-template-hash": f"h{r}"}
            docs.append(_replica_set(ns, rs, app, template_labels, 8080 + r))
            for p in range(PODS_PER_WORKLOAD // revisions + (1 if r else 0)):
                labels = {
                    "app": app,
                    "tier": tier,
                    "pod-template-hash": f"h{r}",
                    "instance": f"{app}-{r}-{p}",
                }
                docs.append(_pod(ns, f"{rs}-{p}", labels, 8080 + r, rs))
        docs.extend(_workload_policies(rng, w, ns, app, namespaces))
    docs.extend(_admin_policies())
    for n in range(namespaces):
        ns = f"ns{n}"
        docs.append(_policy(ns, "default-deny", {"podSelector": {}, "policyTypes": ["Ingress"]}))
        docs.append(
            _policy(
                ns,
                "allow-dns",
                {
                    "podSelector": {},
                    "policyTypes": ["Egress"],
                    "egress": [
                        {
                            "to": [
                                {
                                    "namespaceSelector": {
                                        "matchLabels": {
                                            "kubernetes.io/metadata.name": "kube-system"
                                        }
                                    }
                                }
                            ],
                            "ports": [
                                {"port": 53, "protocol": "UDP"},
                                {"port": 53, "protocol": "TCP"},
                            ],
                        },
                        {"to": [{"podSelector": {}}]},
                    ],
                },
            )
        )
    return docs


def _admin_policies() -> list[Doc]:
    """What a platform team adds on top: three AdminNetworkPolicies and a baseline."""

    def admin(name: str, priority: int, spec: Doc) -> Doc:
        return {
            "apiVersion": "policy.networking.k8s.io/v1alpha1",
            "kind": "AdminNetworkPolicy",
            "metadata": {"name": name},
            "spec": {"priority": priority, **spec},
        }

    everyone = {"namespaces": {}}
    return [
        admin(
            "dev-stays-out-of-prod",
            10,
            {
                "subject": {"namespaces": {"matchLabels": {"env": "prod"}}},
                "ingress": [
                    {"action": "Deny", "from": [{"namespaces": {"matchLabels": {"env": "dev"}}}]}
                ],
            },
        ),
        admin(
            "monitoring-to-namespace-owners",
            20,
            {
                "subject": everyone,
                "ingress": [
                    {
                        "action": "Pass",
                        "from": [
                            {
                                "namespaces": {
                                    "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
                                }
                            }
                        ],
                    }
                ],
            },
        ),
        admin(
            "no-cloud-metadata",
            30,
            {
                "subject": everyone,
                "egress": [{"action": "Deny", "to": [{"networks": ["169.254.169.254/32"]}]}],
            },
        ),
        {
            "apiVersion": "policy.networking.k8s.io/v1alpha1",
            "kind": "BaselineAdminNetworkPolicy",
            "metadata": {"name": "default"},
            "spec": {"subject": everyone, "ingress": [{"action": "Deny", "from": [everyone]}]},
        },
    ]


def _workload_policies(rng: random.Random, w: int, ns: str, app: str, namespaces: int) -> list[Doc]:
    caller = f"app{max(0, w - 1)}"
    other_team = f"t{rng.randrange(7)}"
    peers: list[Doc] = [
        {"podSelector": {"matchLabels": {"app": caller}}},
        {
            "namespaceSelector": {"matchLabels": {"team": other_team}},
            "podSelector": {
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "api"]}]
            },
        },
    ]
    if w % 4 == 0:
        peers.append({"ipBlock": {"cidr": "10.0.0.0/8", "except": [f"10.{w % 250}.0.0/16"]}})
    result = [
        _policy(
            ns,
            f"{app}-ingress",
            {
                "podSelector": {"matchLabels": {"app": app}},
                "ingress": [
                    {"from": peers, "ports": [{"port": "http"}]},
                    {
                        "from": [
                            {
                                "namespaceSelector": {
                                    "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
                                }
                            }
                        ],
                        "ports": [{"port": "metrics"}],
                    },
                ],
            },
        )
    ]
    if w % 5:
        callee = f"app{(w + 1) % max(1, namespaces * WORKLOADS_PER_NAMESPACE)}"
        result.append(
            _policy(
                ns,
                f"{app}-egress",
                {
                    "podSelector": {"matchLabels": {"app": app}},
                    "policyTypes": ["Egress"],
                    "egress": [
                        {
                            "to": [
                                {
                                    "namespaceSelector": {},
                                    "podSelector": {"matchLabels": {"app": callee}},
                                }
                            ],
                            "ports": [{"port": 8000, "endPort": 8100}],
                        },
                        {
                            "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}],
                            "ports": [{"port": 443}],
                        },
                    ],
                },
            )
        )
    return result


def run_one(pods: int) -> dict[str, Any]:
    import yaml

    from verity.segmentation import Protocol, analyze, compile_cluster, load_manifests, query

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "cluster.yaml"
        path.write_text(yaml.safe_dump_all(cluster(pods)), encoding="utf-8")
        started, started_cpu = time.perf_counter(), time.process_time()
        loaded = load_manifests([path])
        load_s = time.perf_counter() - started
        load_cpu_s = time.process_time() - started_cpu
    started, started_cpu = time.perf_counter(), time.process_time()
    analysis = analyze(loaded.cluster)
    analyze_s = time.perf_counter() - started
    analyze_cpu_s = time.process_time() - started_cpu
    index = compile_cluster(loaded.cluster)
    rng = random.Random(1)
    workloads = [str(w) for w in loaded.cluster.workloads]
    timings, cpu = [], []
    for _ in range(2000):
        source = rng.choice(workloads) if rng.random() < 0.9 else f"10.{rng.randrange(256)}.1.1"
        port = rng.choice((53, 443, 8080, 8081, 8050, 9100))
        destination = rng.choice(workloads)
        started, started_cpu = time.perf_counter(), time.process_time()
        query(index, source, destination, port, Protocol.TCP)
        timings.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    timings.sort()
    cpu.sort()
    row: dict[str, Any] = {
        "pods": sum(p.count for p in loaded.cluster.pods),
        "workloads": len(workloads),
        "namespaces": len(loaded.cluster.namespaces),
        "policies": len(loaded.cluster.policies),
        "admin_policies": len(loaded.cluster.admin_policies),
        "pod_classes": len(analysis.index.classes),
        "connections": len(analysis.connections),
        "load_s": round(load_s, 3),
        "load_cpu_s": round(load_cpu_s, 3),
        "analyze_s": round(analyze_s, 3),
        "analyze_cpu_s": round(analyze_cpu_s, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "query_median_ms": round(statistics.median(timings), 3),
        "query_p99_ms": round(timings[int(len(timings) * 0.99)], 3),
        "query_max_ms": round(timings[-1], 3),
        "query_cpu_p99_ms": round(cpu[int(len(cpu) * 0.99)], 3),
    }
    # CPU time per query: on a shared machine the wall-clock tail is the scheduler's
    query_ok = row["query_cpu_p99_ms"] < TARGET_QUERY_MS
    row["meets_target_wall"] = load_s + analyze_s < TARGET_ANALYZE_S and query_ok
    row["meets_target_cpu"] = load_cpu_s + analyze_cpu_s < TARGET_ANALYZE_S and query_ok
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", type=int, help="run one size in this interpreter and print it")
    parser.add_argument("--sizes", type=int, nargs="*", default=list(DEFAULT_SIZES))
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(run_one(args.one)))
        return
    rows = []
    for size in args.sizes:
        output = subprocess.run(  # noqa: S603 - this script, in a fresh interpreter
            [sys.executable, __file__, "--one", str(size)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        rows.append({"requested_pods": size, **json.loads(output)})
        print(json.dumps(rows[-1]))
    document = {
        "benchmark": "segmentation",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "targets": {"analyze_s": TARGET_ANALYZE_S, "query_ms": TARGET_QUERY_MS, "at_pods": 5000},
        "results": rows,
    }
    RESULTS.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
