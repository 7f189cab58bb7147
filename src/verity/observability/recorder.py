"""``GatewayObserver``: audit events, metrics and security log lines for the decision path.

The gateway's ``Enforcer`` calls it at three points: a token was rejected, a token was
verified, a decision was made. For each decision one audit event (OCSF API Activity
6003: decision id, rule, reasons, policy version, principal, client IP, target) is
appended to the audit log: every decision is audited, individually (no aggregation).

Which decisions wait for their durable commit (group commit, docs/audit.md):

- a deny, and the first allow of a (subject, route) pair, are appended with
  ``AuditLog.append_async`` and awaited: the request waits for the group commit that
  makes the event durable, and no longer (``timeout_seconds`` bounds it);
- a repeated allow (the pair was allowed, durably, before) is handed to
  ``AuditLog.append_soon`` and answered at once, the writer committing it with the next
  group commit, when ``allow_commit_window_seconds`` is above 0 and the log keeps up
  (running, no failed commit, the oldest uncommitted event younger than the window).
  When it does not, the repeated allow waits for its commit like any other event, and is
  refused (503) under ``fail_closed`` when not acknowledged: an audit outage never lets
  allows through unaudited. A crash can lose the repeated allows acknowledged within one
  window. A window of 0 makes every allow wait, as before.

The subject is the principal (kind and id) with its session or token identity (the
``session_id``, else the token's ``jti`` and ``iat``): a new token or session is a new
subject, whose first allow is durable again. The memory of allowed pairs is an LRU of
``allow_memory_entries`` (default 65,536) pairs; a forgotten pair's next allow is simply
a first allow again (durable), so the bound costs latency, never audit.

``audit_decision`` never raises; it answers whether the event was acknowledged. What the
gateway then does is its policy (``fail_closed``): a deny stays a deny whatever happened;
an allow whose event was not acknowledged is answered 503 when ``fail_closed`` is on
(the default) rather than served unaudited. A rejected token becomes an Authentication
(3002) failure event and a ``authn.token_rejected`` log line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from ..audit.builders import authentication_event, encode_decision
from ..audit.ocsf import UserType
from ..audit.schema import UserRef
from ..identity import TokenError
from ..model import AccessRequest, Decision, Effect, Principal
from .metrics import GatewayMetrics
from .seclog import log_security_event

if TYPE_CHECKING:
    from ..audit import AuditLog

log = logging.getLogger("verity.observability")

ALLOW_MEMORY_ENTRIES = 65_536
"""(subject, route) pairs remembered as allowed before (least recently used go first)."""

_SubjectKey = tuple[object, ...]


def subject_key(principal: Principal, route: str) -> _SubjectKey:
    """The (subject, route) pair of a decision: the principal's kind and id, its session
    or token identity (``session_id``; the token's ``jti`` and ``iat``), and the route."""
    claims = principal.claims
    jti, iat = claims.get("jti"), claims.get("iat")
    return (
        principal.kind,
        principal.id,
        principal.session_id,
        jti if isinstance(jti, str) else None,
        iat if isinstance(iat, int | float) and not isinstance(iat, bool) else None,
        route,
    )


class GatewayObserver:
    """Audit + metrics + security logs for one gateway (see the module docstring)."""

    def __init__(
        self,
        *,
        metrics: GatewayMetrics | None = None,
        audit: AuditLog | None = None,
        fail_closed: bool = True,
        timeout_seconds: float = 5.0,
        allow_commit_window_seconds: float = 0.05,
        allow_memory_entries: int = ALLOW_MEMORY_ENTRIES,
    ) -> None:
        """Without ``audit`` nothing is audited and every decision counts as acknowledged
        (tests, or a deployment that chose no audit log); ``fail_closed`` then is moot.
        ``allow_commit_window_seconds`` 0 makes every allow wait for its commit."""
        self.metrics = metrics if metrics is not None else GatewayMetrics()
        self.audit = audit
        self.fail_closed = fail_closed and audit is not None
        self.timeout_seconds = timeout_seconds
        self.allow_commit_window_seconds = max(0.0, allow_commit_window_seconds)
        self.allow_memory_entries = max(0, allow_memory_entries)
        self._allowed: OrderedDict[_SubjectKey, None] = OrderedDict()

    def token_verified(self, outcome: str) -> None:
        """Count a verification: ``ok`` or a rejection reason code."""
        self.metrics.token_verified(outcome)

    def decided(
        self, request: AccessRequest, decision: Decision, route: str, seconds: float | None
    ) -> None:
        """Metrics and, for a deny, a security log line. Never raises."""
        try:
            self.metrics.decided(decision, seconds)
            if decision.effect is not Effect.ALLOW:
                log_security_event(
                    "access.denied", client_ip=request.network.ip,
                    principal_id=request.principal.id, decision_id=decision.decision_id,
                    route=route, rule=decision.rule,
                    reasons=[reason.code for reason in decision.reasons],
                )  # fmt: skip
        except Exception:  # observing must never change a decision
            log.exception("recording decision %s failed", decision.decision_id)

    async def audit_decision(self, request: AccessRequest, decision: Decision, route: str) -> bool:
        """Append the decision's audit event; True once acknowledged: durable, or, for a
        repeated allow while the log keeps up, queued for the next group commit."""
        if self.audit is None:
            return True
        started = time.perf_counter()
        key: _SubjectKey | None = None
        try:
            event = encode_decision(request, decision)  # built and encoded once, here
            if (
                self.allow_commit_window_seconds > 0
                and self.allow_memory_entries > 0
                and decision.effect is Effect.ALLOW
            ):
                key = subject_key(request.principal, route)
                allowed = self._allowed
                if key in allowed and self.audit.append_soon(
                    event, within=self.allow_commit_window_seconds
                ):
                    allowed.move_to_end(key)
                    self.metrics.audit_written(time.perf_counter() - started, ok=True)
                    return True
            async with asyncio.timeout(self.timeout_seconds):  # no extra Task, unlike wait_for
                await self.audit.append_async(event)
        except Exception as exc:  # noqa: BLE001 - AuditError, TimeoutError, anything: not audited
            self._audit_failed(request, decision, route, exc)
            return False
        if key is not None:  # a durable allow: the pair's later allows may be early
            self._remember(key)
        self.metrics.audit_written(time.perf_counter() - started, ok=True)
        return True

    def _remember(self, key: _SubjectKey) -> None:
        allowed = self._allowed
        allowed[key] = None
        allowed.move_to_end(key)
        while len(allowed) > self.allow_memory_entries:
            allowed.popitem(last=False)

    def _audit_failed(
        self, request: AccessRequest, decision: Decision, route: str, exc: BaseException
    ) -> None:
        self.metrics.audit_written(0.0, ok=False)
        refused = self.fail_closed and decision.effect is Effect.ALLOW
        log_security_event(
            "audit.write_failed", level="error", client_ip=request.network.ip,
            principal_id=request.principal.id, decision_id=decision.decision_id,
            route=route, effect=decision.effect.value, error=type(exc).__name__,
            action="refused_503" if refused else "kept_decision",
        )  # fmt: skip

    async def token_rejected(self, error: TokenError, *, client_ip: object, route: str) -> None:
        """Metrics, a security log line and an Authentication failure event. Never raises."""
        reason = error.reason.value
        fingerprint = error.token_hash[:16] if error.token_hash else None
        try:
            self.metrics.token_verified(reason)
            log_security_event(
                "authn.token_rejected", level="warning", client_ip=client_ip,
                route=route, reason=reason, fingerprint=fingerprint,
            )  # fmt: skip
            if self.audit is None:
                return
            event = authentication_event(
                UserRef(uid="unknown", type=UserType.UNKNOWN), success=False,
                src_ip=None if client_ip is None else str(client_ip),
                status_detail=reason, message=f"bearer token rejected: {reason}",
                detail={"route": route, "fingerprint": fingerprint},
            )  # fmt: skip
            started = time.perf_counter()
            async with asyncio.timeout(self.timeout_seconds):
                await self.audit.append_async(event)
            self.metrics.audit_written(time.perf_counter() - started, ok=True)
        except Exception as exc:  # noqa: BLE001 - a 401 stays a 401
            self.metrics.audit_written(0.0, ok=False)
            log_security_event(
                "audit.write_failed", level="error", client_ip=client_ip, route=route,
                effect="unauthenticated", error=type(exc).__name__, action="kept_decision",
            )  # fmt: skip
