"""Prometheus metrics for one gateway, in a registry of its own (never the global one).

    verity_decisions_total{effect,rule}                 decisions; rule "none" when none
    verity_decision_duration_seconds                    the policy engine alone (µs buckets)
    verity_token_verifications_total{outcome}           "ok" or the rejection reason
    verity_jwks_fetches_total{issuer,outcome}           "ok" / "error", from the verifiers
    verity_jwks_stale{issuer}                           1 while serving stale keys
    verity_jwks_stale_seconds{issuer}                   how long past fresh
    verity_upstream_duration_seconds{route,status_class} time to the response headers
    verity_audit_write_duration_seconds                 append to acknowledgement
    verity_audit_write_failures_total                   appends not acknowledged
    verity_audit_queue_depth                            events waiting for the next commit
    verity_audit_events_total / _batches_total          committed by the writer
    verity_audit_writer_up                              1 while the audit log takes events
    verity_store_channel_up{channel}                    1 while a shared channel (redis,
                                                        postgresql) delivers, 0 while down
    verity_degraded                                     1 while any shared channel is down
    verity_revocation_delivery_seconds                  revoked (any node) -> delivered here

Label values are bounded: ``effect`` is an enum, ``outcome`` a ``RejectionReason``,
``route``/``issuer`` come from configuration, and ``rule`` from the policy, capped at
``max_rules`` distinct names (then ``other``). JWKS and audit-writer figures are read at
scrape time from ``TokenVerifier.jwks_status()`` and ``AuditLog.stats``/``pending``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ..identity import TokenVerifier
from ..model import Decision

if TYPE_CHECKING:  # verity.audit imports verity.config, which imports the gateway and us
    from ..audit import AuditLog
    from ..store.delivery import DeliverySnapshot

DECISION_BUCKETS = (1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3)
UPSTREAM_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
AUDIT_BUCKETS = (1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5)
NO_RULE = "none"
OTHER_RULE = "other"


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def status_class(status: int) -> str:
    """``200`` -> ``2xx`` (five label values, whatever the upstream answers)."""
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


class JwksCollector(Collector):
    """Reads every verifier's key-source status at scrape time (static keys: nothing)."""

    def __init__(self, verifiers: Sequence[TokenVerifier]) -> None:
        self.verifiers = tuple(verifiers)

    def collect(self) -> Iterable[Metric]:
        """The JWKS families, one sample set per issuer that fetches keys."""
        fetches = CounterMetricFamily(
            "verity_jwks_fetches", "JWKS fetches by issuer and outcome.",
            labels=["issuer", "outcome"],
        )  # fmt: skip
        stale = GaugeMetricFamily(
            "verity_jwks_stale", "1 while an issuer's keys are served stale.", labels=["issuer"]
        )
        age = GaugeMetricFamily(
            "verity_jwks_stale_seconds", "Seconds since an issuer's keys stopped being fresh.",
            labels=["issuer"],
        )  # fmt: skip
        now = time.time()
        for verifier in self.verifiers:
            status = verifier.jwks_status()
            if status is None:
                continue
            issuer = verifier.config.issuer
            fetches.add_metric([issuer, "ok"], status.fetches_ok)
            fetches.add_metric([issuer, "error"], status.fetches_failed)
            stale.add_metric([issuer], 1.0 if status.stale else 0.0)
            past = now - status.fresh_until if status.fresh_until is not None else 0.0
            age.add_metric([issuer], max(0.0, past) if status.stale else 0.0)
        return [fetches, stale, age]

    def describe(self) -> Iterable[Metric]:
        """Nothing to pre-declare (names are checked at scrape time)."""
        return []


class AuditCollector(Collector):
    """Reads the audit writer's queue depth and counters at scrape time."""

    def __init__(self, audit: AuditLog) -> None:
        self.audit = audit

    def collect(self) -> Iterable[Metric]:
        """Queue depth, committed events and batches, writer failures."""
        stats = self.audit.stats
        depth = GaugeMetricFamily(
            "verity_audit_queue_depth", "Audit events waiting for the next group commit.",
            value=self.audit.pending,
        )  # fmt: skip
        events = CounterMetricFamily(
            "verity_audit_events", "Audit events committed.", value=stats.events
        )
        batches = CounterMetricFamily(
            "verity_audit_batches", "Audit group commits.", value=stats.batches
        )
        failures = CounterMetricFamily(
            "verity_audit_writer_failures", "Failed audit commits or checkpoints.",
            value=stats.failures,
        )  # fmt: skip
        up = GaugeMetricFamily(  # the same health /readyz reports (AuditLog.health)
            "verity_audit_writer_up", "1 while the audit log takes events, 0 while not.",
            value=1.0 if self.audit.health().ok else 0.0,
        )  # fmt: skip
        return [depth, events, batches, failures, up]

    def describe(self) -> Iterable[Metric]:
        """Nothing to pre-declare."""
        return []


class StoreCollector(Collector):
    """Reads the shared stores' channel health and revocation delivery delays at scrape
    time (``Stores.health``, ``Stores.deliveries``)."""

    def __init__(
        self,
        health: Callable[[], Mapping[str, bool]],
        deliveries: Callable[[], DeliverySnapshot] | None = None,
    ) -> None:
        self.health = health
        self.deliveries = deliveries

    def collect(self) -> Iterable[Metric]:
        """One sample per channel in use, and the node-wide degraded flag."""
        report = self.health()
        up = GaugeMetricFamily(
            "verity_store_channel_up", "1 while a shared state channel works, 0 while down.",
            labels=["channel"],
        )  # fmt: skip
        for channel, working in sorted(report.items()):
            up.add_metric([channel], 1.0 if working else 0.0)
        degraded = GaugeMetricFamily(
            "verity_degraded", "1 while any shared channel is down (decisions continue).",
            value=0.0 if all(report.values()) else 1.0,
        )  # fmt: skip
        if self.deliveries is None:
            return [up, degraded]
        snapshot = self.deliveries()
        delivery = HistogramMetricFamily(
            "verity_revocation_delivery_seconds",
            "Revoked on any node -> delivered to this one (first channel to arrive).",
            buckets=[(_bound(b), float(n)) for b, n in snapshot.buckets],
            sum_value=snapshot.total_seconds,
        )
        return [up, degraded, delivery]

    def describe(self) -> Iterable[Metric]:
        """Nothing to pre-declare."""
        return []


@dataclass(frozen=True, slots=True)
class CacheSnapshot:
    """The decision cache's and the reused assertions' counters, read at scrape time."""

    decision_hits: int = 0
    decision_misses: int = 0
    decision_entries: int = 0
    reused_assertion_signatures: int = 0


class CacheCollector(Collector):
    """Reads the node's decision cache and assertion-reuse counters at scrape time."""

    def __init__(self, snapshot: Callable[[], CacheSnapshot]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterable[Metric]:
        """Hits, misses and entries of the decision cache; reused-assertion signatures."""
        now = self.snapshot()
        return [
            CounterMetricFamily(
                "verity_decision_cache_hits", "Decisions reused from the node's cache.",
                value=now.decision_hits,
            ),
            CounterMetricFamily(
                "verity_decision_cache_misses",
                "Cacheable decisions not found (or expired, or invalidated) in the cache.",
                value=now.decision_misses,
            ),
            GaugeMetricFamily(
                "verity_decision_cache_entries", "Decisions in the node's cache.",
                value=now.decision_entries,
            ),
            CounterMetricFamily(
                "verity_reused_assertion_signatures",
                "Assertions signed for reuse (routes with a companion key).",
                value=now.reused_assertion_signatures,
            ),
        ]  # fmt: skip

    def describe(self) -> Iterable[Metric]:
        """Nothing to pre-declare."""
        return []


class GatewayMetrics:
    """The gateway's metrics and their registry (``exposition()`` renders them)."""

    def __init__(self, *, registry: CollectorRegistry | None = None, max_rules: int = 500) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._max_rules = max_rules
        self._rules: set[str] = set()
        reg = self.registry
        self.decisions = Counter(
            "verity_decisions", "Access decisions by effect and deciding rule.",
            ["effect", "rule"], registry=reg,
        )  # fmt: skip
        self.decision_seconds = Histogram(
            "verity_decision_duration_seconds", "Policy engine time per decision.",
            buckets=DECISION_BUCKETS, registry=reg,
        )  # fmt: skip
        self.token_verifications = Counter(
            "verity_token_verifications", "Bearer token verifications by outcome.",
            ["outcome"], registry=reg,
        )  # fmt: skip
        self.upstream_seconds = Histogram(
            "verity_upstream_duration_seconds", "Upstream time to response headers.",
            ["route", "status_class"], buckets=UPSTREAM_BUCKETS, registry=reg,
        )  # fmt: skip
        self.audit_write_seconds = Histogram(
            "verity_audit_write_duration_seconds", "Audit append to durable acknowledgement.",
            buckets=AUDIT_BUCKETS, registry=reg,
        )  # fmt: skip
        self.audit_write_failures = Counter(
            "verity_audit_write_failures", "Audit appends not acknowledged.", registry=reg
        )

    def watch_verifiers(self, verifiers: Sequence[TokenVerifier]) -> None:
        """Export the JWKS state of ``verifiers`` (read at every scrape)."""
        self.registry.register(JwksCollector(verifiers))

    def watch_audit(self, audit: AuditLog) -> None:
        """Export the queue depth and counters of ``audit`` (read at every scrape)."""
        self.registry.register(AuditCollector(audit))

    def watch_stores(
        self,
        health: Callable[[], Mapping[str, bool]],
        deliveries: Callable[[], DeliverySnapshot] | None = None,
    ) -> None:
        """Export the shared stores' channel health (``Stores.health``) and revocation
        delivery delays (``Stores.deliveries.snapshot``), read at every scrape."""
        self.registry.register(StoreCollector(health, deliveries))

    def watch_caches(self, snapshot: Callable[[], CacheSnapshot]) -> None:
        """Export the decision cache's and assertion reuse's counters (read at scrape)."""
        self.registry.register(CacheCollector(snapshot))

    def rule_label(self, rule: str | None) -> str:
        """The ``rule`` label: the policy's rule name, ``none``, or ``other`` past the cap."""
        if rule is None:
            return NO_RULE
        if rule in self._rules:
            return rule
        if len(self._rules) >= self._max_rules:
            return OTHER_RULE
        self._rules.add(rule)
        return rule

    def decided(self, decision: Decision, seconds: float | None) -> None:
        """Count one decision (and the engine's time, when it was measured)."""
        self.decisions.labels(decision.effect.value, self.rule_label(decision.rule)).inc()
        if seconds is not None:
            self.decision_seconds.observe(seconds)

    def token_verified(self, outcome: str) -> None:
        """Count one verification: ``ok`` or a ``RejectionReason`` value."""
        self.token_verifications.labels(outcome).inc()

    def upstream(self, route: str, status: int, seconds: float) -> None:
        """Observe one upstream answer (route names come from configuration)."""
        self.upstream_seconds.labels(route, status_class(status)).observe(seconds)

    def audit_written(self, seconds: float, *, ok: bool) -> None:
        """Observe one audit append (a failure is counted, not timed)."""
        if ok:
            self.audit_write_seconds.observe(seconds)
        else:
            self.audit_write_failures.inc()

    def exposition(self) -> tuple[bytes, str]:
        """(body, content type) in the Prometheus text format."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
