"""``AccessRequest.from_dict``: a request as JSON gives it, validated and built fast.

It accepts exactly the documents that ``verity.request_io.request_from_mapping`` (the
pydantic model behind request files) accepts, and builds an equal ``AccessRequest``: the
same keys (unknown keys are refused), strict types (``true`` is not ``1``, ``"1"`` is not
a number), times as UNIX seconds or ISO 8601 with a zone, ``trust_score`` 0..100. Every
problem is collected with its key path and raised together as one ``RequestError``.

It is the fast way in for an application or a PEP that holds a JSON request: values are
checked with plain ``type`` tests, normalised once (region, OS type, IP address parse is
cached) and stored with the ``trusted`` constructors, so no value is copied or
normalised twice. Mutable input (lists, dicts) is always copied into frozen values: the
caller's dict may change afterwards without changing the request.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from types import MappingProxyType
from typing import Any

from .errors import Problem, RequestError
from .model import (
    _EMPTY,
    AccessRequest,
    Device,
    HttpTarget,
    NetworkContext,
    Principal,
    PrincipalKind,
    Resource,
    _freeze,
    parse_ip,
)

_REQUEST_KEYS = frozenset(
    [
        "principal",
        "time",
        "action",
        "resource",
        "http",
        "device",
        "network",
        "trust_score",
        "grants",
        "context",
    ]
)
_PRINCIPAL_KEYS = frozenset(
    [
        "id",
        "kind",
        "email",
        "groups",
        "roles",
        "claims",
        "auth_methods",
        "mfa",
        "auth_time",
        "mfa_time",
        "spiffe_id",
        "session_id",
    ]
)
_DEVICE_FLAGS = frozenset(("managed", "disk_encrypted", "screen_lock", "firewall"))
_DEVICE_TEXTS = frozenset(("id", "os_type", "os_version"))
_DEVICE_KEYS = _DEVICE_FLAGS | _DEVICE_TEXTS
_NETWORK_KEYS = frozenset(("ip", "region"))
_RESOURCE_KEYS = frozenset(("type", "id", "attributes"))
_HTTP_KEYS = frozenset(("host", "method", "path", "headers"))
_KINDS = {k.value: k for k in PrincipalKind}
_ANONYMOUS = Principal.anonymous()
_NO_NETWORK = NetworkContext()
_NO_RESOURCE = Resource()
_intern = sys.intern
_NO_STRINGS: frozenset[str] = frozenset()


class _Problems:
    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(Problem(path, message))


def request_from_dict(data: Any, *, source: str = "<request>") -> AccessRequest:
    """Validate and build a request; raises ``RequestError`` naming every problem."""
    if type(data) is not dict:
        raise RequestError(source, [Problem("", "a request is a mapping")])
    out = _Problems()
    when: Any = None
    principal = _ANONYMOUS
    action = http = device = trust = None
    resource = _NO_RESOURCE
    network = _NO_NETWORK
    grants: Any = _EMPTY
    context: Any = _EMPTY
    for key, value in data.items():  # only the keys given
        if key == "principal":
            if value is not None:
                principal = _principal(value, out)
        elif key == "time":
            when = _epoch(value, "time", out)
        elif key == "action":
            action = _opt_str(value, "action", out)
        elif key == "resource":
            resource = _resource(value, out)
        elif key == "device":
            if value is not None:
                device = _device(value, out)
        elif key == "network":
            network = _network(value, out)
        elif key == "http":
            if value is not None:
                http = _http(value, out)
        elif key == "trust_score":
            trust = value
            if value is not None and (type(value) is not int or not 0 <= value <= 100):
                out.add("trust_score", "expected an integer from 0 to 100")
        elif key == "grants":
            grants = _grants(value, out)
        elif key == "context":
            context = _mapping(value, "context", out)
        else:
            _unknown("", key, _REQUEST_KEYS, out)
    if when is None:
        out.add("time", "required")
    if out.items:
        raise RequestError(source, out.items)
    return AccessRequest.trusted(
        principal, when, action, resource, http, device, network, trust, grants, context
    )


def _extra(data: dict[Any, Any], allowed: frozenset[str], prefix: str, out: _Problems) -> None:
    for key in data:
        if key not in allowed:
            _unknown(prefix, key, allowed, out)


def _unknown(prefix: str, key: Any, allowed: frozenset[str], out: _Problems) -> None:
    where = f"{prefix}.{key}" if prefix else str(key)
    out.add(where, f"unknown key (expected one of: {', '.join(sorted(allowed))})")


def _principal(raw: Any, out: _Problems) -> Principal:
    if type(raw) is not dict:
        out.add("principal", "expected a mapping")
        return _ANONYMOUS
    ident: Any = None
    kind: PrincipalKind | None = PrincipalKind.USER
    email = spiffe_id = session_id = None
    groups = roles = auth_methods = _NO_STRINGS
    claims: Any = _EMPTY
    mfa: Any = False
    auth_time = mfa_time = None
    for key, value in raw.items():  # only the keys given: usually 2 or 3
        if key == "id":
            ident = value
        elif key == "roles":
            roles = _strings(value, "principal.roles", out)
        elif key == "mfa":
            mfa = value
            if type(mfa) is not bool:
                out.add("principal.mfa", "expected true or false")
        elif key == "groups":
            groups = _strings(value, "principal.groups", out)
        elif key == "kind":
            kind = _KINDS.get(value) if type(value) is str else None
            if kind is None:
                out.add("principal.kind", "expected one of: user, service, anonymous")
        elif key == "email":
            email = _opt_str(value, "principal.email", out)
        elif key == "claims":
            claims = _mapping(value, "principal.claims", out)
        elif key == "auth_methods":
            auth_methods = _strings(value, "principal.auth_methods", out)
        elif key == "auth_time":
            auth_time = _opt_epoch(value, "principal.auth_time", out)
        elif key == "mfa_time":
            mfa_time = _opt_epoch(value, "principal.mfa_time", out)
        elif key == "spiffe_id":
            spiffe_id = _opt_str(value, "principal.spiffe_id", out)
        elif key == "session_id":
            session_id = _opt_str(value, "principal.session_id", out)
        else:
            _unknown("principal", key, _PRINCIPAL_KEYS, out)
    if type(ident) is not str or not ident:
        out.add("principal.id", "required: a non-empty string")
        ident = ""
    return Principal.trusted(
        ident,
        kind or PrincipalKind.USER,
        email,
        groups,
        roles,
        claims,
        auth_methods,
        mfa,
        auth_time,
        mfa_time,
        spiffe_id,
        session_id,
    )


def _device(raw: Any, out: _Problems) -> Device | None:
    if type(raw) is not dict:
        out.add("device", "expected a mapping")
        return None
    ident: Any = "device"
    os_type: Any = "unknown"
    os_version: Any = ""
    managed: Any = False
    disk_encrypted: Any = False
    screen_lock: Any = False
    firewall: Any = False
    for key, value in raw.items():
        if key in _DEVICE_FLAGS:
            if type(value) is not bool:
                out.add(f"device.{key}", "expected true or false")
            elif key == "managed":
                managed = value
            elif key == "disk_encrypted":
                disk_encrypted = value
            elif key == "screen_lock":
                screen_lock = value
            else:
                firewall = value
        elif key in _DEVICE_TEXTS:
            if type(value) is not str:
                out.add(f"device.{key}", "expected a string")
            elif key == "os_type":
                os_type = _intern(value.strip().lower())
            elif key == "os_version":
                os_version = value
            else:
                ident = value
        else:
            _unknown("device", key, _DEVICE_KEYS, out)
    return Device.trusted(
        ident, managed, disk_encrypted, screen_lock, firewall, os_type, os_version
    )


def _network(raw: Any, out: _Problems) -> NetworkContext:
    if type(raw) is not dict:
        out.add("network", "expected a mapping")
        return _NO_NETWORK
    address = region = None
    for key, value in raw.items():
        if key == "ip":
            if value is None:
                continue
            if type(value) is not str:
                out.add("network.ip", "expected an IP address string")
                continue
            try:
                address = parse_ip(value)
            except ValueError:
                out.add("network.ip", f"not an IP address: {value!r}")
        elif key == "region":
            if value is None:
                continue
            if type(value) is not str:
                out.add("network.region", "expected a string")
            else:
                region = _intern(value.strip().upper())
        else:
            _unknown("network", key, _NETWORK_KEYS, out)
    return NetworkContext.trusted(address, region)


def _resource(raw: Any, out: _Problems) -> Resource:
    if type(raw) is not dict:
        out.add("resource", "expected a mapping")
        return _NO_RESOURCE
    kind = ident = None
    attributes: Any = _EMPTY
    for key, value in raw.items():
        if key == "type":
            kind = _opt_str(value, "resource.type", out)
        elif key == "id":
            ident = _opt_str(value, "resource.id", out)
        elif key == "attributes":
            attributes = _mapping(value, "resource.attributes", out)
        else:
            _unknown("resource", key, _RESOURCE_KEYS, out)
    return Resource.trusted(kind, ident, attributes)


def _http(raw: Any, out: _Problems) -> HttpTarget | None:
    if type(raw) is not dict:
        out.add("http", "expected a mapping")
        return None
    if not raw.keys() <= _HTTP_KEYS:
        _extra(raw, _HTTP_KEYS, "http", out)
    host: Any = raw.get("host")
    method: Any = raw.get("method", "GET")
    path: Any = raw.get("path", "/")
    headers = raw.get("headers", {})
    ok = True
    if type(host) is not str or not host:
        out.add("http.host", "required: a non-empty string")
        ok = False
    for name, value in (("method", method), ("path", path)):
        if type(value) is not str:
            out.add(f"http.{name}", "expected a string")
            ok = False
    if type(headers) is not dict or not all(
        type(k) is str and type(v) is str for k, v in headers.items()
    ):
        out.add("http.headers", "expected a mapping of header name to string")
        ok = False
    # Untrusted text: the checking constructor normalises host, method and path.
    return HttpTarget(host, method, path, headers) if ok else None


def _opt_str(value: Any, path: str, out: _Problems) -> str | None:
    if value is None or type(value) is str:
        return value
    out.add(path, "expected a string")
    return None


def _strings(value: Any, path: str, out: _Problems) -> frozenset[str]:
    if type(value) is not list:
        out.add(path, "expected a list of strings")
        return frozenset()
    for item in value:
        if type(item) is not str:
            out.add(path, "expected a list of strings")
            return frozenset()
    return frozenset(map(_intern, value))


_SCALARS = frozenset((str, int, float, bool, type(None)))


def _mapping(value: Any, path: str, out: _Problems) -> Any:
    if type(value) is not dict:
        out.add(path, "expected a mapping with string keys")
        return _EMPTY
    flat = True
    for k, v in value.items():
        if type(k) is not str:
            out.add(path, "expected a mapping with string keys")
            return _EMPTY
        if type(v) not in _SCALARS:
            flat = False
    if not value:
        return _EMPTY
    if flat:
        return MappingProxyType(value.copy())
    try:
        return _freeze(value)
    except RecursionError:
        out.add(path, "nested too deeply")
        return _EMPTY


def _grants(value: Any, out: _Problems) -> Any:
    if type(value) is not dict:
        out.add("grants", "expected a mapping of grant name to expiry time")
        return _EMPTY
    return MappingProxyType({str(k): _epoch(v, f"grants.{k}", out) for k, v in value.items()})


def _opt_epoch(value: Any, path: str, out: _Problems) -> float | None:
    return None if value is None else _epoch(value, path, out)


def _epoch(value: Any, path: str, out: _Problems) -> float:
    """UNIX seconds from a number or an ISO 8601 string with a zone (as request files)."""
    kind = type(value)
    if kind is float:
        return float(value)
    if kind is int:
        try:
            return float(value)
        except OverflowError:
            out.add(path, "time out of range")
            return 0.0
    if kind is str:
        try:
            moment = _parse_iso(value.strip().replace("Z", "+00:00"))
        except ValueError:
            out.add(path, f"not an ISO 8601 time: {value!r}")
            return 0.0
        if moment.tzinfo is None:
            out.add(path, "a time needs a zone offset, e.g. 2026-11-23T10:00:00+01:00 or ...Z")
            return 0.0
        return moment.timestamp()
    out.add(path, "expected UNIX seconds or an ISO 8601 time")
    return 0.0


_parse_iso: Callable[[str], datetime] = datetime.fromisoformat
