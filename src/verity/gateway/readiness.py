"""Readiness and background upkeep: the policy in force and the issuers' keys.

Ready means: a policy is loaded, every issuer that fetches keys has usable keys that
are fresh or have been stale for at most ``max_stale_seconds`` (the IdP may be briefly
unreachable; cached keys keep verifying), and the audit log (when there is one) takes
events: its writer runs, its queue is not full, and its writes have not been failing or
stuck for longer than its ``unhealthy_after`` (``AuditLog.health``); an allow that cannot
be audited is refused anyway, so a gateway whose log is down is taken out of rotation.
Startup fetches every issuer's keys once so the first request does not pay for it; a
policy file is re-read every ``reload_seconds``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ..identity import IdentityError, TokenVerifier
from ..policy import LivePolicy
from ..policy.live import ReloadResult

if TYPE_CHECKING:  # verity.audit imports verity.config, which imports this package
    from ..audit.health import AuditHealth
    from ..audit.sink import SecurityEventSink

log = logging.getLogger("verity.gateway")
Clock = Callable[[], float]
GATEWAY_ACTOR = "verity-gateway"


class AuditHealthSource(Protocol):
    """What readiness needs of an ``AuditLog``."""

    def health(self) -> AuditHealth:
        """Whether the log takes events now."""
        ...


class Readiness:
    """Answers ``/readyz`` and runs the policy reload loop."""

    def __init__(
        self,
        *,
        verifiers: Sequence[TokenVerifier],
        policy: LivePolicy | None = None,
        reload_seconds: float = 0.0,
        max_stale_seconds: float = 3600.0,
        clock: Clock = time.time,
        events: SecurityEventSink | None = None,
        audit: AuditHealthSource | None = None,
    ) -> None:
        """``events`` records every policy reload that changed or failed (audit log);
        ``audit`` (the gateway's ``AuditLog``) must be healthy for the gateway to be ready."""
        self.events = events
        self.audit = audit
        self.verifiers = tuple(verifiers)
        self.policy = policy
        self.reload_seconds = reload_seconds
        self.max_stale = max_stale_seconds
        self._clock = clock

    def _issuer(self, verifier: TokenVerifier, now: float) -> dict[str, Any]:
        status = verifier.jwks_status()
        if status is None:
            return {"ok": True, "keys": "static"}
        usable = status.usable_until is not None and now < status.usable_until
        stale_for = max(0.0, now - status.fresh_until) if status.fresh_until is not None else None
        ok = usable and stale_for is not None and stale_for <= self.max_stale
        return {"ok": ok, "keys": len(status.key_ids), "stale": status.stale}

    def check(self) -> tuple[bool, dict[str, Any]]:
        """(ready, per-check details) for ``/readyz``; details hold no secrets."""
        now = self._clock()
        checks: dict[str, Any] = {}
        if self.policy is not None:
            checks["policy"] = {"ok": True, "version": self.policy.version}
        issuers = {v.config.issuer: self._issuer(v, now) for v in self.verifiers}
        checks["issuers"] = issuers
        ready = all(item["ok"] for item in issuers.values())
        if self.audit is not None:
            health = self.audit.health()
            checks["audit"] = {"ok": health.ok, "status": health.status}
            if health.reason:
                checks["audit"]["reason"] = health.reason
            ready = ready and health.ok
        return ready, checks

    async def warm_up(self) -> None:
        """Fetch every issuer's keys once (failures are logged; /readyz reports them)."""
        for verifier in self.verifiers:
            try:
                await verifier.source.aget_keys()
            except IdentityError as exc:
                log.warning("issuer %s: no keys at startup: %s", verifier.config.issuer, exc)

    def start_background(self) -> list[asyncio.Task[None]]:
        """Start the policy reload loop (when configured); the caller cancels the tasks."""
        if self.policy is None or self.reload_seconds <= 0:
            return []
        return [asyncio.create_task(self._reload_loop(self.policy))]

    async def _reload_loop(self, policy: LivePolicy) -> None:
        while True:
            await asyncio.sleep(self.reload_seconds)
            await self.reload_once(policy)

    async def reload_once(self, policy: LivePolicy) -> ReloadResult | None:
        """Reload ``policy`` once; a new version or a failure is one security event."""
        old = policy.version
        try:
            result = await asyncio.to_thread(policy.reload)
        except Exception as exc:
            log.exception("policy reload failed; the previous policy stays in force")
            await self._reloaded(policy, old, None, (type(exc).__name__,))
            return None
        if result.problems:
            log.error("policy %s invalid; kept %s", policy.path, result.version)
            problems = tuple(str(p) for p in result.problems)
            await self._reloaded(policy, old, None, problems)
        elif result.changed:
            log.info("policy %s reloaded: version %s", policy.path, result.version)
            await self._reloaded(policy, old, result.version, ())
        return result

    async def _reloaded(
        self, policy: LivePolicy, old: str, new: str | None, problems: tuple[str, ...]
    ) -> None:
        from ..audit import EventKind, Severity, Status, UserRef, session_event  # noqa: PLC0415
        from ..audit.ocsf import UserType  # noqa: PLC0415 - see the import note above
        from ..audit.sink import publish  # noqa: PLC0415

        ok = new is not None
        event = session_event(
            EventKind.POLICY_RELOADED, resource=("policy", new or old),
            actor=UserRef(uid=GATEWAY_ACTOR, type=UserType.SYSTEM),
            message=f"policy reloaded: {old} -> {new}" if ok else f"policy reload failed: {old}",
            detail={"path": str(policy.path), "old_version": old, "new_version": new,
                    "ok": ok, "problems": "; ".join(problems)[:2000] or None},
        )  # fmt: skip
        if not ok:
            event = dataclasses.replace(
                event, status=Status.FAILURE, severity=Severity.MEDIUM,
                status_detail="policy_invalid",
            )  # fmt: skip
        await publish(self.events, event, name="policy.reloaded" if ok else "policy.reload_failed",
                      level="info" if ok else "error")  # fmt: skip
