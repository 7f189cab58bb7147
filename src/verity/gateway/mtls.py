"""Mutual TLS for service callers: a verified X.509-SVID is the principal of a request.

A route sets ``mtls``:

- ``off`` (default): client certificates are ignored; tokens and sessions identify.
- ``optional``: a client certificate, when presented, must be a valid X.509-SVID and its
  SPIFFE ID is the principal; without one, the bearer token or session decides.
- ``required``: no valid X.509-SVID, no access (403 "client certificate required").

The TLS layer (``verity.gateway.tls.server_context``) asks for a certificate and verifies
it against ``gateway.tls.client_ca_file``; ``verity.gateway.asgi_tls`` hands the chain to
the application in the ASGI TLS extension. Here the gateway checks again, on its own
(defence in depth): the extension reports no verification error, and the chain is a valid
X.509-SVID (exactly one ``spiffe://`` URI SAN, leaf and CA profile, validity, signatures)
leading to a root of the bundle of its trust domain (``verify_x509_svid``).

A certificate and an ``Authorization`` header on the same request are refused (403): the
SPIFFE ID is never silently replaced by a token, nor a token silently ignored.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ..errors import ConfigError, Problem
from ..identity.workload import (
    SvidRejectedError,
    TrustBundle,
    TrustBundleError,
    principal_from_svid,
    verify_x509_svid,
)
from ..model import Principal, Reason
from .headers import RawHeaders
from .settings import GatewayConfig, MtlsMode

Clock = Callable[[], dt.datetime]
CACHE_SIZE = 1024
_HINT = "Call this service over mutual TLS with your workload's X.509-SVID."

CERTIFICATE_REQUIRED = Reason("mtls.required", "client certificate required", hint=_HINT)
AMBIGUOUS_CREDENTIALS = Reason(
    "mtls.ambiguous_credentials",
    "a client certificate and a bearer token were both presented",
    hint="Present the client certificate alone; it is the caller's identity on this route.",
)


def certificate_rejected(detail: str) -> Reason:
    """The reason for a presented certificate that is not an acceptable X.509-SVID."""
    return Reason(
        "mtls.rejected",
        f"the client certificate is not an accepted X.509-SVID ({detail})",
        hint=_HINT,
    )


@dataclass(frozen=True, slots=True)
class PeerCertificate:
    """What a presented client certificate proves: a workload, or why it proves nothing."""

    principal: Principal | None = None
    problem: Reason | None = None


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def bundles_from_pem(data: bytes) -> tuple[TrustBundle, ...]:
    """One ``TrustBundle`` per SPIFFE trust domain among the PEM roots in ``data``.

    A root's trust domain is its SPIFFE ID URI SAN (as Verity's CA writes it); roots
    without one are not SPIFFE roots and trust no SVID here.
    """
    try:
        roots = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise TrustBundleError(f"not PEM certificates: {exc}") from None
    by_domain: dict[str, list[x509.Certificate]] = {}
    for root in roots:
        try:
            domain = TrustBundle.from_pem(root.public_bytes(Encoding.PEM)).trust_domain
        except TrustBundleError:
            continue  # not a SPIFFE root
        by_domain.setdefault(domain, []).append(root)
    return tuple(TrustBundle(domain, tuple(certs)) for domain, certs in sorted(by_domain.items()))


class ClientCertificates:
    """Verifies the client certificate of a scope's ASGI TLS extension as an X.509-SVID.

    Verified chains are cached (``CACHE_SIZE`` entries, by the exact PEM chain) until the
    earliest expiry in their path; a cached entry is re-checked against the clock.
    """

    def __init__(self, bundles: Iterable[TrustBundle], *, clock: Clock = _utcnow) -> None:
        self.bundles = tuple(bundles)
        self._clock = clock
        self._cache: OrderedDict[tuple[str, ...], tuple[Principal, dt.datetime, dt.datetime]]
        self._cache = OrderedDict()

    @classmethod
    def for_gateway(cls, config: GatewayConfig, *, source: str = "gateway") -> ClientCertificates:
        """The verifier of ``gateway.tls.client_ca_file``; ``ConfigError`` when a route
        sets ``mtls`` and the file holds no SPIFFE root."""
        tls = config.tls
        path = tls.client_ca_file if tls is not None else None
        if path is None:
            return cls(())
        try:
            bundles = bundles_from_pem(Path(path).read_bytes())
        except (OSError, TrustBundleError):
            bundles = ()
        if not bundles and config.mtls_enabled:
            message = "no SPIFFE trust-domain root (a CA certificate with a spiffe:// URI SAN)"
            raise ConfigError(source, [Problem("gateway.tls.client_ca_file", message)])
        return cls(bundles)

    def peer(self, scope: Mapping[str, Any]) -> PeerCertificate | None:
        """The client certificate of ``scope``; None when none was presented (or no TLS)."""
        extensions = scope.get("extensions") or {}
        tls = extensions.get("tls")
        if not tls:
            return None
        if tls.get("client_cert_error"):
            return PeerCertificate(problem=certificate_rejected("not verified"))
        chain = tuple(tls.get("client_cert_chain") or ())
        if not chain:
            return None
        return self.verify(chain)

    def verify(self, untrusted_chain: tuple[str, ...]) -> PeerCertificate:
        """Verify PEM certificates (leaf first) as an X.509-SVID of a trusted domain."""
        now = self._clock()
        cached = self._cache.get(untrusted_chain)
        if cached is not None and cached[1] <= now <= cached[2]:
            self._cache.move_to_end(untrusted_chain)
            return PeerCertificate(principal=cached[0])
        try:
            certificates = [x509.load_pem_x509_certificate(pem.encode()) for pem in untrusted_chain]
            verified = verify_x509_svid(certificates, self.bundles, now=now)
        except SvidRejectedError as exc:
            return PeerCertificate(problem=certificate_rejected(exc.reason.value))
        except (ValueError, TypeError, UnicodeError):
            return PeerCertificate(problem=certificate_rejected("malformed"))
        principal = principal_from_svid(verified)
        start = max(cert.not_valid_before_utc for cert in verified.path)
        end = min(cert.not_valid_after_utc for cert in verified.path)
        self._cache[untrusted_chain] = (principal, start, end)
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return PeerCertificate(principal=principal)


def certificate_identity(
    mode: MtlsMode, peer: PeerCertificate | None, headers: RawHeaders
) -> Principal | Reason | None:
    """Who the request is, by its certificate, on a route with ``mode``.

    A ``Principal``: the workload of a verified SVID. A ``Reason``: refuse (403). None:
    no certificate on an ``optional`` (or ``off``) route; the token or session decides.
    """
    if mode == "off":
        return None
    if peer is None:
        return CERTIFICATE_REQUIRED if mode == "required" else None
    if peer.problem is not None or peer.principal is None:
        return peer.problem or CERTIFICATE_REQUIRED
    if any(name == b"authorization" for name, _ in headers):
        return AMBIGUOUS_CREDENTIALS
    return peer.principal
