"""Reading request attributes by dotted path (``principal.claims.dept``, ``resource.owner``).

Used by relations, claims and the CEL activation. A path that leads nowhere yields
``MISSING``, and criteria treat missing data as "does not hold". Equality is strict about
booleans, so a claim ``1`` never equals ``true``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from ..model import AccessRequest


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Final = _Missing()
Getter = Callable[[AccessRequest], Any]

_PRINCIPAL = (
    "id",
    "kind",
    "email",
    "groups",
    "roles",
    "auth_methods",
    "mfa",
    "auth_time",
    "mfa_time",
    "spiffe_id",
    "session_id",
)
_DEVICE = ("id", "managed", "disk_encrypted", "screen_lock", "firewall", "os_type", "os_version")
_HTTP = ("host", "method", "path")


def strict_equal(left: object, right: object) -> bool:
    """``==`` without bool/int confusion (``True == 1`` is False here)."""
    if left.__class__ is right.__class__:
        return bool(left == right)
    if isinstance(left, bool) or isinstance(right, bool):
        return False
    return bool(left == right)


def dig(value: Any, keys: tuple[str, ...]) -> Any:
    """Follow ``keys`` through nested mappings; MISSING when any step is absent."""
    for key in keys:
        if not isinstance(value, Mapping):
            return MISSING
        value = value.get(key, MISSING)
        if value is MISSING:
            return MISSING
    return value


def getter(path: tuple[str, ...]) -> Getter:
    """A function reading ``path`` (root first) from an AccessRequest."""
    root, rest = path[0], path[1:]
    factory = _ROOTS.get(root)
    if factory is None or not rest:
        raise ValueError(f"cannot read {'.'.join(path)!r}")
    return factory(rest)


def _principal(rest: tuple[str, ...]) -> Getter:
    head = rest[0]
    if head == "claims":
        keys = rest[1:]
        return lambda r: dig(r.principal.claims, keys)
    if head == "id" and len(rest) == 1:
        return lambda r: r.principal.id
    if head in _PRINCIPAL and len(rest) == 1:
        return lambda r: _plain(getattr(r.principal, head))
    return lambda r: dig(r.principal.claims, rest)


def _resource(rest: tuple[str, ...]) -> Getter:
    head = rest[0]
    if head in ("type", "id") and len(rest) == 1:
        return lambda r: _none_missing(getattr(r.resource, head))
    keys = rest[1:] if head == "attributes" else rest
    if len(keys) == 1:
        (key,) = keys
        return lambda r: r.resource.attributes.get(key, MISSING)
    return lambda r: dig(r.resource.attributes, keys)


def _device(rest: tuple[str, ...]) -> Getter:
    head = rest[0]
    if head not in _DEVICE or len(rest) != 1:
        return lambda r: MISSING
    return lambda r: MISSING if r.device is None else getattr(r.device, head)


def _network(rest: tuple[str, ...]) -> Getter:
    head = rest[0]
    if head == "ip" and len(rest) == 1:
        return lambda r: MISSING if r.network.ip is None else str(r.network.ip)
    if head == "region" and len(rest) == 1:
        return lambda r: _none_missing(r.network.region)
    return lambda r: MISSING


def _http(rest: tuple[str, ...]) -> Getter:
    head = rest[0]
    if head == "headers" and len(rest) == 2:
        name = rest[1].lower()
        return lambda r: MISSING if r.http is None else r.http.headers.get(name, MISSING)
    if head in _HTTP and len(rest) == 1:
        return lambda r: MISSING if r.http is None else getattr(r.http, head)
    return lambda r: MISSING


def _context(rest: tuple[str, ...]) -> Getter:
    return lambda r: dig(r.context, rest)


def _request(rest: tuple[str, ...]) -> Getter:
    head = rest[0]
    if len(rest) != 1:
        return lambda r: MISSING
    if head == "action":
        return lambda r: _none_missing(r.action)
    if head == "time":
        return lambda r: r.time
    if head == "trust_score":
        return lambda r: _none_missing(r.trust_score)
    return lambda r: MISSING


def _none_missing(value: Any) -> Any:
    return MISSING if value is None else value


def _plain(value: Any) -> Any:
    if value is None:
        return MISSING
    kind = getattr(value, "value", None)
    return kind if isinstance(kind, str) else value


_ROOTS: dict[str, Callable[[tuple[str, ...]], Getter]] = {
    "principal": _principal,
    "resource": _resource,
    "device": _device,
    "network": _network,
    "http": _http,
    "context": _context,
    "request": _request,
}
