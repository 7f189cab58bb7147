"""The scope the gateway's own apps (embedded IdP, login routes) see (sans-I/O).

A mounted app reads the client address from the ASGI scope (``request.client``), as
Starlette does; behind a reverse proxy the socket peer is that proxy, so per-IP lockout
and the IP in login events would count the proxy for every user. The gateway therefore
hands a mounted app the client IP it resolved through ``server.trusted_proxies`` and
``server.trusted_hops`` (``ClientResolver``) and, in place of whatever forwarding headers
the client sent (``X-Forwarded-For``, ``Forwarded``, ``X-Real-IP``), only the
``X-Forwarded-For`` chain it verified: a forged header from an untrusted peer never
reaches the app, and an app that reads ``X-Forwarded-For`` finds the same answer.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from .headers import ClientAddress

_CLIENT_HEADERS = frozenset({b"x-forwarded-for", b"forwarded", b"x-real-ip"})


def mount_scope(scope: MutableMapping[str, Any], client: ClientAddress) -> dict[str, Any]:
    """A copy of ``scope`` whose ``client`` is the resolved client (port 0 when it is not
    the peer) and whose headers carry only the verified ``X-Forwarded-For`` chain."""
    peer = scope.get("client")
    if client.ip is None:
        address = None
    elif client.ip == client.peer and peer:
        address = (str(client.ip), int(peer[1]))
    else:
        address = (str(client.ip), 0)
    headers = [(k, v) for k, v in scope.get("headers", ()) if k.lower() not in _CLIENT_HEADERS]
    if client.chain:
        headers.append((b"x-forwarded-for", ", ".join(client.chain).encode("latin-1")))
    return {**scope, "client": address, "headers": headers}
