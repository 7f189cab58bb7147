"""The WebSocket handshake, sans-I/O: what is decided, from where it may come, and what
is sent upstream (``verity.gateway.websocket`` does the I/O).

The decided target is the HTTP one (``verity.gateway.inbound.http_target``: the
canonical path, the method override rule) as a GET with ``upgrade: websocket``; the
upstream URI carries that same canonical path.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ..model import HttpTarget
from .headers import RawHeaders, header_values
from .headers import upstream_headers as clean_headers
from .inbound import Target, http_target, upstream_path
from .pool import encoded_query
from .settings import RouteConfig


def websocket_target(
    route: RouteConfig, *, host: str, target: Target, headers: RawHeaders
) -> HttpTarget:
    """What the policy sees: a GET (or, with ``method_override: decide``, the override)
    with ``upgrade: websocket`` among its headers, at the canonical path."""
    decided = http_target(route, host=host, method="GET", target=target, headers=headers)
    seen = dict(decided.headers)
    seen["upgrade"] = "websocket"
    return HttpTarget.canonical(
        host=decided.host, method=decided.method, path=decided.path, headers=seen
    )


def origin_allowed(route: RouteConfig, host: str, headers: RawHeaders) -> bool:
    """True unless the request carries ambient credentials from a foreign ``Origin``."""
    origins = header_values(headers, b"origin")
    if not origins or header_values(headers, b"authorization"):
        return True  # not a browser, or explicit credentials
    if len(origins) != 1:
        return False
    origin = origins[0].strip().lower().rstrip("/")
    if "*" in route.websocket_origins or origin in route.websocket_origins:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc == host


def upstream_uri(route: RouteConfig, path: str, query: bytes) -> str:
    """``ws://`` or ``wss://`` URL of ``path`` (canonical) at the route's upstream.

    All ASCII, query included (bytes outside printable ASCII percent-encoded, as the HTTP
    proxy sends them): the WebSocket client percent-encodes a URI with any other character
    as a whole, ``%`` included, and the upstream would get ``/a%2520b`` for ``/a b``."""
    base = urlsplit(route.upstream or "")
    scheme = "wss" if base.scheme == "https" else "ws"
    target = base.path.rstrip("/") + upstream_path(path)
    uri = f"{scheme}://{base.netloc}{target}"
    return uri + "?" + encoded_query(query) if query else uri


def handshake_headers(raw: RawHeaders, route: RouteConfig, hidden: frozenset[str]) -> list[Any]:
    """The client's headers as the HTTP proxy cleans them, minus the handshake's own
    (``Sec-WebSocket-*``: the client library sets key, version and extensions; the
    subprotocols are offered separately)."""
    kept = clean_headers(
        raw, forward_authorization=route.forward_authorization, hidden_cookies=hidden
    )
    return [(n, v) for n, v in kept if not n.startswith(b"sec-websocket-")]
