"""Access requests from documents (YAML/JSON files, mappings): for the CLI, policy tests
and replay. Validated with pydantic; every problem names its key path."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import yamlio
from .errors import Problem, RequestError
from .model import (
    AccessRequest,
    Device,
    HttpTarget,
    NetworkContext,
    Principal,
    PrincipalKind,
    Resource,
    parse_ip,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _epoch(value: Any) -> float:
    """UNIX seconds from a number or an ISO 8601 string with a time zone."""
    if isinstance(value, bool):
        raise ValueError("expected a time")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        if moment.tzinfo is None:
            raise ValueError("a time needs a zone offset, e.g. 2026-11-23T10:00:00+01:00 or ...Z")
        return moment.timestamp()
    raise ValueError("expected UNIX seconds or an ISO 8601 time")


class PrincipalDoc(_Strict):
    id: str = Field(min_length=1)
    kind: Literal["user", "service", "anonymous"] = "user"
    email: str | None = None
    groups: list[str] = []
    roles: list[str] = []
    claims: dict[str, Any] = {}
    auth_methods: list[str] = []
    mfa: bool = False
    auth_time: float | None = None
    mfa_time: float | None = None
    spiffe_id: str | None = None
    session_id: str | None = None

    @field_validator("auth_time", "mfa_time", mode="before")
    @classmethod
    def _times(cls, value: Any) -> float | None:
        return None if value is None else _epoch(value)


class DeviceDoc(_Strict):
    id: str = "device"
    managed: bool = False
    disk_encrypted: bool = False
    screen_lock: bool = False
    firewall: bool = False
    os_type: str = "unknown"
    os_version: str = ""


class NetworkDoc(_Strict):
    ip: str | None = None
    region: str | None = None

    @field_validator("ip")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        if value is not None:
            parse_ip(value)
        return value


class HttpDoc(_Strict):
    host: str = Field(min_length=1)
    method: str = "GET"
    path: str = "/"
    headers: dict[str, str] = {}


class ResourceDoc(_Strict):
    type: str | None = None
    id: str | None = None
    attributes: dict[str, Any] = {}


class RequestDoc(_Strict):
    principal: PrincipalDoc | None = None
    time: float
    action: str | None = None
    resource: ResourceDoc = ResourceDoc()
    http: HttpDoc | None = None
    device: DeviceDoc | None = None
    network: NetworkDoc = NetworkDoc()
    trust_score: int | None = Field(default=None, ge=0, le=100)
    grants: dict[str, float] = {}
    context: dict[str, Any] = {}

    @field_validator("time", mode="before")
    @classmethod
    def _time(cls, value: Any) -> float:
        return _epoch(value)

    @field_validator("grants", mode="before")
    @classmethod
    def _grants(cls, value: Any) -> dict[str, float]:
        if not isinstance(value, dict):
            raise ValueError("expected a mapping of grant name to expiry time")
        return {str(k): _epoch(v) for k, v in value.items()}

    def to_request(self) -> AccessRequest:
        p = self.principal
        principal = (
            Principal.anonymous()
            if p is None
            else Principal(
                id=p.id,
                kind=PrincipalKind(p.kind),
                email=p.email,
                groups=frozenset(p.groups),
                roles=frozenset(p.roles),
                claims=p.claims,
                auth_methods=frozenset(p.auth_methods),
                mfa=p.mfa,
                auth_time=p.auth_time,
                mfa_time=p.mfa_time,
                spiffe_id=p.spiffe_id,
                session_id=p.session_id,
            )
        )
        return AccessRequest(
            principal=principal,
            time=self.time,
            action=self.action,
            resource=Resource(self.resource.type, self.resource.id, self.resource.attributes),
            http=None if self.http is None else HttpTarget(**self.http.model_dump()),
            device=None if self.device is None else Device(**self.device.model_dump()),
            network=NetworkContext(
                None if self.network.ip is None else parse_ip(self.network.ip), self.network.region
            ),
            trust_score=self.trust_score,
            grants=self.grants,
            context=self.context,
        )


def problems_of(error: ValidationError, prefix: str = "") -> list[Problem]:
    """pydantic errors -> Problems with dotted key paths (``principal.mfa``)."""
    out = []
    for item in error.errors():
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in item["loc"]).lstrip(".")
        where = f"{prefix}.{path}" if prefix and path else prefix or path
        out.append(Problem(where, item["msg"]))
    return out


def request_from_mapping(
    data: Any, *, source: str = "<request>", prefix: str = ""
) -> AccessRequest:
    """Validate a request document; raises ``RequestError`` naming every problem."""
    if not isinstance(data, dict):
        raise RequestError(source, [Problem(prefix, "a request is a mapping")])
    try:
        return RequestDoc.model_validate(data).to_request()
    except ValidationError as exc:
        raise RequestError(source, problems_of(exc, prefix)) from None


def load_request_file(path: str | Path) -> AccessRequest:
    """Read and validate a request document (YAML or JSON); raises ``RequestError``."""
    source = str(path)
    try:
        data = yamlio.load_file(path)
    except yamlio.YamlProblem as exc:
        raise RequestError(source, [exc.problem]) from None
    return request_from_mapping(data, source=source)
