"""Golden tests: one NetworkPolicy rule of the Kubernetes API reference per test, checked
through ``query`` (verdict and deciding rules) and ``analyze`` (ports and reasons)."""

from __future__ import annotations

from verity.segmentation import Direction, External, Reason, Verdict, WorkloadRef

from .builders import ask, deployment, namespace, pod, policy, run, verdict

WEB = {"app": "web"}
DB = {"app": "db"}
BASE = (
    namespace("shop", team="shop"),
    namespace("ops", team="ops"),
    deployment("shop", "web", WEB),
    deployment("shop", "db", DB, [{"name": "pg", "containerPort": 5432}]),
    deployment("ops", "probe", {"app": "probe"}),
)
DB_REF = WorkloadRef("shop", "db", "Deployment")
WEB_REF = WorkloadRef("shop", "web", "Deployment")


def test_without_policies_every_port_of_every_protocol_is_open_both_ways() -> None:
    analysis = run(*BASE)
    connection = analysis.between(WEB_REF, DB_REF)
    assert connection is not None
    assert [(s.protocol.value, s.first, s.last) for s in connection.ports] == [
        ("TCP", 1, 65535),
        ("UDP", 1, 65535),
        ("SCTP", 1, 65535),
    ]
    assert connection.ports[0].egress == {Reason(Direction.EGRESS)}
    assert connection.ports[0].ingress == {Reason(Direction.INGRESS)}


def test_policy_types_default_to_ingress_only_without_egress_rules() -> None:
    analysis = run(*BASE, policy("shop", "db-deny", {"podSelector": {"matchLabels": DB}}))
    assert verdict(analysis, "shop/web", "shop/db", 5432) == "denied"
    assert verdict(analysis, "shop/db", "shop/web", 80) == "allowed"  # egress not isolated
    decision = ask(analysis, "shop/web", "shop/db", 5432).pairs[0].ingress
    assert decision.isolating == ("shop/db-deny",)
    assert decision.allowed_by == ()


def test_policy_types_default_adds_egress_when_egress_rules_exist() -> None:
    spec = {
        "podSelector": {"matchLabels": DB},
        "egress": [{"ports": [{"port": 53, "protocol": "UDP"}]}],
    }
    analysis = run(*BASE, policy("shop", "db-dns", spec))
    assert verdict(analysis, "shop/db", "shop/web", 53, "UDP") == "allowed"
    assert verdict(analysis, "shop/db", "shop/web", 80) == "denied"
    assert verdict(analysis, "shop/web", "shop/db", 5432) == "denied"  # Ingress is implied too


def test_an_empty_egress_list_does_not_make_a_policy_an_egress_policy() -> None:
    spec = {"podSelector": {"matchLabels": DB}, "egress": []}
    analysis = run(*BASE, policy("shop", "db", spec))
    assert verdict(analysis, "shop/db", "shop/web", 80) == "allowed"
    assert verdict(analysis, "shop/web", "shop/db", 80) == "denied"


def test_listed_egress_type_without_rules_denies_all_egress_and_leaves_ingress_open() -> None:
    spec = {"podSelector": {"matchLabels": DB}, "policyTypes": ["Egress"]}
    analysis = run(*BASE, policy("shop", "db", spec))
    assert verdict(analysis, "shop/db", "shop/web", 80) == "denied"
    assert verdict(analysis, "shop/db", "8.8.8.8", 443) == "denied"
    assert verdict(analysis, "shop/web", "shop/db", 5432) == "allowed"


def test_a_connection_needs_egress_at_the_source_and_ingress_at_the_destination() -> None:
    egress_only = policy(
        "shop",
        "web-out",
        {
            "podSelector": {"matchLabels": WEB},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"podSelector": {"matchLabels": DB}}]}],
        },
    )
    db_closed = policy(
        "shop", "db-in", {"podSelector": {"matchLabels": DB}, "policyTypes": ["Ingress"]}
    )
    analysis = run(*BASE, egress_only, db_closed)
    result = ask(analysis, "shop/web", "shop/db", 5432)
    assert result.verdict is Verdict.DENIED
    assert result.pairs[0].egress.allowed_by == (Reason(Direction.EGRESS, "shop/web-out", 0),)
    assert result.pairs[0].ingress.verdict is Verdict.DENIED
    assert analysis.between(WEB_REF, DB_REF) is None
    # and the other way round: ingress allows, egress does not
    analysis = run(
        *BASE,
        policy("shop", "web-out", {"podSelector": {"matchLabels": WEB}, "policyTypes": ["Egress"]}),
        policy("shop", "db-in", {"podSelector": {"matchLabels": DB}, "ingress": [{}]}),
    )
    result = ask(analysis, "shop/web", "shop/db", 5432)
    assert result.verdict is Verdict.DENIED
    assert result.pairs[0].ingress.allowed_by == (Reason(Direction.INGRESS, "shop/db-in", 0),)
    assert result.pairs[0].egress.isolating == ("shop/web-out",)


def test_namespace_and_pod_selector_in_one_peer_is_an_and() -> None:
    peer = {
        "namespaceSelector": {"matchLabels": {"team": "ops"}},
        "podSelector": {"matchLabels": WEB},
    }
    analysis = run(
        *BASE,
        deployment("ops", "web", WEB),
        policy("shop", "db", {"podSelector": {"matchLabels": DB}, "ingress": [{"from": [peer]}]}),
    )
    assert verdict(analysis, "ops/web", "shop/db", 5432) == "allowed"
    assert verdict(analysis, "ops/probe", "shop/db", 5432) == "denied"  # right namespace only
    assert verdict(analysis, "shop/web", "shop/db", 5432) == "denied"  # right labels only


def test_namespace_and_pod_selector_as_two_peers_is_an_or() -> None:
    peers = [
        {"namespaceSelector": {"matchLabels": {"team": "ops"}}},
        {"podSelector": {"matchLabels": WEB}},
    ]
    analysis = run(
        *BASE,
        deployment("ops", "web", WEB),
        policy("shop", "db", {"podSelector": {"matchLabels": DB}, "ingress": [{"from": peers}]}),
    )
    assert verdict(analysis, "ops/web", "shop/db", 5432) == "allowed"
    assert verdict(analysis, "ops/probe", "shop/db", 5432) == "allowed"  # any pod of ops
    assert verdict(analysis, "shop/web", "shop/db", 5432) == "allowed"  # web of the policy's ns
    assert verdict(analysis, "8.8.8.8", "shop/db", 5432) == "denied"


def test_a_pod_selector_alone_selects_in_the_policy_namespace_only() -> None:
    analysis = run(
        *BASE,
        deployment("ops", "web", WEB),
        policy(
            "shop",
            "db",
            {
                "podSelector": {"matchLabels": DB},
                "ingress": [{"from": [{"podSelector": {"matchLabels": WEB}}]}],
            },
        ),
    )
    assert verdict(analysis, "shop/web", "shop/db", 5432) == "allowed"
    assert verdict(analysis, "ops/web", "shop/db", 5432) == "denied"


def test_empty_selectors_select_everything_in_their_scope() -> None:
    all_in_ns = {"podSelector": {"matchLabels": DB}, "ingress": [{"from": [{"podSelector": {}}]}]}
    analysis = run(*BASE, policy("shop", "db", all_in_ns))
    assert verdict(analysis, "shop/web", "shop/db", 1) == "allowed"
    assert verdict(analysis, "ops/probe", "shop/db", 1) == "denied"
    assert verdict(analysis, "8.8.8.8", "shop/db", 1) == "denied"  # pods only, not outside
    all_ns = {
        "podSelector": {"matchLabels": DB},
        "ingress": [{"from": [{"namespaceSelector": {}}]}],
    }
    analysis = run(*BASE, policy("shop", "db", all_ns))
    assert verdict(analysis, "ops/probe", "shop/db", 1) == "allowed"
    assert verdict(analysis, "8.8.8.8", "shop/db", 1) == "denied"


def test_an_empty_pod_selector_on_the_policy_selects_every_pod_of_its_namespace() -> None:
    analysis = run(*BASE, policy("shop", "default-deny", {"podSelector": {}}))
    assert verdict(analysis, "ops/probe", "shop/web", 80) == "denied"
    assert verdict(analysis, "ops/probe", "shop/db", 80) == "denied"
    assert verdict(analysis, "shop/web", "ops/probe", 80) == "allowed"


def test_a_rule_without_peers_allows_every_source_inside_and_outside() -> None:
    for rule in ({}, {"from": []}, {"ports": [{"port": 5432}]}):
        analysis = run(
            *BASE, policy("shop", "db", {"podSelector": {"matchLabels": DB}, "ingress": [rule]})
        )
        assert verdict(analysis, "ops/probe", "shop/db", 5432) == "allowed", rule
        assert verdict(analysis, "203.0.113.7", "shop/db", 5432) == "allowed", rule


def test_an_empty_ingress_list_denies_everything() -> None:
    analysis = run(*BASE, policy("shop", "db", {"podSelector": {"matchLabels": DB}, "ingress": []}))
    assert verdict(analysis, "shop/web", "shop/db", 5432) == "denied"
    assert verdict(analysis, "10.0.0.1", "shop/db", 5432) == "denied"


def test_ip_block_except_ranges_are_cut_out() -> None:
    block = {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}
    analysis = run(
        *BASE,
        policy("shop", "db", {"podSelector": {"matchLabels": DB}, "ingress": [{"from": [block]}]}),
    )
    assert verdict(analysis, "10.2.3.4", "shop/db", 5432) == "allowed"
    assert verdict(analysis, "10.1.3.4", "shop/db", 5432) == "denied"
    assert verdict(analysis, "10.0.0.0/8", "shop/db", 5432) == "partial"
    assert verdict(analysis, "10.2.0.0/16", "shop/db", 5432) == "allowed"
    assert verdict(analysis, "11.0.0.1", "shop/db", 5432) == "denied"
    sources = [str(c.source) for c in analysis.connections if c.destination == DB_REF]
    assert sources == ["10.0.0.0/8 except 10.1.0.0/16"]


def test_ip_blocks_describe_the_outside_not_pods() -> None:
    block = {"ipBlock": {"cidr": "0.0.0.0/0"}}
    analysis = run(
        *BASE,
        policy("shop", "db", {"podSelector": {"matchLabels": DB}, "ingress": [{"from": [block]}]}),
    )
    assert verdict(analysis, "8.8.8.8", "shop/db", 5432) == "allowed"
    assert verdict(analysis, "shop/web", "shop/db", 5432) == "denied"


def test_named_ports_resolve_per_destination_pod_and_may_differ_within_a_workload() -> None:
    rollout = (
        pod(
            "shop",
            "api-a",
            {"app": "api"},
            [{"name": "http", "containerPort": 8080}],
            owner="api-1",
        ),
        pod(
            "shop",
            "api-b",
            {"app": "api"},
            [{"name": "http", "containerPort": 9090}],
            owner="api-1",
        ),
    )
    spec = {
        "podSelector": {"matchLabels": {"app": "api"}},
        "ingress": [{"ports": [{"port": "http"}]}],
    }
    analysis = run(*BASE, *rollout, policy("shop", "api", spec))
    assert verdict(analysis, "shop/web", "shop/api-1", 8080) == "partial"
    assert verdict(analysis, "shop/web", "shop/api-1", 9090) == "partial"
    assert verdict(analysis, "shop/web", "shop/api-1", 8081) == "denied"
    connection = analysis.between(WEB_REF, WorkloadRef("shop", "api-1", "ReplicaSet"))
    assert connection is not None
    assert [(s.ports, s.partial) for s in connection.ports] == [("8080", True), ("9090", True)]


def test_a_named_port_needs_the_same_protocol_on_the_container() -> None:
    target = deployment(
        "shop", "dns", {"app": "dns"}, [{"name": "dns", "containerPort": 53, "protocol": "UDP"}]
    )
    spec = {
        "podSelector": {"matchLabels": {"app": "dns"}},
        "ingress": [{"ports": [{"port": "dns"}]}],
    }
    analysis = run(*BASE, target, policy("shop", "dns", spec))
    assert verdict(analysis, "shop/web", "shop/dns", 53, "UDP") == "denied"  # rule is TCP
    assert verdict(analysis, "shop/web", "shop/dns", 53, "TCP") == "denied"  # no TCP port "dns"
    spec["ingress"] = [{"ports": [{"port": "dns", "protocol": "UDP"}]}]
    analysis = run(*BASE, target, policy("shop", "dns", spec))
    assert verdict(analysis, "shop/web", "shop/dns", 53, "UDP") == "allowed"


def test_a_named_port_toward_the_outside_matches_nothing() -> None:
    spec = {
        "podSelector": {"matchLabels": WEB},
        "policyTypes": ["Egress"],
        "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": "https"}]}],
    }
    analysis = run(*BASE, policy("shop", "web", spec))
    assert verdict(analysis, "shop/web", "1.1.1.1", 443) == "denied"


def test_end_port_allows_the_whole_range_inclusive() -> None:
    spec = {
        "podSelector": {"matchLabels": DB},
        "ingress": [{"ports": [{"port": 8000, "endPort": 9000}]}],
    }
    analysis = run(*BASE, policy("shop", "db", spec))
    assert [
        verdict(analysis, "shop/web", "shop/db", p) for p in (7999, 8000, 8500, 9000, 9001)
    ] == ["denied", "allowed", "allowed", "allowed", "denied"]
    connection = analysis.between(WEB_REF, DB_REF)
    assert connection is not None
    assert [s.ports for s in connection.ports] == ["8000-9000"]


def test_protocol_defaults_to_tcp_and_a_port_less_entry_allows_every_port_of_its_protocol() -> None:
    spec = {
        "podSelector": {"matchLabels": DB},
        "ingress": [{"ports": [{"port": 5432}, {"protocol": "SCTP"}]}],
    }
    analysis = run(*BASE, policy("shop", "db", spec))
    assert verdict(analysis, "shop/web", "shop/db", 5432, "TCP") == "allowed"
    assert verdict(analysis, "shop/web", "shop/db", 5432, "UDP") == "denied"
    assert verdict(analysis, "shop/web", "shop/db", 7, "SCTP") == "allowed"


def test_rules_of_all_selecting_policies_add_up_and_each_is_named() -> None:
    first = policy(
        "shop", "a", {"podSelector": {"matchLabels": DB}, "ingress": [{"ports": [{"port": 5432}]}]}
    )
    second = policy(
        "shop",
        "b",
        {"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": WEB}}]}]},
    )
    analysis = run(*BASE, first, second)
    result = ask(analysis, "shop/web", "shop/db", 5432)
    assert result.pairs[0].ingress.isolating == ("shop/a", "shop/b")
    assert result.pairs[0].ingress.allowed_by == (
        Reason(Direction.INGRESS, "shop/a", 0),
        Reason(Direction.INGRESS, "shop/b", 0),
    )
    assert verdict(analysis, "ops/probe", "shop/db", 5432) == "allowed"  # rule a: any source
    assert verdict(analysis, "ops/probe", "shop/db", 5433) == "denied"


def test_namespaces_carry_their_automatic_name_label_even_when_not_declared() -> None:
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "tools"}}}
    analysis = run(
        *BASE,
        deployment("tools", "ci", {"app": "ci"}),
        policy("shop", "db", {"podSelector": {"matchLabels": DB}, "ingress": [{"from": [peer]}]}),
    )
    assert verdict(analysis, "tools/ci", "shop/db", 5432) == "allowed"
    assert verdict(analysis, "ops/probe", "shop/db", 5432) == "denied"


def test_unisolated_pods_reach_and_are_reached_from_everywhere_outside() -> None:
    analysis = run(*BASE)
    outside = {str(c.source) for c in analysis.connections if isinstance(c.source, External)}
    assert outside == {"0.0.0.0/0", "::/0"}
    assert verdict(analysis, "2001:db8::1", "shop/db", 5432) == "allowed"
