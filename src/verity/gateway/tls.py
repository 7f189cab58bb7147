"""TLS termination for ``verity serve``: the server context, HSTS, and the HTTP redirect.

With ``gateway.tls`` set, uvicorn serves the gateway over TLS (TLS 1.2 at least) and every
response over TLS carries ``Strict-Transport-Security``. With ``redirect_http_port`` set,
a second, plain-HTTP listener in the same process answers every request with a 308 to
the same path and query on ``https://`` -- only for host names the gateway serves (its
``public_url`` host, the routes' hosts, the bind address), so it is never an open
redirect -- except ``/healthz`` and ``/readyz``, which it answers itself.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import ConfigError, Problem
from .settings import GatewayConfig, TlsConfig

HEALTH_PATHS = frozenset({"/healthz", "/readyz"})
_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
_HOST_HEADER = re.compile(
    rb"^(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])(?::(?P<port>[0-9]{1,5}))?$"
)
_TARGET = re.compile(rb"^/[\x21-\x7e]*$")  # origin-form, visible ASCII only


def resolve_tls_paths(gateway: GatewayConfig, base: Path) -> GatewayConfig:
    """``gateway`` with the relative paths of ``gateway.tls`` resolved against ``base``."""
    tls = gateway.tls
    if tls is None:
        return gateway

    def resolved(path: Path) -> Path:
        return path if path.is_absolute() else base / path

    update: dict[str, Path | None] = {
        "cert_file": resolved(tls.cert_file),
        "key_file": resolved(tls.key_file),
        "client_ca_file": None if tls.client_ca_file is None else resolved(tls.client_ca_file),
    }
    return gateway.model_copy(update={"tls": tls.model_copy(update=update)})


def server_context(tls: TlsConfig) -> ssl.SSLContext:
    """The server ``SSLContext``: certificate and key, TLS >= ``min_version``, and, with a
    client CA bundle, client certificates requested and verified against it.

    Certificates are optional at the TLS layer (``CERT_OPTIONAL``), so routes without
    ``mtls`` work without one; a certificate that *is* presented must verify (strict
    X.509) or the handshake fails. Session tickets are off; TLS 1.2 session-id resumption
    (which Python cannot turn off) skips OpenSSL's chain check, so the gateway verifies
    the client's chain itself on every request (see ``verity.gateway.mtls``).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _VERSIONS[tls.min_version]
    context.options |= ssl.OP_NO_RENEGOTIATION
    context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.client_ca_file is not None:
        context.load_verify_locations(cafile=tls.client_ca_file)
        context.verify_mode = ssl.CERT_OPTIONAL
        context.verify_flags |= ssl.VERIFY_X509_STRICT
        context.options |= ssl.OP_NO_TICKET
        context.num_tickets = 0
    return context


def check_tls(tls: TlsConfig, *, source: str) -> None:
    """Raise ``ConfigError`` naming the key path (``gateway.tls.key_file``, ...) when a
    file is missing or unreadable, or the certificate and key do not load together."""
    files = [("cert_file", tls.cert_file), ("key_file", tls.key_file)]
    if tls.client_ca_file is not None:
        files.append(("client_ca_file", tls.client_ca_file))
    problems = [
        Problem(f"gateway.tls.{name}", f"cannot read file {str(path)!r}")
        for name, path in files
        if not _readable(path)
    ]
    if problems:
        raise ConfigError(source, problems)
    if tls.client_ca_file is not None and not _ca_bundle_loads(tls.client_ca_file):
        message = "not a PEM bundle of CA certificates"
        raise ConfigError(source, [Problem("gateway.tls.client_ca_file", message)])
    try:
        server_context(tls)
    except (ssl.SSLError, ValueError, OSError):  # never echo key material or OpenSSL detail
        message = "the certificate and key do not load together (PEM chain, matching key)"
        raise ConfigError(source, [Problem("gateway.tls.key_file", message)]) from None


def _ca_bundle_loads(path: Path) -> bool:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(cafile=path)
    except (ssl.SSLError, ValueError, OSError):
        return False
    return True


def _readable(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError:
        return False
    return path.is_file()


def uvicorn_tls_options(tls: TlsConfig) -> dict[str, Any]:
    """uvicorn ``Config`` options for TLS: the files, and a context of TLS >= 1.2."""

    def factory(_config: Any, _default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        return server_context(tls)

    return {
        "ssl_certfile": str(tls.cert_file),
        "ssl_keyfile": str(tls.key_file),
        "ssl_ca_certs": None if tls.client_ca_file is None else str(tls.client_ca_file),
        "ssl_cert_reqs": ssl.CERT_NONE if tls.client_ca_file is None else ssl.CERT_OPTIONAL,
        "ssl_context_factory": factory,
    }


def with_hsts(send: Send, value: str) -> Send:
    """``send`` that adds ``Strict-Transport-Security: value`` to the response head."""
    header = (b"strict-transport-security", value.encode("ascii"))

    async def hsts_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [h for h in message.get("headers", []) if h[0].lower() != header[0]]
            message = {**message, "headers": [*headers, header]}
        await send(message)

    return hsts_send


def redirect_hosts(gateway: GatewayConfig, *, bind_host: str) -> frozenset[str]:
    """The host names the redirect listener accepts: ``public_url``'s, every non-wildcard
    route host, and the bind address unless it is a wildcard (0.0.0.0, ::)."""
    hosts = {urlsplit(gateway.public_url).hostname or ""}
    hosts.update(route.host for route in gateway.routes if route.host != "*")
    try:
        if not ipaddress.ip_address(bind_host).is_unspecified:
            hosts.add(bind_host)
    except ValueError:
        hosts.add(bind_host)
    return frozenset(host.lower().rstrip(".") for host in hosts if host)


class HttpsRedirect:
    """ASGI app of the plain-HTTP listener: 308 to ``https://{host}[:port]{path}?{query}``
    for an allowed Host, 400 for any other or malformed Host or target."""

    def __init__(
        self,
        *,
        hosts: Iterable[str],
        https_port: int,
        health: ASGIApp | None = None,
    ) -> None:
        self.hosts = frozenset(hosts)
        self.port_suffix = "" if https_port == 443 else f":{https_port}"
        self.health = health

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        if self.health is not None and scope["path"] in HEALTH_PATHS:
            await self.health(scope, receive, send)
            return
        location = self.location(scope)
        if location is None:
            await _respond(send, 400, [], b"Bad Request: unknown or malformed host.\n")
            return
        await _respond(send, 308, [(b"location", location.encode("ascii"))], b"")

    def location(self, scope: Scope) -> str | None:
        """The https URL for this request, or None when its Host or target is not valid."""
        values = [v for k, v in scope.get("headers", []) if k.lower() == b"host"]
        match = _HOST_HEADER.match(values[0]) if len(values) == 1 else None
        if match is None:
            return None
        host = match["host"].decode("ascii").lower().rstrip(".")
        if host.strip("[]") not in self.hosts:
            return None
        target = scope.get("raw_path") or scope["path"].encode("utf-8")
        query: bytes = scope.get("query_string", b"")
        if not _TARGET.match(target) or (query and not _TARGET.match(b"/" + query)):
            return None
        url = f"https://{host}{self.port_suffix}{target.decode('ascii')}"
        return url + f"?{query.decode('ascii')}" if query else url


async def _respond(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    base = [(b"content-type", b"text/plain; charset=utf-8"), (b"cache-control", b"no-store")]
    head = [*base, *headers, (b"content-length", str(len(body)).encode("ascii"))]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})
