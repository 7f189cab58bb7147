"""Hypothesis strategies: small random clusters as Kubernetes documents (so the loader is
exercised too), with the corner cases the spec distinguishes: empty vs absent selectors
and lists, both selectors in one peer, ipBlocks with except, named ports that differ
between pods of one workload, endPort, every protocol, policyTypes absent or listed."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

NAMESPACES = ("a", "b")
LABEL_KEYS = ("app", "tier")
LABEL_VALUES = ("x", "y")
PORT_NAMES = ("http", "dns")
PROTOCOLS = ("TCP", "UDP", "SCTP")
CIDRS = ("10.0.0.0/8", "10.1.0.0/16", "192.168.0.0/24", "0.0.0.0/0", "2001:db8::/32")
EXCEPTS = {"10.0.0.0/8": "10.1.0.0/16", "0.0.0.0/0": "10.0.0.0/8", "2001:db8::/32": "2001:db8::/48"}
SAMPLE_PORTS = (1, 53, 80, 443, 8080, 9090)
SAMPLE_ADDRESSES = (
    "10.1.2.3",
    "10.2.0.1",
    "192.168.0.9",
    "8.8.8.8",
    "2001:db8::1",
    "2001:db8:1::1",
)

labels_st = st.dictionaries(st.sampled_from(LABEL_KEYS), st.sampled_from(LABEL_VALUES), max_size=2)
# every pod has an app label, so selectors tell pods apart more often than not
pod_labels_st = st.builds(
    lambda app, extra: {**extra, "app": app}, st.sampled_from(LABEL_VALUES), labels_st
)
namespace_labels_st = st.fixed_dictionaries({"tier": st.sampled_from(LABEL_VALUES)})


@st.composite
def selector(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {}
    shape = draw(st.sampled_from(["empty", "labels", "labels", "expression", "both"]))
    if shape in ("labels", "both"):
        body["matchLabels"] = draw(
            st.dictionaries(
                st.sampled_from(LABEL_KEYS), st.sampled_from(LABEL_VALUES), min_size=1, max_size=2
            )
        )
    if shape in ("expression", "both"):
        operator = draw(st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]))
        expression: dict[str, Any] = {
            "key": draw(st.sampled_from(LABEL_KEYS)),
            "operator": operator,
        }
        if operator in ("In", "NotIn"):
            expression["values"] = draw(
                st.lists(st.sampled_from(LABEL_VALUES), min_size=1, max_size=2)
            )
        body["matchExpressions"] = [expression]
    return body


# namespaces carry only a tier label: their selectors mostly ask about it
namespace_selector = st.one_of(
    st.just({}),
    st.builds(lambda v: {"matchLabels": {"tier": v}}, st.sampled_from(LABEL_VALUES)),
    st.builds(
        lambda op, v: {"matchExpressions": [{"key": "tier", "operator": op, "values": [v]}]},
        st.sampled_from(["In", "NotIn"]),
        st.sampled_from(LABEL_VALUES),
    ),
    selector(),
)


@st.composite
def peer(draw: st.DrawFn) -> dict[str, Any]:
    shape = draw(st.sampled_from(["pods", "namespaces", "both", "block"]))
    if shape == "block":
        cidr = draw(st.sampled_from(CIDRS))
        block: dict[str, Any] = {"cidr": cidr}
        if cidr in EXCEPTS and draw(st.booleans()):
            block["except"] = [EXCEPTS[cidr]]
        return {"ipBlock": block}
    body: dict[str, Any] = {}
    if shape in ("pods", "both"):
        body["podSelector"] = draw(selector())
    if shape in ("namespaces", "both"):
        body["namespaceSelector"] = draw(namespace_selector)
    return body


@st.composite
def policy_port(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if draw(st.booleans()):
        body["protocol"] = draw(st.sampled_from(PROTOCOLS))
    shape = draw(st.sampled_from(["none", "number", "range", "name", "name"]))
    if shape == "number":
        body["port"] = draw(st.sampled_from((53, 80, 8080, 9090)))
    elif shape == "range":
        body["port"], body["endPort"] = draw(st.sampled_from(((80, 443), (8000, 9000), (1, 80))))
    elif shape == "name":
        body["port"] = draw(st.sampled_from(PORT_NAMES))
    return body


@st.composite
def rule(draw: st.DrawFn, peers_key: str) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if draw(st.booleans()):
        body[peers_key] = draw(st.lists(peer(), max_size=2))
    if draw(st.booleans()):
        body["ports"] = draw(st.lists(policy_port(), max_size=2))
    return body


@st.composite
def network_policy(draw: st.DrawFn, index: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": draw(selector())}
    for key, peers_key in (("ingress", "from"), ("egress", "to")):
        if draw(st.booleans()):
            spec[key] = draw(st.lists(rule(peers_key), max_size=2))
    types = draw(st.sampled_from([None, ["Ingress"], ["Egress"], ["Ingress", "Egress"]]))
    if types is not None:
        spec["policyTypes"] = types
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"np{index}", "namespace": draw(st.sampled_from(NAMESPACES))},
        "spec": spec,
    }


@st.composite
def container_ports(draw: st.DrawFn) -> list[dict[str, Any]]:
    ports = []
    if draw(st.booleans()):
        ports.append({"name": "http", "containerPort": draw(st.sampled_from((8080, 9090)))})
    if draw(st.booleans()):
        ports.append(
            {"name": "dns", "containerPort": 53, "protocol": draw(st.sampled_from(("UDP", "TCP")))}
        )
    return ports


def _pod(
    namespace: str, name: str, labels: dict[str, str], ports: list[dict[str, Any]], owner: str
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [{"kind": "ReplicaSet", "name": owner, "controller": True}],
        },
        "spec": {"containers": [{"name": "c", "image": "i", "ports": ports}]},
    }


@st.composite
def cluster_documents(
    draw: st.DrawFn, min_policies: int = 1, max_policies: int = 5
) -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": draw(namespace_labels_st)},
        }
        for namespace in NAMESPACES
    ]
    for w in range(draw(st.integers(2, 4))):
        namespace = draw(st.sampled_from(NAMESPACES))
        for p in range(draw(st.integers(1, 2))):  # pods of one workload may differ
            documents.append(
                _pod(namespace, f"w{w}-{p}", draw(labels_st), draw(container_ports()), f"w{w}")
            )
    documents += [
        draw(network_policy(i)) for i in range(draw(st.integers(min_policies, max_policies)))
    ]
    return documents


@st.composite
def admin_peer(draw: st.DrawFn, *, egress: bool) -> dict[str, Any]:
    shape = draw(
        st.sampled_from(["namespaces", "pods", "networks"] if egress else ["namespaces", "pods"])
    )
    if shape == "namespaces":
        return {"namespaces": draw(namespace_selector)}
    if shape == "pods":
        return {
            "pods": {"namespaceSelector": draw(namespace_selector), "podSelector": draw(selector())}
        }
    return {
        "networks": draw(
            st.lists(st.sampled_from(CIDRS + tuple(EXCEPTS.values())), min_size=1, max_size=2)
        )
    }


@st.composite
def admin_port(draw: st.DrawFn) -> dict[str, Any]:
    shape = draw(st.sampled_from(["number", "range", "name"]))
    protocol = draw(st.sampled_from(PROTOCOLS))
    if shape == "number":
        return {"portNumber": {"protocol": protocol, "port": draw(st.sampled_from((53, 80, 8080)))}}
    if shape == "range":
        start, end = draw(st.sampled_from(((80, 443), (8000, 9000), (1, 80))))
        return {"portRange": {"protocol": protocol, "start": start, "end": end}}
    return {"namedPort": draw(st.sampled_from(PORT_NAMES))}


@st.composite
def admin_rule(draw: st.DrawFn, *, egress: bool, baseline: bool) -> dict[str, Any]:
    actions = ["Allow", "Deny", "Deny"] if baseline else ["Allow", "Deny", "Pass"]
    body: dict[str, Any] = {
        "action": draw(st.sampled_from(actions)),
        "to" if egress else "from": draw(
            st.lists(admin_peer(egress=egress), min_size=1, max_size=2)
        ),
    }
    if draw(st.booleans()):
        body["ports"] = draw(st.lists(admin_port(), min_size=1, max_size=2))
    return body


@st.composite
def admin_policy(draw: st.DrawFn, index: int, *, baseline: bool) -> dict[str, Any]:
    if baseline or draw(st.booleans()):
        subject: dict[str, Any] = {"namespaces": draw(namespace_selector)}
    else:
        subject = {
            "pods": {"namespaceSelector": draw(namespace_selector), "podSelector": draw(selector())}
        }
    spec: dict[str, Any] = {"subject": subject}
    if not baseline:
        spec["priority"] = draw(st.integers(0, 3))
    for key, egress in (("ingress", False), ("egress", True)):
        rules = admin_rule(egress=egress, baseline=baseline)
        spec[key] = draw(st.lists(rules, min_size=1 if baseline else 0, max_size=2))
    return {
        "apiVersion": "policy.networking.k8s.io/v1alpha1",
        "kind": "BaselineAdminNetworkPolicy" if baseline else "AdminNetworkPolicy",
        "metadata": {"name": "default" if baseline else f"anp{index}"},
        "spec": spec,
    }


@st.composite
def admin_cluster_documents(draw: st.DrawFn, *, baseline: bool) -> list[dict[str, Any]]:
    """A random cluster with AdminNetworkPolicies (and the baseline, if asked) on top."""
    documents = draw(cluster_documents(min_policies=0, max_policies=2))
    count = draw(st.integers(0 if baseline else 1, 2))
    documents += [draw(admin_policy(i, baseline=False)) for i in range(count)]
    if baseline:
        documents.append(draw(admin_policy(0, baseline=True)))
    return documents
