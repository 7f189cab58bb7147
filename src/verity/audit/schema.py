"""The audit event schema: typed, frozen values and their OCSF 1.3 form.

An ``AuditEvent`` is what Verity records; ``to_ocsf()`` is the document that is hashed,
stored and exported. Verity-specific data that OCSF has no attribute for (the decision
id, the reasons, the obligations, the event kind) goes under ``unmapped.verity``. Every
value is a string, an integer, a boolean or null (``time`` is UNIX milliseconds), and
every key is ASCII, so the canonical encoding can take its fast path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from types import MappingProxyType
from typing import Any, NamedTuple

from .canonical import canonical_event
from .ocsf import (
    ACTIVITY_NAMES,
    CLASS_INFO,
    OCSF_VERSION,
    EventClass,
    EventKind,
    Severity,
    Status,
    UserType,
)

PRODUCT_NAME = "Verity"
VENDOR_NAME = "Verity"

Scalar = str | int | bool | None
JsonDoc = dict[str, Any]
_NO_DETAIL: Mapping[str, Scalar] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class UserRef:
    """A person or workload, as OCSF ``user`` (never its token or claims)."""

    uid: str
    name: str | None = None
    email: str | None = None
    type: UserType = UserType.USER

    def to_ocsf(self) -> JsonDoc:
        doc: JsonDoc = {"uid": self.uid, "type_id": int(self.type), "type": self.type.name.title()}
        if self.name is not None:
            doc["name"] = self.name
        if self.email is not None:
            doc["email_addr"] = self.email
        return doc


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a request came from: resolved client IP and ISO 3166-1 region."""

    ip: str | None = None
    country: str | None = None

    def to_ocsf(self) -> JsonDoc:
        doc: JsonDoc = {}
        if self.ip is not None:
            doc["ip"] = self.ip
        if self.country is not None:
            doc["location"] = {"country": self.country}
        return doc


@dataclass(frozen=True, slots=True)
class HttpInfo:
    """The HTTP target of a decision: host, method, normalised path (no query, no headers)."""

    host: str
    method: str
    path: str

    def to_ocsf(self) -> JsonDoc:
        return {"http_method": self.method, "url": {"hostname": self.host, "path": self.path}}


@dataclass(frozen=True, slots=True)
class ReasonInfo:
    """One reason of a decision: stable code, message for people, hint."""

    code: str
    message: str
    hint: str | None = None
    rule: str | None = None

    def to_doc(self) -> JsonDoc:
        return {"code": self.code, "message": self.message, "hint": self.hint, "rule": self.rule}


@dataclass(frozen=True, slots=True)
class DecisionInfo:
    """The decision part of a decision event."""

    decision_id: str
    effect: str
    rule: str | None
    policy_hash: str
    reasons: tuple[ReasonInfo, ...] = ()
    obligations: tuple[str, ...] = ()
    trust_score: int | None = None
    device: Mapping[str, Scalar] = field(default_factory=lambda: _NO_DETAIL)

    def to_doc(self) -> JsonDoc:
        return {
            "decision_id": self.decision_id,
            "effect": self.effect,
            "rule": self.rule,
            "policy_hash": self.policy_hash,
            "reasons": [r.to_doc() for r in self.reasons],
            "obligations": list(self.obligations),
            "trust_score": self.trust_score,
            "device": dict(self.device),
        }


class IndexFields(NamedTuple):
    """What the stores keep in columns beside the document, for queries."""

    time_ms: int
    class_uid: int
    kind: str
    user: str | None
    outcome: str


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit event. Build it with the builders (``decision_event``, ...)."""

    kind: EventKind
    class_uid: EventClass
    activity_id: int
    status: Status
    severity: Severity
    time_ms: int
    uid: str
    message: str
    actor: UserRef | None = None
    user: UserRef | None = None
    session_uid: str | None = None
    src_endpoint: Endpoint | None = None
    http: HttpInfo | None = None
    api_operation: str | None = None
    resources: tuple[tuple[str, str], ...] = ()
    privileges: tuple[str, ...] = ()
    is_mfa: bool | None = None
    status_detail: str | None = None
    decision: DecisionInfo | None = None
    detail: Mapping[str, Scalar] = field(default_factory=lambda: _NO_DETAIL)

    @property
    def type_uid(self) -> int:
        """OCSF ``type_uid``: ``class_uid * 100 + activity_id``."""
        return int(self.class_uid) * 100 + self.activity_id

    @property
    def outcome(self) -> str:
        """``allow``/``deny`` for decisions, else ``success``/``failure``/``unknown``/``other``."""
        if self.decision is not None:
            return self.decision.effect
        return self.status.name.lower()

    def index_fields(self) -> IndexFields:
        """The queryable columns (derived from the document, never trusted over it)."""
        who = self.user or self.actor
        uid = who.uid if who is not None else None
        return IndexFields(self.time_ms, int(self.class_uid), self.kind.value, uid, self.outcome)

    def to_ocsf(self) -> JsonDoc:
        """The OCSF document (what is hashed, stored and exported)."""
        class_name, category_uid, category_name = CLASS_INFO[self.class_uid]
        activity = ACTIVITY_NAMES[self.class_uid].get(self.activity_id, "Other")
        doc: JsonDoc = {
            "class_uid": int(self.class_uid),
            "class_name": class_name,
            "category_uid": category_uid,
            "category_name": category_name,
            "activity_id": self.activity_id,
            "activity_name": activity,
            "type_uid": self.type_uid,
            "type_name": f"{class_name}: {activity}",
            "status_id": int(self.status),
            "status": self.status.name.title(),
            "severity_id": int(self.severity),
            "severity": self.severity.name.title(),
            "time": self.time_ms,
            "message": self.message,
            "metadata": _metadata(self.uid),
            "src_endpoint": (self.src_endpoint or Endpoint()).to_ocsf(),
        }
        self._add_optional(doc)
        verity: JsonDoc = {"kind": self.kind.value}
        if self.decision is not None:
            verity["decision"] = self.decision.to_doc()
        if self.detail:
            verity["detail"] = dict(self.detail)
        doc["unmapped"] = {"verity": verity}
        return doc

    def _add_optional(self, doc: JsonDoc) -> None:
        actor: JsonDoc = {}
        if self.actor is not None:
            actor["user"] = self.actor.to_ocsf()
        if self.session_uid is not None:
            actor["session"] = {"uid": self.session_uid}
            if self.class_uid is not EventClass.API_ACTIVITY:
                doc["session"] = {"uid": self.session_uid}
        if actor:
            doc["actor"] = actor
        if self.user is not None:
            doc["user"] = self.user.to_ocsf()
        if self.status_detail is not None:
            doc["status_detail"] = self.status_detail
        if self.is_mfa is not None:
            doc["is_mfa"] = self.is_mfa
        if self.http is not None:
            doc["http_request"] = self.http.to_ocsf()
        if self.api_operation is not None:
            doc["api"] = {"operation": self.api_operation}
        if self.resources:
            doc["resources"] = [{"type": t, "uid": u} for t, u in self.resources]
        if self.privileges:
            doc["privileges"] = list(self.privileges)
        if self.decision is not None:
            doc["policy"] = {"uid": self.decision.policy_hash, "is_applied": True}
            if self.decision.rule is not None:
                doc["policy"]["name"] = self.decision.rule

    def encode(self) -> bytes:
        """The canonical bytes of ``to_ocsf()`` (RFC 8785)."""
        return canonical_event(self.to_ocsf())


@cache
def product_version() -> str:
    """The installed Verity version (``metadata.product.version``)."""
    try:
        return metadata.version("verity")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _metadata(uid: str) -> JsonDoc:
    product = {"name": PRODUCT_NAME, "vendor_name": VENDOR_NAME, "version": product_version()}
    return {"version": OCSF_VERSION, "uid": uid, "log_name": "verity.audit", "product": product}
