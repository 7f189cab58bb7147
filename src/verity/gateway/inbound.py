"""From an ASGI scope to what the enforcement point decides on (sans-I/O).

Everything here treats its input as untrusted: the header block is size-checked, the
client IP resolved through trusted hops only, the host and method validated, and the
request target read once (``verity.gateway.target``: decoded once, ambiguous spellings
refused); the ``HttpTarget`` the policy decides on carries that canonical path as is.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import quote

from ..model import HttpTarget
from .errors import BadRequestError
from .headers import (
    ClientAddress,
    ClientResolver,
    RawHeaders,
    check_framing,
    check_limits,
    header_values,
    policy_headers,
    single_header,
    valid_host,
    valid_method,
)
from .responses import wants_html
from .settings import RouteConfig
from .target import canonical_path, decided_method, decode_path, split_target

Scope = Mapping[str, Any]
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
_REFUSED_METHODS = frozenset({"CONNECT", "TRACE"})


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on the request header block."""

    max_header_bytes: int
    max_header_count: int


@dataclass(frozen=True, slots=True)
class Inbound:
    """An incoming request's headers, resolved client and response preference."""

    headers: RawHeaders
    client: ClientAddress
    html: bool


@dataclass(frozen=True, slots=True)
class RequestLine:
    """What the gateway reads of a request besides its headers, from an ASGI scope
    (``request_line``) or straight from the HTTP parser (``verity.gateway.fast_path``):
    both paths decide on the same pieces."""

    method: str
    target: str  # the request target as sent: raw path and query (``scope_target``)
    path: str  # the path decoded (ASGI ``path``): endpoints and mounts are found by it
    query: bytes  # ASGI ``query_string``
    scheme: str  # "http" or "https" (the connection's)
    peer: str | None  # the socket peer's address
    tls: Mapping[str, Any] | None = None  # the ASGI TLS extension (client certificate)


def request_line(scope: Scope) -> RequestLine:
    """The ``RequestLine`` of an ASGI HTTP scope."""
    peer = scope.get("client")
    extensions = scope.get("extensions") or {}
    return RequestLine(
        scope["method"], scope_target(scope), scope["path"], scope.get("query_string", b""),
        str(scope.get("scheme", "http")), str(peer[0]) if peer else None, extensions.get("tls"),
    )  # fmt: skip


def read_inbound(scope: Scope, resolver: ClientResolver, limits: Limits) -> Inbound:
    """Check the header block and resolve the client. Raises ``BadRequestError``."""
    peer = scope.get("client")
    return inbound_of(scope["headers"], peer[0] if peer else None, resolver, limits)


def inbound_of(
    raw: RawHeaders, peer: str | None, resolver: ClientResolver, limits: Limits
) -> Inbound:
    """``read_inbound`` for raw headers and the socket peer's address."""
    check_limits(raw, max_bytes=limits.max_header_bytes, max_count=limits.max_header_count)
    check_framing(raw)
    client = resolver.resolve(peer, raw)
    accept = header_values(raw, b"accept")
    html = _wants_html(accept[0] if len(accept) == 1 else ", ".join(accept)) if accept else False
    return Inbound(raw, client, html)


@functools.lru_cache(maxsize=64)
def _wants_html(accept: str) -> bool:
    """``wants_html`` for the few distinct ``Accept`` values clients send (bounded cache)."""
    return wants_html(accept)


class Target(NamedTuple):
    """A request target as read: the path as sent, the query, and the path decoded once."""

    raw: str
    query: str
    decoded: str


def read_target(untrusted_target: str) -> Target:
    """Split and decode a request target; ``AmbiguousTargetError`` (400) if ambiguous."""
    path, query = split_target(untrusted_target.strip())
    return Target(path, query, decode_path(path))


def scope_target(scope: Scope) -> str:
    """The request target of an ASGI scope as sent: raw path and query string."""
    return sent_target(
        scope.get("raw_path"), str(scope.get("path", "/")), bytes(scope.get("query_string", b""))
    )


def sent_target(raw_path: bytes | None, path: str, query: bytes) -> str:
    """The request target as sent, from the parser's raw path (else ``path`` re-encoded)
    and query string."""
    sent = bytes(raw_path).decode("latin-1") if raw_path else quote(path, safe=_PATH_SAFE)
    text = query.decode("latin-1")
    return f"{sent}?{text}" if text and "?" not in sent else sent


def raw_target(scope: Scope) -> str:
    """The request path as the client sent it (ASGI ``raw_path``, else re-encoded ``path``)."""
    return sent_target(scope.get("raw_path"), str(scope.get("path", "/")), b"")


def upstream_path(canonical: str) -> str:
    """The path sent upstream: the canonical path, percent-encoded again.

    The upstream receives exactly the path the policy decided on, so no decoding or
    dot-segment trick can make the two disagree.
    """
    return quote(canonical, safe=_PATH_SAFE)


def http_target(
    route: RouteConfig, *, host: str, method: str, target: Target, headers: RawHeaders
) -> HttpTarget:
    """The ``HttpTarget`` the policy decides on for ``route``: the canonical path (the
    route's ``path_matching`` applied), the method after the route's ``method_override``
    rule, the route's ``policy_host`` if set. Raises ``BadRequestError``."""
    checked = decided_method(route, valid_method(method), headers, target.query)
    if checked in _REFUSED_METHODS:
        raise BadRequestError(405, "This method is not supported.")
    return HttpTarget.canonical(
        host=route.policy_host or host, method=checked,
        path=canonical_path(route, target.decoded), headers=policy_headers(headers),
    )  # fmt: skip


def request_host(inbound: Inbound, *, forwarded: bool) -> str:
    """The validated host: ``X-Forwarded-Host`` when ``forwarded`` and the peer is a
    trusted proxy, otherwise ``Host``."""
    if forwarded and inbound.client.peer_trusted:
        value = single_header(inbound.headers, b"x-forwarded-host")
        if value is not None:
            return valid_host(value.split(",")[-1])
    return valid_host(single_header(inbound.headers, b"host"))
