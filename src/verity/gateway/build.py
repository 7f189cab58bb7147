"""Assembling a ``Gateway`` from configuration sections (and test doubles)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import httpx
from starlette.types import ASGIApp

from .. import assertion_companion
from ..identity import IdentityConfig, TokenVerifier
from ..observability import CacheSnapshot, GatewayMetrics, GatewayObserver, MetricsConfig
from ..policy import LivePolicy
from .app import BrowserLogin, Gateway
from .assertion import AssertionSigner
from .assertion_reuse import AssertionReuse
from .authn import Authenticator
from .decision_cache import DecisionCache
from .enforce import Decider, DecisionListener, Enforcer
from .errors import AssertionKeyError
from .facts import FactSource
from .headers import ClientResolver
from .proxy import new_transport
from .readiness import Readiness
from .settings import GatewayConfig

if TYPE_CHECKING:  # verity.config imports verity.gateway.settings: no import at run time
    from ..audit import AuditLog
    from ..audit.sink import SecurityEventSink
    from ..config import ServerConfig


def _assertion_reuse(config: GatewayConfig, signer: AssertionSigner) -> AssertionReuse | None:
    """Reused assertions for the routes with a companion key (none: no such route).
    Raises ``AssertionKeyError`` for a key that cannot be read or is too short."""
    keys = {}
    for route in config.routes:
        if route.assertion_companion_key_file is not None:
            try:
                keys[route.name] = assertion_companion.load_key(route.assertion_companion_key_file)
            except assertion_companion.CompanionKeyError as exc:
                raise AssertionKeyError(f"gateway.routes[{route.name}]: {exc}") from None
    return AssertionReuse(signer, keys) if keys else None


def build_gateway(
    config: GatewayConfig,
    *,
    server: ServerConfig,
    identity: IdentityConfig,
    decider: Decider,
    reload_seconds: float = 0.0,
    verifiers: Sequence[TokenVerifier] | None = None,
    signer: AssertionSigner | None = None,
    fact_sources: Sequence[FactSource] = (),
    listeners: Sequence[DecisionListener] = (),
    transport: httpx.AsyncBaseTransport | None = None,
    audit: AuditLog | None = None,
    audit_fail_closed: bool = True,
    audit_timeout_seconds: float = 5.0,
    audit_allow_commit_window_seconds: float = 0.05,
    metrics: MetricsConfig | None = None,
    login: BrowserLogin | None = None,
    mounts: Sequence[tuple[str, ASGIApp]] = (),
    security_events: SecurityEventSink | None = None,
    local_users: bool = False,
) -> Gateway:
    """The gateway for ``config``.

    ``decider`` is usually a ``LivePolicy`` (then reloaded every ``reload_seconds`` and
    reported by ``/readyz``). ``verifiers`` defaults to one ``TokenVerifier`` per issuer
    of ``identity``; ``signer`` to the configured assertion key; ``transport`` to real
    connections (tests pass an ASGI transport).

    Every decision is counted in the gateway's own ``GatewayMetrics`` (served per
    ``metrics``) and, with ``audit``, appended to the audit log; an allow that the log
    does not acknowledge within ``audit_timeout_seconds`` is answered 503 unless
    ``audit_fail_closed`` is off; ``/readyz`` is 503 while ``audit.health()`` is not ok.
    Repeated allows of a (subject, route) are acknowledged by a group commit within
    ``audit_allow_commit_window_seconds`` (0: every allow waits for its commit; see
    ``verity.observability.recorder``).
    The caller owns ``audit`` (and closes it).

    With ``login`` (browser sign-in), a session cookie authenticates requests without a
    bearer token and unauthenticated browsers are sent to the login page; ``mounts``
    serves the gateway's own apps (login routes, embedded IdP) under path prefixes.
    """
    if verifiers is None:
        verifiers = [TokenVerifier(issuer) for issuer in identity.issuers]
    if signer is None:
        signer = AssertionSigner.from_config(config.assertion, issuer=config.public_url)
    reuse = _assertion_reuse(config, signer)
    decisions = DecisionCache(
        ttl_seconds=config.decision_cache.ttl_seconds,
        max_entries=config.decision_cache.max_entries,
    )

    def caches() -> CacheSnapshot:
        return CacheSnapshot(
            decisions.hits, decisions.misses, len(decisions),
            reuse.signatures if reuse is not None else 0,
        )  # fmt: skip

    gateway_metrics = GatewayMetrics()
    gateway_metrics.watch_caches(caches)
    gateway_metrics.watch_verifiers(verifiers)
    if audit is not None:
        gateway_metrics.watch_audit(audit)
    observer = GatewayObserver(
        metrics=gateway_metrics, audit=audit, fail_closed=audit_fail_closed,
        timeout_seconds=audit_timeout_seconds,
        allow_commit_window_seconds=audit_allow_commit_window_seconds,
    )  # fmt: skip
    enforcer = Enforcer(
        authenticator=Authenticator(
            verifiers, sessions=login.authenticate_cookie if login is not None else None
        ),
        decider=decider,
        signer=signer,
        fact_sources=fact_sources,
        listeners=listeners,
        observer=observer,
        decisions=decisions,
        reuse=reuse,
    )
    readiness = Readiness(
        verifiers=verifiers,
        policy=decider if isinstance(decider, LivePolicy) else None,
        reload_seconds=reload_seconds,
        max_stale_seconds=config.jwks_max_stale_seconds,
        events=security_events,
        audit=audit,  # /readyz is 503 while the audit log does not take events
    )
    return Gateway(
        config,
        resolver=ClientResolver(server.trusted_proxies, server.trusted_hops),
        enforcer=enforcer,
        signer=signer,
        transport=transport or new_transport(config.upstream_pool),
        readiness=readiness,
        metrics=gateway_metrics,
        metrics_config=metrics,
        login=login,
        mounts=mounts,
        local_users=local_users,
    )
