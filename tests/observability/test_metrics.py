"""GatewayMetrics: own registry, bounded labels, JWKS state read from a real issuer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from tests.identity.idp_server import IdP
from verity.identity import IssuerConfig, TokenVerifier
from verity.identity.dev import generate_private_key, public_jwk
from verity.model import Decision, Effect
from verity.observability import GatewayMetrics, status_class

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def parse(metrics: GatewayMetrics) -> Samples:
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def decision(effect: Effect, rule: str | None) -> Decision:
    return Decision(effect, rule, "d1", "v1")


def test_each_gateway_has_its_own_registry() -> None:
    first, second = GatewayMetrics(), GatewayMetrics()  # no "Duplicated timeseries"
    first.decided(decision(Effect.ALLOW, "r"), 1e-6)
    assert "verity_decisions_total" in parse(first)
    assert "verity_decisions_total" not in parse(second)
    assert REGISTRY.get_sample_value("verity_decisions_total", {"effect": "allow"}) is None


def test_rule_label_cardinality_is_bounded() -> None:
    metrics = GatewayMetrics(max_rules=2)
    for rule in ("a", "b", "c", "d", None, "a"):
        metrics.decided(decision(Effect.DENY, rule), None)
    counts = parse(metrics)["verity_decisions_total"]
    rules = {dict(labels)["rule"]: value for labels, value in counts.items()}
    assert rules == {"a": 2, "b": 1, "other": 2, "none": 1}


def test_decision_latency_buckets_are_microsecond_scale() -> None:
    metrics = GatewayMetrics()
    metrics.decided(decision(Effect.ALLOW, "r"), 3e-6)
    buckets = parse(metrics)["verity_decision_duration_seconds_bucket"]
    by_le = {float(dict(labels)["le"]): value for labels, value in buckets.items()}
    assert by_le[2.5e-6] == 0
    assert by_le[5e-6] == 1


@pytest.mark.parametrize(
    ("status", "label"), [(200, "2xx"), (304, "3xx"), (404, "4xx"), (502, "5xx"), (999, "other")]
)
def test_status_class(status: int, label: str) -> None:
    assert status_class(status) == label


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def idp() -> Iterator[IdP]:
    server = IdP()
    key = generate_private_key("ES256")
    server.jwks = {"keys": [public_jwk(key, "ES256", "k1")]}
    yield server
    server.stop()


def test_jwks_fetches_and_staleness_come_from_the_verifier(idp: IdP) -> None:
    clock = Clock()
    config = IssuerConfig(issuer=idp.issuer, audiences=["api"], algorithms=("ES256",))
    verifier = TokenVerifier(config, clock=clock)
    metrics = GatewayMetrics()
    metrics.watch_verifiers([verifier])
    verifier.source.get_keys()
    fresh = parse(metrics)
    assert fresh["verity_jwks_fetches_total"][(("issuer", idp.issuer), ("outcome", "ok"))] == 1
    assert fresh["verity_jwks_stale"][(("issuer", idp.issuer),)] == 0
    idp.status = 500
    clock.now += 3600  # past max-age=300: a refresh is due, and it fails
    verifier.source.get_keys()  # stale keys stay usable
    stale = parse(metrics)
    assert stale["verity_jwks_fetches_total"][(("issuer", idp.issuer), ("outcome", "error"))] == 1
    assert stale["verity_jwks_stale"][(("issuer", idp.issuer),)] == 1


def test_store_health_and_revocation_delivery_are_read_at_scrape_time() -> None:
    from verity.store.delivery import DeliveryStats

    health = {"postgresql": True, "redis": True}
    stats = DeliveryStats()
    metrics = GatewayMetrics()
    metrics.watch_stores(lambda: health, stats.snapshot)
    samples = parse(metrics)
    assert samples["verity_store_channel_up"] == {
        (("channel", "postgresql"),): 1.0, (("channel", "redis"),): 1.0,
    }  # fmt: skip
    assert samples["verity_degraded"] == {(): 0.0}
    assert samples["verity_revocation_delivery_seconds_count"] == {(): 0.0}
    health["redis"] = False
    stats.observe(0.002)
    stats.observe(0.04)
    samples = parse(metrics)
    assert samples["verity_store_channel_up"][(("channel", "redis"),)] == 0.0
    assert samples["verity_degraded"] == {(): 1.0}
    buckets = samples["verity_revocation_delivery_seconds_bucket"]
    assert buckets[(("le", "0.001"),)] == 0.0
    assert buckets[(("le", "0.0025"),)] == 1.0
    assert buckets[(("le", "0.05"),)] == 2.0
    assert buckets[(("le", "+Inf"),)] == 2.0
    assert samples["verity_revocation_delivery_seconds_sum"][()] == pytest.approx(0.042)


def test_decision_cache_and_assertion_reuse_counters_are_read_at_scrape_time() -> None:
    from verity.observability import CacheSnapshot

    now = CacheSnapshot()
    metrics = GatewayMetrics()
    metrics.watch_caches(lambda: now)
    samples = parse(metrics)
    assert samples["verity_decision_cache_hits_total"] == {(): 0.0}
    now = CacheSnapshot(decision_hits=7, decision_misses=3, decision_entries=2,
                        reused_assertion_signatures=1)  # fmt: skip
    samples = parse(metrics)
    assert samples["verity_decision_cache_hits_total"] == {(): 7.0}
    assert samples["verity_decision_cache_misses_total"] == {(): 3.0}
    assert samples["verity_decision_cache_entries"] == {(): 2.0}
    assert samples["verity_reused_assertion_signatures_total"] == {(): 1.0}
