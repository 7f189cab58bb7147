"""``verity segment analyze|query``: exit codes (0 allowed, 1 denied, 2 bad input), the
versioned JSON documents, and bad input reported as FILE document N: key.path: message."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from verity.cli import app

GUIDES = str(Path(__file__).resolve().parents[2] / "examples" / "guides" / "microsegmentation")
runner = CliRunner()


def test_analyze_json_lists_connections_with_their_rules() -> None:
    result = runner.invoke(app, ["segment", "analyze", GUIDES, "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["schema"] == "verity.segment.analysis/v1"
    into_api = [
        c
        for c in document["connections"]
        if c["to"].get("workload") == "default/api-service[Deployment]"
    ]
    assert into_api == [
        {
            "from": {
                "workload": "default/gateway[Deployment]",
                "namespace": "default",
                "name": "gateway",
                "kind": "Deployment",
            },
            "to": {
                "workload": "default/api-service[Deployment]",
                "namespace": "default",
                "name": "api-service",
                "kind": "Deployment",
            },
            "ports": [
                {
                    "protocol": "TCP",
                    "from": 8080,
                    "to": 8080,
                    "partial": False,
                    "egress": [{"direction": "egress", "default": True}],
                    "ingress": [
                        {"direction": "ingress", "policy": "default/api-service-policy", "rule": 0}
                    ],
                }
            ],
        }
    ]
    api = next(w for w in document["workloads"] if w["name"] == "api-service")
    assert (api["pods"], api["ingress"], api["egress"]) == (3, "isolated", "isolated")


def test_analyze_table_names_workloads_and_rules() -> None:
    result = runner.invoke(app, ["segment", "analyze", GUIDES], env={"COLUMNS": "240"})
    assert result.exit_code == 0, result.output
    assert "default/gateway[Deployment]" in result.stdout
    assert "default/api-service-policy ingress[0]" in result.stdout


def test_query_exit_codes_follow_the_verdict() -> None:
    base = ["segment", "query", GUIDES, "--to", "default/api-service", "--json"]
    allowed = runner.invoke(app, [*base, "--from", "default/gateway", "--port", "8080"])
    assert allowed.exit_code == 0, allowed.output
    body = json.loads(allowed.stdout)
    assert (body["schema"], body["verdict"], body["allowed"]) == (
        "verity.segment.query/v1",
        "allowed",
        True,
    )
    assert body["pairs"][0]["ingress"]["allowed_by"] == [
        {"direction": "ingress", "policy": "default/api-service-policy", "rule": 0}
    ]
    denied = runner.invoke(app, [*base, "--from", "default/redis", "--port", "8080"])
    assert denied.exit_code == 1
    assert json.loads(denied.stdout)["pairs"][0]["ingress"]["isolating"] == [
        "default/api-service-policy"
    ]
    udp = runner.invoke(
        app, [*base, "--from", "default/gateway", "--port", "8080", "--protocol", "udp"]
    )
    assert udp.exit_code == 1


def test_query_human_output_names_the_deciding_rules() -> None:
    result = runner.invoke(
        app,
        [
            "segment",
            "query",
            GUIDES,
            "--from",
            "default/gateway",
            "--to",
            "default/api-service",
            "--port",
            "8080",
        ],
    )
    assert result.exit_code == 0
    assert result.stdout.startswith(
        "allowed: default/gateway[Deployment] -> default/api-service[Deployment]"
    )
    assert "allowed by: default/api-service-policy ingress[0]" in result.stdout


def test_bad_input_exits_2(tmp_path: Path) -> None:
    unknown = runner.invoke(
        app,
        ["segment", "query", GUIDES, "--from", "nope/x", "--to", "default/redis", "--port", "1"],
    )
    assert unknown.exit_code == 2
    assert "no workload 'nope/x'" in unknown.stderr
    protocol = runner.invoke(
        app,
        [
            "segment",
            "query",
            GUIDES,
            "--from",
            "default/redis",
            "--to",
            "default/redis",
            "--port",
            "1",
            "--protocol",
            "ICMP",
        ],
    )
    assert protocol.exit_code == 2
    missing = runner.invoke(app, ["segment", "analyze", str(tmp_path / "absent")])
    assert missing.exit_code == 2


def test_a_malformed_document_is_located_and_keep_going_analyses_the_rest(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n"
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\n"
        "spec: {podSelector: {}, ingress: [{ports: [{port: 0}]}]}\n",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["segment", "analyze", str(bad)])
    assert result.exit_code == 2
    assert (
        f"{bad} document 1: spec.ingress[0].ports[0].port: expected a port number" in result.stderr
    )
    kept = runner.invoke(app, ["segment", "analyze", str(bad), GUIDES, "--keep-going", "--json"])
    assert kept.exit_code == 0
    document = json.loads(kept.stdout)
    assert document["problems"] == [
        {
            "file": str(bad),
            "document": 1,
            "path": "spec.ingress[0].ports[0].port",
            "message": "expected a port number 1-65535, got 0",
        }
    ]
    assert any(
        c["to"].get("workload") == "default/api-service[Deployment]"
        for c in document["connections"]
    )
    assert f"skipped: {bad} document 1: spec.ingress[0].ports[0].port" in kept.stderr


def test_policies_of_kinds_not_analysed_are_warned_about(tmp_path: Path) -> None:
    anp = tmp_path / "anp.yaml"
    anp.write_text(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        "metadata: {name: deny-all, namespace: default}\nspec: {}\n",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["segment", "analyze", str(anp), GUIDES, "--json"])
    assert result.exit_code == 0
    assert "AuthorizationPolicy deny-all is not analysed yet" in result.stderr
    warnings = json.loads(result.stdout)["warnings"]
    assert [(w["file"], w["document"]) for w in warnings] == [(str(anp), 0)]
