"""Readiness and background upkeep: the policy in force and the issuers' keys.

Ready means: a policy is loaded, and every issuer that fetches keys has usable keys that
are fresh or have been stale for at most ``max_stale_seconds`` (the IdP may be briefly
unreachable; cached keys keep verifying). Startup fetches every issuer's keys once so
the first request does not pay for it; a policy file is re-read every ``reload_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..identity import IdentityError, TokenVerifier
from ..policy import LivePolicy

log = logging.getLogger("verity.gateway")
Clock = Callable[[], float]


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
    ) -> None:
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
            try:
                result = await asyncio.to_thread(policy.reload)
            except Exception:
                log.exception("policy reload failed; the previous policy stays in force")
                continue
            if result.problems:
                log.error("policy %s invalid; kept %s", policy.path, result.version)
            elif result.changed:
                log.info("policy %s reloaded: version %s", policy.path, result.version)
