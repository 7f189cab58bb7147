"""``SvidSource``: holds a workload's current X.509-SVID and renews it before expiry.

A new SVID is issued once half of the current one's lifetime (from issuance to expiry)
has passed, so a workload never presents an expired certificate even if one renewal
fails. Listeners (e.g. ``tls.load_svid`` on a live ``SSLContext``) are told of each new
SVID. The clock is injectable for tests.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import Protocol

from .ca import utcnow
from .spiffe import SpiffeId
from .svid import X509Svid

log = logging.getLogger("verity.identity.workload")
Clock = Callable[[], dt.datetime]
Listener = Callable[[X509Svid], None]


class SvidIssuer(Protocol):
    """Anything that issues X.509-SVIDs (the built-in ``CertificateAuthority``)."""

    def issue_x509_svid(
        self, spiffe_id: SpiffeId | str, *, ttl: dt.timedelta | None = None,
        now: dt.datetime | None = None,
    ) -> X509Svid: ...  # fmt: skip


class SvidSource:
    """The current SVID of one workload, re-issued after ``rotate_fraction`` of its life."""

    def __init__(
        self,
        issuer: SvidIssuer,
        spiffe_id: SpiffeId | str,
        *,
        ttl: dt.timedelta | None = None,
        clock: Clock = utcnow,
        rotate_fraction: float = 0.5,
    ) -> None:
        if not 0 < rotate_fraction < 1:
            raise ValueError("rotate_fraction must be between 0 and 1")
        self._issuer, self._ttl, self._clock = issuer, ttl, clock
        self._spiffe_id = SpiffeId.parse(spiffe_id) if isinstance(spiffe_id, str) else spiffe_id
        self._fraction = rotate_fraction
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._svid = self._issue()

    def _issue(self) -> X509Svid:
        return self._issuer.issue_x509_svid(self._spiffe_id, ttl=self._ttl, now=self._clock())

    @property
    def svid(self) -> X509Svid:
        """The SVID held now (without checking whether it is due for renewal)."""
        return self._svid

    @property
    def next_rotation(self) -> dt.datetime:
        """When the held SVID will be replaced."""
        svid = self._svid
        return svid.issued_at + (svid.not_after - svid.issued_at) * self._fraction

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(svid)`` after every rotation; returns a function that unsubscribes."""
        with self._lock:
            self._listeners.append(listener)
        return lambda: self._unsubscribe(listener)

    def _unsubscribe(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def current(self) -> X509Svid:
        """The SVID to present now, renewed first if it is due."""
        self.maybe_rotate()
        return self._svid

    def maybe_rotate(self) -> bool:
        """Renew the SVID if its rotation time has come; True when it was renewed."""
        with self._lock:
            if self._clock() < self.next_rotation:
                return False
            self._svid = self._issue()
            svid, listeners = self._svid, list(self._listeners)
        log.info("X.509-SVID for %s renewed; expires %s", svid.spiffe_id, svid.not_after)
        for listener in listeners:
            try:
                listener(svid)
            except Exception:  # one broken listener must not stop the others
                log.exception("an SVID rotation listener failed")
        return True

    def run(self, stop: threading.Event, *, poll_seconds: float = 30.0) -> None:
        """Renew in a loop until ``stop`` is set (run it in a thread)."""
        while not stop.is_set():
            try:
                self.maybe_rotate()
            except Exception:  # keep the old SVID; try again at the next poll
                log.exception("X.509-SVID renewal failed")
            remaining = (self.next_rotation - self._clock()).total_seconds()
            stop.wait(max(0.05, min(poll_seconds, remaining)))
