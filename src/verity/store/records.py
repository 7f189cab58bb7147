"""The values the stores keep: frozen records, the same for every backend.

Times are UNIX seconds (UTC) as ``float``, like ``verity.model``. Free-form data
(session data, device attributes, signal details) is a JSON object; every backend
stores and returns it unchanged.
"""

from __future__ import annotations

import enum
import hashlib
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..model import Device

JsonObject = Mapping[str, Any]
_EMPTY: JsonObject = MappingProxyType({})


def new_id() -> str:
    """A random identifier (128 bits, hex) for records that need one."""
    return secrets.token_hex(16)


def token_hash(untrusted_token: str) -> str:
    """The SHA-256 (hex) under which a token is cached or revoked; tokens are never stored."""
    return hashlib.sha256(untrusted_token.encode()).hexdigest()


def frozen(data: JsonObject | None) -> JsonObject:
    """A read-only copy of a JSON object (``{}`` for ``None``)."""
    return MappingProxyType(dict(data or {}))


def dump_json(data: JsonObject | None) -> str:
    """Canonical JSON text of a JSON object (sorted keys, no spaces)."""
    return json.dumps(dict(data or {}), sort_keys=True, separators=(",", ":"))


def load_json(text: str | bytes | None) -> JsonObject:
    """Parse a JSON object written by :func:`dump_json` (``{}`` for ``None``)."""
    if text is None:
        return _EMPTY
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object")
    return MappingProxyType(value)


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A server-side session. ``id`` is an opaque handle (store a hash of a cookie secret).

    ``version`` starts at 1 and grows by one with every write, so a caller can tell
    whether a concurrent writer got there first. ``data`` (which may hold an upstream
    provider's tokens or a PKCE verifier) is left out of ``repr``.
    """

    id: str
    user_id: str
    created: float
    last_seen: float
    expires: float
    mfa: bool = False
    auth_time: float | None = None
    device_id: str | None = None
    trust_score: int | None = None
    data: JsonObject = field(default_factory=lambda: _EMPTY, repr=False)
    version: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", frozen(self.data))


class RevocationKind(enum.Enum):
    """What a revocation names."""

    SESSION = "session"
    SUBJECT = "subject"
    TOKEN = "token"  # noqa: S105 - a kind name: the value revoked is a SHA-256 (token_hash())
    JTI = "jti"


@dataclass(frozen=True, slots=True)
class Revocation:
    """``kind``/``value`` is revoked from ``revoked_at`` until ``expires``.

    For ``SUBJECT``, tokens and sessions of the subject issued at or before
    ``revoked_at`` are revoked; later ones are not. ``id`` identifies this revocation
    event, so a subscriber reached by two channels can drop the duplicate.
    """

    kind: RevocationKind
    value: str
    revoked_at: float
    expires: float
    reason: str = ""
    id: str = field(default_factory=new_id)

    def to_json(self) -> str:
        """The notification payload sent over Redis pub/sub and PostgreSQL NOTIFY."""
        body = {
            "id": self.id,
            "kind": self.kind.value,
            "value": self.value,
            "revoked_at": self.revoked_at,
            "expires": self.expires,
            "reason": self.reason,
        }
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_json(cls, untrusted: str | bytes) -> Revocation:
        """Parse a notification payload; raises ``ValueError`` (or ``KeyError``) if malformed."""
        body = json.loads(untrusted)
        if not isinstance(body, dict):
            raise ValueError("revocation payload is not an object")
        return cls(
            kind=RevocationKind(body["kind"]),
            value=str(body["value"]),
            revoked_at=float(body["revoked_at"]),
            expires=float(body["expires"]),
            reason=str(body.get("reason", "")),
            id=str(body["id"]),
        )


@dataclass(frozen=True, slots=True)
class PostureReport:
    """The posture of a device as reported at ``reported_at`` (``facts`` keeps the rest)."""

    device_id: str
    reported_at: float
    posture: Device
    facts: JsonObject = field(default_factory=lambda: _EMPTY)

    def __post_init__(self) -> None:
        object.__setattr__(self, "facts", frozen(self.facts))

    def to_json(self) -> str:
        """JSON text of the posture and facts (the device id and time are columns)."""
        p = self.posture
        body = {
            "managed": p.managed,
            "disk_encrypted": p.disk_encrypted,
            "screen_lock": p.screen_lock,
            "firewall": p.firewall,
            "os_type": p.os_type,
            "os_version": p.os_version,
            "facts": dict(self.facts),
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, device_id: str, reported_at: float, text: str | bytes) -> PostureReport:
        """Rebuild a report stored by :meth:`to_json`."""
        body = dict(load_json(text))
        facts = body.pop("facts", {})
        return cls(device_id, reported_at, Device(id=device_id, **body), facts)


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A registered device, its owner, and the newest posture report received."""

    id: str
    owner: str | None
    created: float
    updated: float
    attributes: JsonObject = field(default_factory=lambda: _EMPTY)
    posture: PostureReport | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "attributes", frozen(self.attributes))


@dataclass(frozen=True, slots=True)
class RiskSignal:
    """One risk observation about a subject (a session or user id)."""

    subject: str
    kind: str
    at: float
    severity: int = 0
    detail: JsonObject = field(default_factory=lambda: _EMPTY)
    id: str = field(default_factory=new_id)

    def __post_init__(self) -> None:
        object.__setattr__(self, "detail", frozen(self.detail))


@dataclass(frozen=True, slots=True)
class ScoreFactor:
    """One contribution to a trust score: a stable code, the points it moved, and why."""

    code: str
    delta: int
    detail: str = ""


@dataclass(frozen=True, slots=True)
class TrustScore:
    """A subject's trust score (0-100) with the factors that produced it."""

    subject: str
    score: int
    factors: tuple[ScoreFactor, ...]
    updated: float
    version: int = 1


def dump_factors(factors: tuple[ScoreFactor, ...]) -> str:
    """JSON text of score factors."""
    return json.dumps([[f.code, f.delta, f.detail] for f in factors], separators=(",", ":"))


def load_factors(text: str | bytes | list[Any]) -> tuple[ScoreFactor, ...]:
    """Parse :func:`dump_factors` output (or the list a JSON column already decoded)."""
    items = json.loads(text) if isinstance(text, str | bytes) else text
    return tuple(ScoreFactor(str(c), int(d), str(t)) for c, d, t in items)


class GrantStatus(enum.Enum):
    """Where a just-in-time grant request stands."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Grant:
    """A just-in-time grant: ``principal`` asks for ``name`` for ``duration`` seconds.

    Once approved it is active from ``starts`` (the approval time) until ``expires``.
    """

    id: str
    principal: str
    name: str
    reason: str
    duration: float
    requested_at: float
    status: GrantStatus = GrantStatus.PENDING
    approver: str | None = None
    decided_at: float | None = None
    starts: float | None = None
    expires: float | None = None

    def active_at(self, t: float) -> bool:
        """Whether the grant is in force at time ``t``."""
        if self.status not in (GrantStatus.APPROVED, GrantStatus.EXPIRED):
            return False
        if self.starts is None or self.expires is None:
            return False
        return self.starts <= t < self.expires


def same_principal(a: str, b: str) -> bool:
    """Whether two principal ids name the same person (case and surrounding space ignored)."""
    return a.strip().casefold() == b.strip().casefold()


@dataclass(frozen=True, slots=True)
class KeyVersion:
    """One version of a named key. ``material`` is secret: it is left out of ``repr``."""

    name: str
    version: int
    algorithm: str
    created: float
    material: bytes = field(repr=False)


# Row readers shared by the SQL backends (columns in the order of their SELECTs).


def grant_from_row(row: Sequence[Any]) -> Grant:
    """A ``Grant`` from ``id, principal, name, reason, duration, requested_at, status,
    approver, decided_at, starts, expires``."""
    return Grant(
        id=row[0], principal=row[1], name=row[2], reason=row[3], duration=row[4],
        requested_at=row[5], status=GrantStatus(row[6]), approver=row[7], decided_at=row[8],
        starts=row[9], expires=row[10],
    )  # fmt: skip


def key_from_row(row: Sequence[Any]) -> KeyVersion:
    """A ``KeyVersion`` from ``name, version, algorithm, created, material`` columns."""
    return KeyVersion(row[0], row[1], row[2], row[3], bytes(row[4]))


def revocation_from_row(row: Sequence[Any]) -> Revocation:
    """A ``Revocation`` from ``kind, value, revoked_at, expires, reason, id`` columns."""
    return Revocation(RevocationKind(row[0]), row[1], row[2], row[3], row[4], row[5])
