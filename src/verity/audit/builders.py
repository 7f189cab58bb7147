"""Builders: turn what happened into an ``AuditEvent``, keeping secrets out.

Nothing a builder records can hold a credential: tokens, cookies, headers and claims are
never read; the HTTP path is the normalised one (no query string); free-form ``detail``
values under a secret-sounding key, or that look like a JWT, become ``[redacted]``.
"""

from __future__ import annotations

import re
import time as _time
from collections.abc import Mapping
from functools import cache
from types import MappingProxyType
from typing import TYPE_CHECKING

from ..ids import new_event_uid
from ..model import AccessRequest, Decision, Device, Effect, Principal, PrincipalKind
from .canonical import canonical_event
from .ocsf import OCSF_VERSION, EventClass, EventKind, Severity, Status, UserType
from .schema import (
    PRODUCT_NAME,
    VENDOR_NAME,
    AuditEvent,
    DecisionInfo,
    Endpoint,
    HttpInfo,
    JsonDoc,
    ReasonInfo,
    Scalar,
    UserRef,
    product_version,
)
from .store import EncodedEvent

if TYPE_CHECKING:
    from ..store.records import Grant

REDACTED = "[redacted]"
_DETAIL_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")
_SECRET_KEY = re.compile(
    r"token|secret|passw|authorization|cookie|credential|api_?key|private|assertion|otp"
)
_JWT_LIKE = re.compile(r"eyJ[\w-]{4,}\.[\w-]+\.?[\w-]*")
_HTTP_ACTIVITY = {"POST": 1, "GET": 2, "HEAD": 2, "OPTIONS": 2, "PUT": 3, "PATCH": 3, "DELETE": 4}
_ACTION_ACTIVITY = {"create": 1, "read": 2, "get": 2, "list": 2, "update": 3, "delete": 4}

_AUTHN, _AUTHZ, _API = (
    EventClass.AUTHENTICATION,
    EventClass.AUTHORIZE_SESSION,
    EventClass.API_ACTIVITY,
)
_OK, _FAILED = Status.SUCCESS, Status.FAILURE
_INFO, _LOW, _MEDIUM = Severity.INFORMATIONAL, Severity.LOW, Severity.MEDIUM
# kind -> (class, activity, status, severity, status_detail); see docs/audit.md
_SESSION_KINDS: dict[EventKind, tuple[EventClass, int, Status, Severity, str | None]] = {
    EventKind.LOGIN: (_AUTHN, 1, _OK, _INFO, None),
    EventKind.LOGOUT: (_AUTHN, 2, _OK, _INFO, None),
    EventKind.MFA_FAILURE: (_AUTHN, 1, _FAILED, _MEDIUM, "mfa_failed"),
    EventKind.SESSION_REVOKED: (_AUTHN, 2, _OK, _MEDIUM, "session_revoked"),
    EventKind.POLICY_RELOADED: (_API, 3, _OK, _LOW, None),
    EventKind.GRANT_CREATED: (_AUTHZ, 1, _OK, _LOW, None),
    EventKind.DEVICE_STATE_CHANGED: (_API, 3, _OK, _LOW, None),
}
SESSION_KINDS = frozenset(_SESSION_KINDS)


def _ms(seconds: float | None) -> int:
    return int((_time.time() if seconds is None else seconds) * 1000)


def redact_detail(untrusted: Mapping[str, object]) -> Mapping[str, Scalar]:
    """Check and scrub free-form detail: snake_case keys, scalar values, no secrets.

    Raises ``ValueError`` for a bad key and ``TypeError`` for a non-scalar value (floats
    included: record milliseconds or a string instead).
    """
    clean: dict[str, Scalar] = {}
    for key, value in untrusted.items():
        if not _DETAIL_KEY.fullmatch(key):
            raise ValueError(f"detail key {key!r} must match {_DETAIL_KEY.pattern}")
        if value is not None and not isinstance(value, str | int):
            raise TypeError(f"detail {key!r}: {type(value).__name__} is not str, int or bool")
        secret = _SECRET_KEY.search(key) or (isinstance(value, str) and _JWT_LIKE.search(value))
        clean[key] = REDACTED if secret and value is not None else value
    return MappingProxyType(clean)


def user_ref(principal: Principal) -> UserRef:
    """The auditable identity of a principal (id, e-mail, kind; no claims)."""
    kind = UserType.SYSTEM if principal.kind is PrincipalKind.SERVICE else UserType.USER
    if principal.kind is PrincipalKind.ANONYMOUS:
        kind = UserType.UNKNOWN
    return UserRef(uid=principal.id, name=principal.spiffe_id, email=principal.email, type=kind)


def _reasons(decision: Decision) -> tuple[ReasonInfo, ...]:
    return tuple(ReasonInfo(r.code, r.message, r.hint, r.rule) for r in decision.reasons)


def _device(request: AccessRequest) -> Mapping[str, Scalar]:
    device = request.device
    if device is None:
        return MappingProxyType({})
    posture: dict[str, Scalar] = {
        "uid": device.id,
        "managed": device.managed,
        "disk_encrypted": device.disk_encrypted,
        "screen_lock": device.screen_lock,
        "firewall": device.firewall,
        "os_type": device.os_type,
        "os_version": device.os_version,
    }
    return MappingProxyType(posture)


def decision_event(
    request: AccessRequest,
    decision: Decision,
    *,
    policy_version: str | None = None,
    uid: str | None = None,
) -> AuditEvent:
    """The audit event of one access decision (OCSF API Activity 6003).

    ``policy_version`` is the hash of the policy in force (default: the decision's own).
    Allow is status Success, deny is Failure; the activity follows the HTTP method (or the
    action name): POST Create, GET/HEAD/OPTIONS Read, PUT/PATCH Update, DELETE Delete.
    """
    http = request.http
    if http is not None:
        activity = _HTTP_ACTIVITY.get(http.method, 99)
        operation = f"{http.method} {http.path}"
        target = HttpInfo(http.host, http.method, http.path)
        resources: tuple[tuple[str, str], ...] = (("http", f"{http.host}{http.path}"),)
    else:
        activity = _ACTION_ACTIVITY.get((request.action or "").lower(), 99)
        operation, target = request.action or "access", None
        resource = request.resource
        resources = ((resource.type or "resource", resource.id),) if resource.id else ()
    allowed = decision.effect is Effect.ALLOW
    info = DecisionInfo(
        decision_id=decision.decision_id,
        effect=decision.effect.value,
        rule=decision.rule,
        policy_hash=policy_version or decision.policy_version,
        reasons=_reasons(decision),
        obligations=tuple(o.kind.value for o in decision.obligations),
        trust_score=request.trust_score,
        device=_device(request),
    )
    network = request.network
    return AuditEvent(
        kind=EventKind.DECISION,
        class_uid=EventClass.API_ACTIVITY,
        activity_id=activity,
        status=Status.SUCCESS if allowed else Status.FAILURE,
        severity=Severity.INFORMATIONAL if allowed else Severity.LOW,
        time_ms=_ms(request.time),
        uid=uid or new_event_uid(),
        message=f"{decision.effect.value} {operation}" + (f": {decision.reason}" * (not allowed)),
        actor=user_ref(request.principal),
        session_uid=request.principal.session_id,
        src_endpoint=Endpoint(str(network.ip) if network.ip else None, network.region),
        http=target,
        api_operation=operation,
        resources=resources,
        decision=info,
    )


_HEAD_KEYS = (
    "class_uid", "class_name", "category_uid", "category_name", "activity_id",
    "activity_name", "type_uid", "type_name", "status_id", "status", "severity_id",
    "severity",
)  # fmt: skip
_USER_TYPES = {kind: (int(kind), kind.name.title()) for kind in UserType}
_DECISION = EventKind.DECISION.value


@cache
def _decision_head(activity: int, allowed: bool) -> JsonDoc:
    """The fixed members of a decision event's document (class, activity, status and
    severity, by name and number), taken from ``AuditEvent.to_ocsf`` itself."""
    sample = AuditEvent(
        kind=EventKind.DECISION, class_uid=_API, activity_id=activity,
        status=_OK if allowed else _FAILED, severity=_INFO if allowed else _LOW,
        time_ms=0, uid="", message="",
    )  # fmt: skip
    doc = sample.to_ocsf()
    return {key: doc[key] for key in _HEAD_KEYS}


@cache
def _product() -> JsonDoc:
    return {"name": PRODUCT_NAME, "vendor_name": VENDOR_NAME, "version": product_version()}


def _user_doc(principal: Principal) -> JsonDoc:
    """``user_ref(principal).to_ocsf()``, without the intermediate ``UserRef``."""
    user_type = UserType.SYSTEM if principal.kind is PrincipalKind.SERVICE else UserType.USER
    if principal.kind is PrincipalKind.ANONYMOUS:
        user_type = UserType.UNKNOWN
    type_id, type_name = _USER_TYPES[user_type]
    doc: JsonDoc = {"uid": principal.id, "type_id": type_id, "type": type_name}
    if principal.spiffe_id is not None:
        doc["name"] = principal.spiffe_id
    if principal.email is not None:
        doc["email_addr"] = principal.email
    return doc


def encode_decision(
    request: AccessRequest,
    decision: Decision,
    *,
    policy_version: str | None = None,
    uid: str | None = None,
) -> EncodedEvent:
    """``EncodedEvent.of(decision_event(...))`` without the intermediate objects: the
    gateway's hot path. The document is built directly and encoded once (orjson, the
    canonical fast path); the bytes are identical to the general path's, which the tests
    check on varied decisions, so the chain format and ``verity audit verify`` do not
    change."""
    http = request.http
    if http is not None:
        activity = _HTTP_ACTIVITY.get(http.method, 99)
        operation = f"{http.method} {http.path}"
        resources = [{"type": "http", "uid": f"{http.host}{http.path}"}]
    else:
        activity = _ACTION_ACTIVITY.get((request.action or "").lower(), 99)
        operation = request.action or "access"
        resource = request.resource
        resources = (
            [{"type": resource.type or "resource", "uid": resource.id}] if resource.id else []
        )
    effect = decision.effect.value
    allowed = decision.effect is Effect.ALLOW
    principal = request.principal
    network = request.network
    time_ms = _ms(request.time)
    doc: JsonDoc = dict(_decision_head(activity, allowed))
    doc["time"] = time_ms
    doc["message"] = (
        f"{effect} {operation}" if allowed else f"{effect} {operation}: {decision.reason}"
    )
    doc["metadata"] = {
        "version": OCSF_VERSION, "uid": uid or new_event_uid(), "log_name": "verity.audit",
        "product": _product(),
    }  # fmt: skip
    endpoint: JsonDoc = {}
    if network.ip:
        endpoint["ip"] = str(network.ip)
    if network.region is not None:
        endpoint["location"] = {"country": network.region}
    doc["src_endpoint"] = endpoint
    actor: JsonDoc = {"user": _user_doc(principal)}
    if principal.session_id is not None:
        actor["session"] = {"uid": principal.session_id}
    doc["actor"] = actor
    if http is not None:
        doc["http_request"] = {
            "http_method": http.method, "url": {"hostname": http.host, "path": http.path},
        }  # fmt: skip
    doc["api"] = {"operation": operation}
    if resources:
        doc["resources"] = resources
    policy: JsonDoc = {"uid": policy_version or decision.policy_version, "is_applied": True}
    if decision.rule is not None:
        policy["name"] = decision.rule
    doc["policy"] = policy
    doc["unmapped"] = {
        "verity": {
            "kind": _DECISION,
            "decision": {
                "decision_id": decision.decision_id,
                "effect": effect,
                "rule": decision.rule,
                "policy_hash": policy["uid"],
                "reasons": [
                    {"code": r.code, "message": r.message, "hint": r.hint, "rule": r.rule}
                    for r in decision.reasons
                ],
                "obligations": [o.kind.value for o in decision.obligations],
                "trust_score": request.trust_score,
                "device": dict(_device(request)),
            },
        }
    }
    return EncodedEvent(canonical_event(doc), time_ms, 6003, _DECISION, principal.id, effect)


def authentication_event(
    user: UserRef,
    *,
    success: bool,
    logoff: bool = False,
    mfa: bool | None = None,
    src_ip: str | None = None,
    session_id: str | None = None,
    status_detail: str | None = None,
    message: str | None = None,
    time: float | None = None,
    detail: Mapping[str, object] | None = None,
) -> AuditEvent:
    """An authentication attempt or logoff (OCSF Authentication 3002).

    A failure is severity Medium, a success Informational. ``status_detail`` is a stable
    code (``bad_password``, ``token_expired``); never pass the credential itself.
    """
    outcome = "succeeded" if success else "failed"
    action = "logoff" if logoff else "logon"
    return AuditEvent(
        kind=EventKind.AUTHENTICATION,
        class_uid=EventClass.AUTHENTICATION,
        activity_id=2 if logoff else 1,
        status=Status.SUCCESS if success else Status.FAILURE,
        severity=Severity.INFORMATIONAL if success else Severity.MEDIUM,
        time_ms=_ms(time),
        uid=new_event_uid(),
        message=message or f"{action} {outcome} for {user.uid}",
        actor=user,
        user=user,
        session_uid=session_id,
        src_endpoint=Endpoint(src_ip) if src_ip else None,
        is_mfa=mfa,
        status_detail=status_detail,
        detail=redact_detail(detail or {}),
    )


def session_event(
    kind: EventKind,
    *,
    user: UserRef | None = None,
    actor: UserRef | None = None,
    session_id: str | None = None,
    src_ip: str | None = None,
    resource: tuple[str, str] | None = None,
    privileges: tuple[str, ...] = (),
    message: str | None = None,
    time: float | None = None,
    detail: Mapping[str, object] | None = None,
) -> AuditEvent:
    """A security-relevant change: login, logout, MFA failure, session revoked, policy
    reloaded, grant created, device state changed (see docs/audit.md for the mapping).

    ``user`` is whom it is about, ``actor`` who did it (default: the user); ``resource`` is
    ``(type, uid)``, e.g. ``("policy", hash)`` or ``("device", id)``.
    """
    if kind not in _SESSION_KINDS:
        raise ValueError(f"{kind.value} is not a session event kind (use {SESSION_KINDS})")
    class_uid, activity, status, severity, status_detail = _SESSION_KINDS[kind]
    who = actor or user
    about = user.uid if user else (resource[1] if resource else "verity")
    return AuditEvent(
        kind=kind,
        class_uid=class_uid,
        activity_id=activity,
        status=status,
        severity=severity,
        time_ms=_ms(time),
        uid=new_event_uid(),
        message=message or f"{kind.value.replace('_', ' ')}: {about}",
        actor=who,
        user=user,
        session_uid=session_id,
        src_endpoint=Endpoint(src_ip) if src_ip else None,
        api_operation=kind.value if class_uid is EventClass.API_ACTIVITY else None,
        resources=(resource,) if resource else (),
        privileges=privileges,
        is_mfa=True if kind is EventKind.MFA_FAILURE else None,
        status_detail=status_detail,
        detail=redact_detail(detail or {}),
    )


# grant lifecycle -> (class, activity, status, severity); see docs/audit.md and docs/jit-access.md
_GRANT_KINDS: dict[EventKind, tuple[EventClass, int, Status, Severity]] = {
    EventKind.GRANT_CREATED: (_AUTHZ, 1, _OK, _LOW),
    EventKind.GRANT_APPROVED: (_AUTHZ, 1, _OK, _MEDIUM),
    EventKind.GRANT_DENIED: (_AUTHZ, 1, _FAILED, _LOW),
    EventKind.GRANT_EXPIRED: (_AUTHZ, 99, _OK, _INFO),
}
GRANT_KINDS = frozenset(_GRANT_KINDS)
_GRANT_VERBS = {
    EventKind.GRANT_CREATED: "requested",
    EventKind.GRANT_APPROVED: "approved",
    EventKind.GRANT_DENIED: "denied",
    EventKind.GRANT_EXPIRED: "expired",
}


def grant_event(
    kind: EventKind,
    grant: Grant,
    *,
    actor: UserRef,
    time: float | None = None,
) -> AuditEvent:
    """A step of a just-in-time grant's life (OCSF Authorize Session 3003): requested
    (``grant_created``), approved, denied, or expired by the sweep.

    ``user`` is the principal the grant is for, ``actor`` who acted (the requester, the
    approver, or the system for the sweep); ``privileges`` is the grant name,
    ``resources`` the grant id, ``status_detail`` the grant's status after the step, and
    ``unmapped.verity.detail`` carries the id, name, principal, duration, reason and times.
    """
    if kind not in _GRANT_KINDS:
        raise ValueError(f"{kind.value} is not a grant event kind (use {GRANT_KINDS})")
    class_uid, activity, status, severity = _GRANT_KINDS[kind]
    seconds = int(grant.duration)
    detail: dict[str, object] = {
        "grant_id": grant.id,
        "grant_name": grant.name,
        "principal": grant.principal,
        "duration_seconds": seconds,
        "reason": grant.reason,
        "status": grant.status.value,
        "approver": grant.approver,
        "starts_ms": None if grant.starts is None else _ms(grant.starts),
        "expires_ms": None if grant.expires is None else _ms(grant.expires),
    }
    return AuditEvent(
        kind=kind,
        class_uid=class_uid,
        activity_id=activity,
        status=status,
        severity=severity,
        time_ms=_ms(time),
        uid=new_event_uid(),
        message=(
            f"grant {_GRANT_VERBS[kind]}: '{grant.name}' for {grant.principal} "
            f"({seconds}s) by {actor.uid}"
        ),
        actor=actor,
        user=UserRef(uid=grant.principal),
        resources=(("grant", grant.id),),
        privileges=(grant.name,),
        status_detail=grant.status.value,
        detail=redact_detail(detail),
    )


_POSTURE_FIELDS = (
    "managed", "disk_encrypted", "screen_lock", "firewall", "os_type", "os_version",
)  # fmt: skip


def posture_changes(before: Device | None, after: Device) -> tuple[str, ...]:
    """The posture fields that differ between two reports (every field when there was
    none before), in a fixed order."""
    if before is None:
        return _POSTURE_FIELDS
    return tuple(f for f in _POSTURE_FIELDS if getattr(before, f) != getattr(after, f))


def device_event(
    device_id: str,
    *,
    actor: UserRef,
    owner: str | None,
    change: str,
    before: Device | None = None,
    after: Device | None = None,
    time: float | None = None,
) -> AuditEvent:
    """A device registered, re-registered, or whose reported posture changed
    (``device_state_changed``, OCSF API Activity 6003 Update).

    ``change`` is ``registered``, ``updated`` or ``posture``; for ``posture`` the event's
    detail names the ``changed`` fields and carries the new value of each and, prefixed
    ``was_``, the old one (absent on a first report).
    """
    detail: dict[str, object] = {"change": change, "device_id": device_id, "owner": owner}
    if after is not None:
        changed = posture_changes(before, after)
        detail["changed"] = ",".join(changed)
        for name in changed:
            detail[name] = getattr(after, name)
            if before is not None:
                detail[f"was_{name}"] = getattr(before, name)
    about = f" ({detail['changed']})" if after is not None else ""
    return session_event(
        EventKind.DEVICE_STATE_CHANGED,
        user=UserRef(uid=owner) if owner else None,
        actor=actor,
        resource=("device", device_id),
        message=f"device {change}: {device_id}{about}",
        time=time,
        detail=detail,
    )
