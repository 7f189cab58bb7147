"""The deploy/ examples are valid Verity configurations with what several nodes need."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from verity.config import VerityConfig, parse_config
from verity.gateway.routing import RouteTable

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def compose_config() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose/verity.yaml").read_text())
    return data


def kubernetes_config() -> dict[str, Any]:
    documents = list(yaml.safe_load_all((DEPLOY / "kubernetes/verity.yaml").read_text()))
    config_map = next(d for d in documents if d["kind"] == "ConfigMap")
    data: dict[str, Any] = yaml.safe_load(config_map["data"]["verity.yaml"])
    return data


@pytest.mark.parametrize("load", [compose_config, kubernetes_config])
def test_every_node_shares_keys_and_takes_store_urls_from_the_environment(load: Any) -> None:
    raw = load()
    assert "store" not in raw  # VERITY_STORE_URL / VERITY_REDIS_URL: no password in files
    config: VerityConfig = parse_config(raw, source="deploy")
    assert config.gateway.assertion.signing_key is not None  # one key for every node
    assert config.audit.signing_key is not None
    assert config.gateway.routes
    assert RouteTable(config.gateway.routes)
    assert config.server.trusted_proxies  # the load balancer's X-Forwarded-For is believed
    assert config.metrics.allowed_cidrs


def test_the_compose_nodes_mount_the_keys_and_run_the_same_file() -> None:
    compose = yaml.safe_load((DEPLOY / "compose/compose.yaml").read_text())
    nodes = [compose["services"][name] for name in ("node-a", "node-b", "node-c")]
    assert all(node == nodes[0] for node in nodes)  # one YAML anchor: the same node thrice
    volumes = nodes[0]["volumes"]
    assert "./verity.yaml:/etc/verity/verity.yaml:ro" in volumes
    assert "./secrets:/run/secrets:ro" in volumes
    assert nodes[0]["user"] == "10001:10001"
    assert nodes[0]["read_only"] is True
    raw = compose_config()
    assert str(raw["gateway"]["assertion"]["signing_key"]).startswith("/run/secrets/")
    assert nodes[0]["environment"]["VERITY_STORE_URL"].startswith("postgresql://")
    assert nodes[0]["environment"]["VERITY_REDIS_URL"].startswith("redis://")


def test_the_kubernetes_pods_mount_the_key_secret_read_only() -> None:
    documents = list(yaml.safe_load_all((DEPLOY / "kubernetes/verity.yaml").read_text()))
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["keys"]["secret"]["secretName"] == "verity-keys"
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["keys"]["readOnly"] is True
    key = kubernetes_config()["gateway"]["assertion"]["signing_key"]
    assert key.startswith(mounts["keys"]["mountPath"] + "/")
