"""``AssertionReuse``: one signed identity assertion per (principal, route, device and
trust facts), reused for up to 30 s, and an HMAC'd companion per request.

Opt-in per route: a route with ``assertion_companion_key_file`` (a secret shared with
its upstream, at least 32 bytes) gets, on every allowed request of an authenticated
principal:

- ``X-Verity-Assertion``: an ES256 assertion without ``req`` or ``decision_id`` and with
  ``cmp: 1`` (``AssertionSigner.reusable_claims``), cached by everything it says
  (audience, subject, email, groups, device id, trust score). It lives at most
  ``LIFETIME`` seconds (and never longer than ``gateway.assertion.ttl_seconds``) and is
  signed again once less than ``MARGIN`` seconds are left, so an upstream never
  receives one that expires within ``MARGIN``;
- ``X-Verity-Request``: the companion (``verity.assertion_companion``) naming that
  assertion's ``jti``, this request's binding (method and canonical path), its decision
  id, the time and a value unique to the request. The upstream verifier
  (``verity.integrations.assertion``) accepts a ``cmp`` assertion only with a companion
  that verifies, binds the request it serves, is fresh and unused.

A reused assertion is dropped when the node's invalidation epoch (``verity.invalidation``)
moves: any revocation, policy reload, grant or posture change signs anew. Routes without
a key get a freshly signed, request-bound assertion per request, as before.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping

from .. import assertion_companion, invalidation
from ..model import Principal
from ..request_binding import request_binding
from .assertion import AssertionSigner, ReusableFacts

Clock = Callable[[], float]
LIFETIME = 30
"""Seconds a reused assertion lives at most."""
MARGIN = 10
"""A reused assertion is signed again once fewer seconds than this are left."""
DEFAULT_MAX_ENTRIES = 10_000


class _Signed:
    __slots__ = ("epoch", "expires", "issued", "jti", "token")

    def __init__(self, token: str, jti: str, issued: int, expires: int, epoch: int) -> None:
        self.token = token
        self.jti = jti
        self.issued = issued
        self.expires = expires
        self.epoch = epoch


class AssertionReuse:
    """Reused assertions and their per-request companions, for the routes with a key."""

    def __init__(
        self,
        signer: AssertionSigner,
        keys: Mapping[str, bytes],
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Clock = time.time,
        epoch: Callable[[], int] = invalidation.current,
    ) -> None:
        """``keys``: route name -> companion key (checked: at least 32 bytes)."""
        if max_entries < 1:
            raise ValueError("max_entries >= 1")
        self.signer = signer
        self._keys = {name: assertion_companion.check_key(key) for name, key in keys.items()}
        self._max = max_entries
        self._clock = clock
        self._epoch = epoch
        self._signed: OrderedDict[Hashable, _Signed] = OrderedDict()
        self.signatures = 0
        """How many assertions were signed (for tests and metrics)."""

    def __len__(self) -> int:
        return len(self._signed)

    def covers(self, route: str) -> bool:
        """Whether ``route`` has a companion key (its assertions are reused)."""
        return route in self._keys

    def headers(
        self,
        route: str,
        principal: Principal,
        facts: ReusableFacts,
        *,
        decision_id: str,
        method: str,
        path: str,
        epoch: int,
    ) -> tuple[str, str]:
        """(assertion, companion) for one allowed request on ``route`` (which must be
        ``covers``-ed): ``method`` and ``path`` are what the upstream receives; ``epoch``
        the invalidation epoch read before the request was authenticated."""
        key = self._keys[route]
        now = self._clock()
        cache_key = (route, facts, principal.id, principal.email, principal.groups)
        signed = self._signed.get(cache_key)
        if (
            signed is None
            or signed.epoch != self._epoch()
            or not signed.issued <= now < signed.expires - MARGIN
        ):
            signed = self._sign(cache_key, principal, facts, epoch)
        else:
            self._signed.move_to_end(cache_key)
        companion = assertion_companion.make(
            key, jti=signed.jti, req=request_binding(method, path), did=decision_id,
            iat=int(now),
        )  # fmt: skip
        return signed.token, companion

    def _sign(
        self, cache_key: Hashable, principal: Principal, facts: ReusableFacts, epoch: int
    ) -> _Signed:
        claims = self.signer.reusable_claims(principal, facts, lifetime=LIFETIME)
        token = self.signer.sign_claims(claims)
        self.signatures += 1
        signed = _Signed(token, claims["jti"], claims["iat"], claims["exp"], epoch)
        if claims["exp"] - claims["iat"] > MARGIN:  # a ttl too short to reuse: not kept
            self._signed[cache_key] = signed
            self._signed.move_to_end(cache_key)
            while len(self._signed) > self._max:
                self._signed.popitem(last=False)
        return signed


__all__ = ["LIFETIME", "MARGIN", "AssertionReuse"]
