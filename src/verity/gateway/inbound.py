"""From an ASGI scope to what the enforcement point decides on (sans-I/O).

Everything here treats its input as untrusted: the header block is size-checked, the
client IP resolved through trusted hops only, the host and method validated, and the
path normalised exactly as the policy will see it (percent-decoded once, dot segments
resolved). A path that decodes to control characters is refused.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from ..model import HttpTarget, normalize_path
from .errors import BadRequestError
from .headers import (
    ClientAddress,
    ClientResolver,
    RawHeaders,
    check_limits,
    header_values,
    policy_headers,
    single_header,
    valid_host,
    valid_method,
)
from .responses import wants_html

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


def read_inbound(scope: Scope, resolver: ClientResolver, limits: Limits) -> Inbound:
    """Check the header block and resolve the client. Raises ``BadRequestError``."""
    raw: RawHeaders = scope["headers"]
    check_limits(raw, max_bytes=limits.max_header_bytes, max_count=limits.max_header_count)
    peer = scope.get("client")
    client = resolver.resolve(peer[0] if peer else None, raw)
    accept = header_values(raw, b"accept")
    html = _wants_html(accept[0] if len(accept) == 1 else ", ".join(accept)) if accept else False
    return Inbound(raw, client, html)


@functools.lru_cache(maxsize=64)
def _wants_html(accept: str) -> bool:
    """``wants_html`` for the few distinct ``Accept`` values clients send (bounded cache)."""
    return wants_html(accept)


def canonical_path(untrusted_target: str) -> str:
    """The normalised path of a request target (origin- or absolute-form); 400 if bad."""
    target = untrusted_target.strip()
    if target.lower().startswith(("http://", "https://")):
        target = urlsplit(target).path or "/"
    if not target.startswith("/"):
        raise BadRequestError(400, "Malformed request target.")
    path = normalize_path(target)
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        raise BadRequestError(400, "Malformed request target.")
    return path


def raw_target(scope: Scope) -> str:
    """The request path as the client sent it (ASGI ``raw_path``, else re-encoded ``path``)."""
    raw = scope.get("raw_path")
    if raw:
        return bytes(raw).decode("latin-1")
    return quote(str(scope.get("path", "/")), safe=_PATH_SAFE)


def upstream_path(canonical: str) -> str:
    """The path sent upstream: the canonical path, percent-encoded again.

    The upstream receives exactly the path the policy decided on, so no decoding or
    dot-segment trick can make the two disagree.
    """
    return quote(canonical, safe=_PATH_SAFE)


def http_target(
    *, host: str, method: str, path: str, headers: RawHeaders, policy_host: str | None
) -> HttpTarget:
    """The ``HttpTarget`` for the policy (``policy_host`` overrides the request's host)."""
    checked = valid_method(method)
    if checked in _REFUSED_METHODS:
        raise BadRequestError(405, "This method is not supported.")
    return HttpTarget(
        host=policy_host or host, method=checked, path=path, headers=policy_headers(headers)
    )


def request_host(inbound: Inbound, *, forwarded: bool) -> str:
    """The validated host: ``X-Forwarded-Host`` when ``forwarded`` and the peer is a
    trusted proxy, otherwise ``Host``."""
    if forwarded and inbound.client.peer_trusted:
        value = single_header(inbound.headers, b"x-forwarded-host")
        if value is not None:
            return valid_host(value.split(",")[-1])
    return valid_host(single_header(inbound.headers, b"host"))
