"""Mutual-TLS ``ssl.SSLContext`` for workloads, and the peer's SPIFFE ID after a handshake.

Both sides present their X.509-SVID and require the peer's, verified by OpenSSL against
one trust bundle (one trust domain) in strict X.509 mode. Host names are not checked:
SPIFFE authenticates by SPIFFE ID, which ``peer_svid`` extracts and checks (SVID profile,
trust domain, validity) after the handshake, for the application to authorise.
"""

from __future__ import annotations

import datetime as dt
import ssl
import tempfile
from pathlib import Path

from cryptography import x509

from ._chain_rules import check_algorithms, check_critical_extensions
from .bundle import TrustBundle
from .errors import SvidRejectedError
from .errors import SvidRejection as R
from .svid import X509Svid, write_private
from .verify import (
    VerifiedX509Svid,
    check_validity,
    spiffe_id_of_leaf,
    verify_x509_svid,
)


def load_svid(context: ssl.SSLContext, svid: X509Svid) -> None:
    """(Re)load ``svid`` into ``context``: new handshakes present it (use on rotation).

    ``ssl`` reads keys only from files: they exist for the call, in a private 0700
    temporary folder, as a 0600 file, and are removed right after.
    """
    with tempfile.TemporaryDirectory(prefix="verity-svid-") as folder:
        cert_path, key_path = Path(folder) / "svid.crt", Path(folder) / "svid.key"
        cert_path.write_bytes(svid.chain_pem())
        write_private(key_path, svid.key_pem())
        context.load_cert_chain(cert_path, key_path)


def _context(protocol: int, svid: X509Svid, bundle: TrustBundle) -> ssl.SSLContext:
    context = ssl.SSLContext(protocol)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    context.load_verify_locations(cadata=bundle.to_pem().decode("ascii"))
    load_svid(context, svid)
    return context


def server_context(svid: X509Svid, bundle: TrustBundle) -> ssl.SSLContext:
    """A TLS server context that requires a client SVID chaining to ``bundle``."""
    return _context(ssl.PROTOCOL_TLS_SERVER, svid, bundle)


def client_context(svid: X509Svid, bundle: TrustBundle) -> ssl.SSLContext:
    """A TLS client context presenting ``svid`` and requiring a server SVID from ``bundle``."""
    context = _context(ssl.PROTOCOL_TLS_CLIENT, svid, bundle)
    context.check_hostname = False  # SPIFFE: authenticate the SPIFFE ID, not a DNS name
    return context


def peer_svid(
    tls: ssl.SSLSocket | ssl.SSLObject, bundle: TrustBundle, *, now: dt.datetime | None = None
) -> VerifiedX509Svid:
    """The verified SVID of the peer of a completed handshake on a context from here.

    Where Python exposes the verified chain (3.13+) it is verified again in full;
    before that, OpenSSL has validated the path to ``bundle``, and the leaf gets the
    SVID profile, validity and the chain rules that need no issuer and that OpenSSL does
    not all apply (key and signature algorithms, ROCA, unknown critical extensions).
    """
    get_chain = getattr(tls, "get_verified_chain", None)
    if get_chain is not None:
        chain = [x509.load_der_x509_certificate(bytes(der)) for der in get_chain()]
        return verify_x509_svid(chain, bundle, now=now)
    der = tls.getpeercert(binary_form=True)
    if not der:
        raise SvidRejectedError(R.MALFORMED, "the peer presented no certificate")
    leaf = x509.load_der_x509_certificate(der)
    sid = spiffe_id_of_leaf(leaf)
    if not sid.member_of(bundle.trust_domain):
        raise SvidRejectedError(
            R.WRONG_TRUST_DOMAIN, f"peer trust domain {sid.trust_domain!r} is not trusted"
        )
    check_validity(leaf, "leaf certificate", now or dt.datetime.now(dt.UTC))
    check_algorithms([leaf])  # OpenSSL's purpose check stands for the key purpose
    check_critical_extensions([leaf])
    return VerifiedX509Svid(sid, leaf, (leaf,))
