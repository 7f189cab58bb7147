"""``DecisionCache``: a node's short-lived memory of policy decisions, keyed by every input.

The policy engine is a pure function of the ``AccessRequest`` (and of its own version),
so two requests with the same inputs get the same decision. The cache keeps the decision
of a recent request and answers an identical one with it, under a fresh decision id.
Only the decider's answer is cached: every request is still authenticated (a revoked,
expired or unknown credential is refused before the cache is asked), its facts are still
gathered, and it still gets its own decision id, audit event, metrics and identity
headers. Refusals before the policy (mTLS, cross-site WebSockets, session issuers),
internal errors (the enforcer's, and the engine's ``internal_error`` denies) and
rejected tokens are never cached.

The key (``key``) holds every input the policy can read, each in a hashable form
compared by value:

- the principal: id, kind, email, groups, roles, authentication methods, MFA,
  ``auth_time``, ``mfa_time``, SPIFFE id, session id, and every claim (serialised with
  ``orjson``, sorted keys, so ``true``, ``1`` and ``1.0`` stay distinct). Memoised per
  principal object, so a principal cached with its credential costs one dict read;
- the device posture (every field), trust score and grants (name and end);
- the client address and region;
- the decided method, host and canonical path, and every header the policy may read
  (``HttpTarget.headers``, in request order);
- the route name and its ``path_matching.case`` (``consistent`` asks the policy twice);
- the policy engine in force (its identity: a reload puts a new one in force).

An input that cannot be made hashable (a claim ``orjson`` cannot serialise) makes the
request uncacheable: it is decided as if there were no cache.

Lifetime: an entry is used while ``0 <= now - decided_at < ttl_seconds`` (a clock that
goes back does not stretch it), and never past the next instant at which a rule that
reads the clock can change its answer: the next whole second (time windows are HH:MM in
a zone, durations and token times whole seconds), the next instant a whole number of
seconds after the principal's ``auth_time`` or ``mfa_time`` when those have a fraction
(``max_auth_age``, ``mfa_max_age``), and the end of the first grant the principal holds.
So a time-window or age boundary is obeyed on the first request at or after it, as
without the cache; only a CEL expression that compares the time with an instant that is
not a whole second can answer up to ``ttl_seconds`` late. ``ttl_seconds`` is at most 1 s
and 0 turns the cache off. At most ``max_entries`` decisions are kept, the least
recently used going first.

Invalidation: every entry remembers the node's invalidation epoch
(``verity.invalidation``) read before the request was authenticated; a revocation
(token, ``jti``, subject, session: local or from the shared store), a policy reload, or
a grant or posture change made known to the node bumps the epoch, and every entry from
before is dropped on its next read. Revocations are refused before the cache is even
asked; the epoch makes sure no decision taken concurrently with such an event outlives
it.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from ipaddress import IPv4Address
from typing import Any

import orjson

from .. import invalidation
from ..model import AccessRequest, Decision, Principal

Epoch = Callable[[], int]
_MEMO_MAX = 4096
_DUMPS_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
MAX_TTL_SECONDS = 1.0


def _plain(value: object) -> object:
    """What ``orjson`` cannot serialise by itself in frozen claims."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, frozenset | set):
        return sorted(value)  # claims hold JSON values: mixed types raise, uncacheable
    raise TypeError(f"not a claim value: {type(value).__name__}")


def next_instant(now: float, fraction: float) -> float:
    """The first instant after ``now`` whose fractional second is ``fraction``."""
    return math.floor(now - fraction) + 1 + fraction


def principal_key(principal: Principal) -> Hashable | None:
    """Every attribute of ``principal`` the policy can read, hashable; ``None`` when a
    claim cannot be serialised (the request is then not cached)."""
    claims: bytes = b""
    if principal.claims:
        try:
            claims = orjson.dumps(principal.claims, default=_plain, option=_DUMPS_OPTIONS)
        except (TypeError, orjson.JSONEncodeError):
            return None
    return (
        principal.id, principal.kind, principal.email, principal.groups, principal.roles,
        principal.auth_methods, principal.mfa, principal.auth_time, principal.mfa_time,
        principal.spiffe_id, principal.session_id, claims,
    )  # fmt: skip


class _Entry:
    __slots__ = ("decided_at", "decision", "epoch", "until")

    def __init__(self, decision: Decision, decided_at: float, until: float, epoch: int) -> None:
        self.decision = decision
        self.decided_at = decided_at
        self.until = until
        self.epoch = epoch


class DecisionCache:
    """Decisions by the key of their inputs, for at most ``ttl_seconds`` (0: off)."""

    def __init__(
        self, *, ttl_seconds: float, max_entries: int, epoch: Epoch = invalidation.current
    ) -> None:
        if not 0 <= ttl_seconds <= MAX_TTL_SECONDS or max_entries < 1:
            raise ValueError(f"0 <= ttl_seconds <= {MAX_TTL_SECONDS} and max_entries >= 1")
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self.epoch = epoch
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._principals: dict[int, tuple[Principal, Hashable | None]] = {}
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    def __len__(self) -> int:
        return len(self._entries)

    def _principal_key(self, principal: Principal) -> Hashable | None:
        memo = self._principals.get(id(principal))
        if memo is not None and memo[0] is principal:  # the same object: same values
            return memo[1]
        key = principal_key(principal)
        if len(self._principals) >= _MEMO_MAX:
            self._principals.clear()
        self._principals[id(principal)] = (principal, key)  # holds it: its id stays unique
        return key

    def key(self, request: AccessRequest, *, case: str, policy: object) -> Hashable | None:
        """The key of ``request``'s inputs on a route whose ``path_matching.case`` is
        ``case``, decided by ``policy``; ``None``: not cacheable."""
        http = request.http
        if http is None or request.resource.type is not None or request.action is not None:
            return None  # the gateway always has a target and never a resource
        who = self._principal_key(request.principal)
        if who is None:
            return None
        grants: Any = tuple(request.grants.items()) if request.grants else ()
        ip: Any = request.network.ip
        if type(ip) is IPv4Address:  # its int: hashed and compared in C, not in Python
            ip = int(ip)
        return (
            who, request.device, request.trust_score, grants, ip, request.network.region,
            http.method, http.host, http.path, tuple(http.headers.items()),
            tuple(request.context.items()), case, policy,
        )  # fmt: skip

    def get(self, key: Hashable, now: float) -> Decision | None:
        """The decision cached for ``key`` if it is still valid at ``now``. Raises
        ``TypeError`` when a part of ``key`` is not hashable (do not cache then)."""
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        if (
            entry.epoch != self.epoch()
            or not 0 <= now - entry.decided_at < self.ttl
            or now >= entry.until
        ):
            del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry.decision

    def put(self, key: Hashable, decision: Decision, request: AccessRequest, *, epoch: int) -> None:
        """Remember ``decision`` of ``request`` (decided at ``request.time``), filled at
        ``epoch`` (read before the request was authenticated)."""
        if epoch != self.epoch():
            return  # something changed while deciding: do not remember it
        now = request.time
        until = min(now + self.ttl, next_instant(now, 0.0))
        principal = request.principal
        for stamp in (principal.auth_time, principal.mfa_time):
            if stamp is not None and stamp % 1:  # an age limit ends a fraction into a second
                until = min(until, next_instant(now, stamp % 1))
        if request.grants:
            until = min(until, *request.grants.values())  # a grant ends: decide again
        self._entries[key] = _Entry(decision, now, until, epoch)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every decision."""
        self._entries.clear()
        self._principals.clear()


__all__ = ["MAX_TTL_SECONDS", "DecisionCache", "principal_key"]
