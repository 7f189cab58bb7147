"""``DeviceFacts``: the posture of the device a request comes from, for ``device:`` rules.

Which device is named by a claim of the caller's *verified* token or session (default
``device_id``, e.g. set by the IdP or the MDM-aware login), never by a request header: a
client can send any header, but cannot forge a signed claim. The posture is the newest
report in the node's ``DeviceStore`` (``verity devices report``).

Fail closed, so that a posture nobody can vouch for never satisfies a rule:

- no claim, an unregistered device, or a device without a report: no device;
- a device registered to another owner than the principal: no device (a token naming a
  colleague's laptop gets nothing from its posture; the warning
  ``device.owner_mismatch`` is logged); a device without an owner is shared;
- a report older than ``max_age_seconds`` (default 24 h): no device;
- the store fails or does not answer within ``timeout_seconds``: no device
  (``devices.unavailable`` is logged).

Answers are cached per device for ``ttl_seconds`` (default 2 s; at most ``max_entries``
devices), so a new report takes effect within that time on every node.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..model import Device, Principal
from ..observability import log_security_event
from ..store.protocols import DeviceStore
from ..store.records import DeviceRecord, same_principal
from ._fact_cache import FactCache
from .facts import NO_FACTS, FactQuery, Facts

Clock = Callable[[], float]
DEFAULT_CLAIM = "device_id"
_MAX_ID = 256


class DeviceFacts:
    """A ``FactSource`` giving the policy the posture of the caller's device."""

    def __init__(
        self,
        store: DeviceStore,
        *,
        claim: str = DEFAULT_CLAIM,
        max_age_seconds: float = 86_400.0,
        ttl_seconds: float = 2.0,
        max_entries: int = 10_000,
        timeout_seconds: float = 2.0,
        clock: Clock = time.time,
    ) -> None:
        if not claim or max_age_seconds <= 0:
            raise ValueError("claim must be named and max_age_seconds > 0")
        self._store = store
        self.claim = claim
        self._max_age = max_age_seconds
        self._clock = clock
        self._cache: FactCache[DeviceRecord | None] = FactCache(
            self._get, fallback=None, on_error=_unavailable, ttl_seconds=ttl_seconds,
            max_entries=max_entries, timeout_seconds=timeout_seconds,
        )  # fmt: skip

    @property
    def queries(self) -> int:
        """How many times the store was asked (for tests and metrics)."""
        return self._cache.loads

    async def facts(self, query: FactQuery) -> Facts:
        """The device's posture, or no facts (see the module for when)."""
        principal = query.principal
        device_id = self.device_id(principal)
        if device_id is None:
            return NO_FACTS
        now = self._clock()
        record = await self._cache.get(device_id, now)
        device = self._posture(record, principal, now)
        return NO_FACTS if device is None else Facts(device=device)

    def device_id(self, principal: Principal) -> str | None:
        """The device named by the verified claim (a non-empty string), if any."""
        if not principal.authenticated:
            return None
        value = principal.claims.get(self.claim)
        if not isinstance(value, str) or not value.strip() or len(value) > _MAX_ID:
            return None
        return value

    def invalidate(self, device_id: str | None = None) -> None:
        """Forget the cached posture of ``device_id`` (of every device if ``None``)."""
        self._cache.invalidate(device_id)

    def _get(self, device_id: str, _now: float) -> DeviceRecord | None:
        return self._store.get(device_id)

    def _posture(self, record: DeviceRecord | None, who: Principal, now: float) -> Device | None:
        if record is None or record.posture is None:
            return None
        if record.owner is not None and not same_principal(record.owner, who.id):
            log_security_event(
                "device.owner_mismatch", principal_id=who.id, level="warning",
                device_id=record.id, outcome="no device (fail closed)",
            )  # fmt: skip
            return None
        if now - record.posture.reported_at > self._max_age:
            return None
        return record.posture.posture


def _unavailable(device_id: str, exc: Exception) -> None:
    log_security_event(
        "devices.unavailable",
        level="warning",
        device_id=device_id,
        error=type(exc).__name__,
        outcome="no device (fail closed)",
    )


__all__ = ["DEFAULT_CLAIM", "DeviceFacts"]
