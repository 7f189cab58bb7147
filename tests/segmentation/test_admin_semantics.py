"""Golden tests for AdminNetworkPolicy and BaselineAdminNetworkPolicy (Network Policy API
v1alpha1): priorities, Allow / Deny / Pass, and their order around NetworkPolicy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from verity.segmentation import Direction, ManifestError, Reason, load_manifests

from .builders import ask, deployment, namespace, policy, run, verdict

BASE = (
    namespace("shop", team="shop"),
    namespace("ops", team="ops"),
    deployment("shop", "web", {"app": "web"}),
    deployment("shop", "db", {"app": "db"}, [{"name": "pg", "containerPort": 5432}]),
    deployment("ops", "probe", {"app": "probe"}),
)
TO_DB = {"namespaces": {"matchLabels": {"team": "shop"}}}
FROM_OPS = [{"namespaces": {"matchLabels": {"team": "ops"}}}]


def anp(
    name: str,
    priority: int,
    ingress: list[Any] | None = None,
    egress: list[Any] | None = None,
    subject: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"priority": priority, "subject": subject or TO_DB}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    return {
        "apiVersion": "policy.networking.k8s.io/v1alpha1",
        "kind": "AdminNetworkPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


def banp(ingress: list[Any] | None = None, egress: list[Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"subject": {"namespaces": {}}}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    return {
        "apiVersion": "policy.networking.k8s.io/v1alpha1",
        "kind": "BaselineAdminNetworkPolicy",
        "metadata": {"name": "default"},
        "spec": spec,
    }


ALLOW_NP = policy(
    "shop",
    "db",
    {
        "podSelector": {"matchLabels": {"app": "db"}},
        "ingress": [{"from": [{"namespaceSelector": {}}]}],
    },
)


def test_an_admin_deny_beats_a_network_policy_allow() -> None:
    analysis = run(*BASE, ALLOW_NP, anp("no-ops", 10, [{"action": "Deny", "from": FROM_OPS}]))
    result = ask(analysis, "ops/probe", "shop/db", 5432)
    assert result.verdict.value == "denied"
    assert result.pairs[0].ingress.denied_by == (
        Reason(Direction.INGRESS, "no-ops", 0, "AdminNetworkPolicy", "Deny"),
    )
    assert verdict(analysis, "shop/web", "shop/db", 5432) == "allowed"  # not matched: NP decides


def test_an_admin_allow_beats_network_policy_isolation() -> None:
    closed = policy("shop", "closed", {"podSelector": {}})
    analysis = run(
        *BASE,
        closed,
        anp(
            "ops-in",
            10,
            [{"action": "Allow", "from": FROM_OPS, "ports": [{"portNumber": {"port": 5432}}]}],
        ),
    )
    assert verdict(analysis, "ops/probe", "shop/db", 5432) == "allowed"
    assert verdict(analysis, "ops/probe", "shop/db", 5433) == "denied"  # NP isolation decides
    reasons = ask(analysis, "ops/probe", "shop/db", 5432).pairs[0].ingress.allowed_by
    assert reasons == (Reason(Direction.INGRESS, "ops-in", 0, "AdminNetworkPolicy", "Allow"),)


def test_pass_hands_the_decision_to_network_policy() -> None:
    rules = [{"action": "Pass", "from": FROM_OPS}, {"action": "Deny", "from": [{"namespaces": {}}]}]
    analysis = run(*BASE, ALLOW_NP, anp("pass-ops", 10, rules))
    assert verdict(analysis, "ops/probe", "shop/db", 5432) == "allowed"  # passed, NP allows
    assert verdict(analysis, "shop/web", "shop/db", 5432) == "denied"  # second rule denies
    closed = policy("shop", "closed", {"podSelector": {}})
    analysis = run(*BASE, closed, anp("pass-ops", 10, rules))
    assert verdict(analysis, "ops/probe", "shop/db", 5432) == "denied"  # passed, NP isolates


def test_lower_priority_values_decide_first() -> None:
    deny = anp("deny", 20, [{"action": "Deny", "from": FROM_OPS}])
    allow = anp("allow", 5, [{"action": "Allow", "from": FROM_OPS}])
    assert verdict(run(*BASE, deny, allow), "ops/probe", "shop/db", 1) == "allowed"
    allow = anp("allow", 30, [{"action": "Allow", "from": FROM_OPS}])
    assert verdict(run(*BASE, deny, allow), "ops/probe", "shop/db", 1) == "denied"


def test_within_a_policy_the_first_matching_rule_decides_per_port() -> None:
    rules = [
        {
            "action": "Deny",
            "from": FROM_OPS,
            "ports": [{"portRange": {"start": 5000, "end": 6000}}],
        },
        {"action": "Allow", "from": FROM_OPS},
    ]
    analysis = run(*BASE, policy("shop", "closed", {"podSelector": {}}), anp("ops", 1, rules))
    assert verdict(analysis, "ops/probe", "shop/db", 5432) == "denied"
    assert verdict(analysis, "ops/probe", "shop/db", 6001) == "allowed"
    assert verdict(analysis, "ops/probe", "shop/db", 53, "UDP") == "allowed"


def test_the_baseline_applies_only_where_no_network_policy_isolates() -> None:
    baseline = banp(ingress=[{"action": "Deny", "from": [{"namespaces": {}}]}])
    analysis = run(*BASE, baseline)
    assert verdict(analysis, "shop/web", "shop/db", 5432) == "denied"
    result = ask(analysis, "shop/web", "shop/db", 5432)
    assert result.pairs[0].ingress.denied_by == (
        Reason(Direction.INGRESS, "default", 0, "BaselineAdminNetworkPolicy", "Deny"),
    )
    analysis = run(*BASE, ALLOW_NP, baseline)
    assert verdict(analysis, "shop/web", "shop/db", 5432) == "allowed"  # NP isolates: no BANP
    assert verdict(analysis, "shop/db", "shop/web", 80) == "denied"  # web not isolated: BANP


def test_admin_egress_to_networks_splits_outside_ranges() -> None:
    egress = [
        {"action": "Deny", "to": [{"networks": ["10.0.0.0/8"]}]},
        {
            "action": "Allow",
            "to": [{"networks": ["0.0.0.0/0"]}],
            "ports": [{"portNumber": {"port": 443}}],
        },
    ]
    closed = policy("shop", "closed", {"podSelector": {}, "policyTypes": ["Egress"]})
    analysis = run(*BASE, closed, anp("out", 1, egress=egress))
    assert verdict(analysis, "shop/web", "8.8.8.8", 443) == "allowed"
    assert verdict(analysis, "shop/web", "10.1.1.1", 443) == "denied"
    assert verdict(analysis, "shop/web", "0.0.0.0/0", 443) == "partial"
    assert verdict(analysis, "shop/web", "8.8.8.8", 80) == "denied"  # NP isolation
    outside = {
        str(c.destination) for c in analysis.connections if str(c.source) == "shop/web[Deployment]"
    }
    # the ranges with the same ports are reported together, shortest first
    assert "0.0.0.0/0 except 10.0.0.0/8" in outside
    assert not any(o.startswith("10.") for o in outside)


def test_a_named_admin_port_resolves_on_the_destination_with_its_protocol() -> None:
    dns = deployment(
        "shop", "dns", {"app": "dns"}, [{"name": "dns", "containerPort": 53, "protocol": "UDP"}]
    )
    rules = [{"action": "Deny", "from": FROM_OPS, "ports": [{"namedPort": "dns"}]}]
    analysis = run(*BASE, dns, anp("no-dns", 1, rules))
    assert verdict(analysis, "ops/probe", "shop/dns", 53, "UDP") == "denied"
    assert verdict(analysis, "ops/probe", "shop/dns", 53, "TCP") == "allowed"


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"priority": 1001, "subject": TO_DB}, "spec.priority"),
        ({"priority": 1, "subject": {}}, "spec.subject"),
        (
            {"priority": 1, "subject": TO_DB, "ingress": [{"action": "Drop", "from": FROM_OPS}]},
            "spec.ingress[0].action",
        ),
        (
            {"priority": 1, "subject": TO_DB, "ingress": [{"action": "Deny", "from": []}]},
            "spec.ingress[0].from",
        ),
        (
            {
                "priority": 1,
                "subject": TO_DB,
                "ingress": [{"action": "Deny", "from": [{"networks": ["10.0.0.0/8"]}]}],
            },
            "spec.ingress[0].from[0].networks",
        ),
        (
            {
                "priority": 1,
                "subject": TO_DB,
                "egress": [
                    {
                        "action": "Deny",
                        "to": FROM_OPS,
                        "ports": [{"portRange": {"start": 90, "end": 80}}],
                    }
                ],
            },
            "spec.egress[0].ports[0].portRange.end",
        ),
    ],
)
def test_a_malformed_admin_policy_names_its_key_path(
    tmp_path: Path, spec: dict[str, Any], path: str
) -> None:
    import json

    file = tmp_path / "anp.json"
    document = {
        "apiVersion": "policy.networking.k8s.io/v1alpha1",
        "kind": "AdminNetworkPolicy",
        "metadata": {"name": "x"},
        "spec": spec,
    }
    file.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(ManifestError) as caught:
        load_manifests([file])
    assert [p.path for p in caught.value.problems] == [path]


def test_a_baseline_must_be_named_default_and_cannot_pass(tmp_path: Path) -> None:
    import json

    for name, rules, path in (
        ("other", [], "metadata.name"),
        ("default", [{"action": "Pass", "from": FROM_OPS}], "spec.ingress[0].action"),
    ):
        file = tmp_path / f"{name}.json"
        document = banp(ingress=rules)
        document["metadata"]["name"] = name
        file.write_text(json.dumps(document), encoding="utf-8")
        with pytest.raises(ManifestError) as caught:
            load_manifests([file])
        assert [p.path for p in caught.value.problems] == [path]
