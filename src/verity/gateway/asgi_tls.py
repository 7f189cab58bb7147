"""The ASGI TLS extension (``scope["extensions"]["tls"]``) for uvicorn.

uvicorn does not tell an application which client certificate a TLS connection
presented. The HTTP protocol classes of ``verity.gateway.http_limits`` and the WebSocket
protocol here (uvicorn's websockets sans-I/O one) add it: once the TLS handshake is done
(``connection_made``), they read the connection's ``ssl.SSLObject`` and wrap the
application (``with_tls_extension``) so that every scope of that connection carries the
extension of the ASGI TLS spec (asgiref ``specs/tls.rst``, version 0.2):

- ``client_cert_chain``: the PEM certificates the client sent, leaf first (empty: none);
- ``client_cert_name``: the leaf's subject, RFC 4514 (``None`` without a certificate);
- ``client_cert_error``: ``None`` when the certificate (if any) was verified by the TLS
  layer, else why not (the gateway's contexts verify every presented certificate and
  abort the handshake on failure, so this is set only for contexts that do not verify);
- ``tls_version`` (``0x0303``, ``0x0304``) and ``cipher_suite`` (IANA number, ``0x1302``);
- ``server_cert``: ``None`` (not needed by the gateway).

``verity serve`` always uses those HTTP classes, and ``TlsWebSocketProtocol`` as uvicorn's
``ws`` option when ``gateway.tls`` is set. Plain-HTTP connections get no extension, as the
spec requires.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

TLS_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
_CIPHER_IDS: dict[str, int] = {}
_UNVERIFIED = "the TLS layer did not verify the client certificate"
_ENCODING_DER = 2  # _ssl.ENCODING_DER: what the private 3.11/3.12 certificate objects take
TlsExtension = Mapping[str, Any]


def _cipher_suite(tls: ssl.SSLObject) -> int | None:
    cipher = tls.cipher()
    if cipher is None:
        return None
    name = cipher[0]
    if name not in _CIPHER_IDS:
        for entry in tls.context.get_ciphers():
            _CIPHER_IDS.setdefault(str(entry["name"]), int(entry["id"]) & 0xFFFF)
    return _CIPHER_IDS.get(name)


def _der(item: object) -> bytes:
    """A certificate of ``get_unverified_chain`` as DER (3.13+: bytes; before: objects)."""
    if isinstance(item, bytes | bytearray):
        return bytes(item)
    public_bytes = getattr(item, "public_bytes", None)
    if public_bytes is None:
        raise TypeError("unknown certificate type")
    return bytes(public_bytes(_ENCODING_DER))


def client_chain(tls: ssl.SSLObject) -> tuple[bytes, ...]:
    """The DER certificates the client sent, leaf first; () without a certificate.

    Python 3.13 has ``get_unverified_chain``; 3.11 and 3.12 have it on the underlying
    ``_ssl`` object. Where neither exists, the leaf alone (``getpeercert``).
    """
    getter = getattr(tls, "get_unverified_chain", None) or getattr(
        getattr(tls, "_sslobj", None), "get_unverified_chain", None
    )
    if getter is not None:
        chain = [item for item in getter() or () if item is not None]  # 3.11: [None]
        if chain:
            return tuple(_der(item) for item in chain)
    leaf = tls.getpeercert(binary_form=True)
    return (leaf,) if leaf else ()


def tls_extension(tls: ssl.SSLObject | None) -> TlsExtension | None:
    """The ASGI TLS extension for a connection's ``ssl_object`` (None: not TLS)."""
    if tls is None:
        return None
    chain = client_chain(tls)
    certificates = [x509.load_der_x509_certificate(der) for der in chain]
    verified = tls.context.verify_mode != ssl.CERT_NONE
    return MappingProxyType(
        {
            "server_cert": None,
            "client_cert_chain": tuple(
                c.public_bytes(Encoding.PEM).decode("ascii") for c in certificates
            ),
            "client_cert_name": certificates[0].subject.rfc4514_string() if chain else None,
            "client_cert_error": None if verified or not chain else _UNVERIFIED,
            "tls_version": TLS_VERSIONS.get(tls.version() or ""),
            "cipher_suite": _cipher_suite(tls),
        }
    )


class WithTlsExtension:
    """Wraps an ASGI app: every scope gets ``extensions["tls"] = extension``."""

    __slots__ = ("app", "extension")

    def __init__(self, app: ASGIApp, extension: TlsExtension) -> None:
        self.app = app
        self.extension = extension

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["extensions"] = {**(scope.get("extensions") or {}), "tls": self.extension}
        await self.app(scope, receive, send)


def with_tls_extension(app: Any, transport: asyncio.BaseTransport) -> Any:
    """``app`` wrapped to give every scope the TLS extension of ``transport``'s connection
    (``app`` itself on a plain-HTTP connection)."""
    try:
        extension = tls_extension(transport.get_extra_info("ssl_object"))
    except (ValueError, TypeError, ssl.SSLError):
        # an unreadable certificate: reported as unverified, so an mTLS route refuses
        extension = MappingProxyType({"client_cert_chain": (), "client_cert_error": "unreadable"})
    return app if extension is None else WithTlsExtension(app, extension)


class TlsWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets sans-I/O WebSocket protocol, with the ASGI TLS extension."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.app = with_tls_extension(self.app, transport)
