"""A real mutual-TLS handshake on 127.0.0.1 between SVID holders (server requires a client
certificate; the SPIFFE ID is read from the verified peer)."""

from __future__ import annotations

import queue
import socket
import ssl
import threading
from collections.abc import Iterator

import pytest
from cryptography import x509

from verity.identity.workload import (
    CertificateAuthority,
    SvidRejectedError,
    TrustBundle,
    client_context,
    load_svid,
    peer_svid,
    server_context,
)

from .conftest import make_ca

SERVER_ID = "spiffe://example.org/ns/prod/sa/api"
CLIENT_ID = "spiffe://example.org/ns/prod/sa/web"
TIMEOUT = 5.0


class MtlsServer:
    """Accepts connections in a thread; answers each client with its verified SPIFFE ID."""

    def __init__(self, context: ssl.SSLContext, bundle: TrustBundle) -> None:
        self.context, self.bundle = context, bundle
        self.results: queue.Queue[tuple[str, str]] = queue.Queue()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(TIMEOUT)
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    sid = str(peer_svid(tls, self.bundle).spiffe_id)
                    tls.sendall(sid.encode() + b"\n")
                    self.results.put(("ok", sid))
            except (ssl.SSLError, OSError, SvidRejectedError) as exc:
                self.results.put(("refused", type(exc).__name__))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(TIMEOUT)
        self.listener.close()


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    """A CA valid now: OpenSSL checks validity against the real clock."""
    return make_ca(live=True)


@pytest.fixture(scope="module")
def bundle(ca: CertificateAuthority) -> TrustBundle:
    return TrustBundle.of_authority(ca)


@pytest.fixture
def server(ca: CertificateAuthority, bundle: TrustBundle) -> Iterator[MtlsServer]:
    svid = ca.issue_x509_svid(SERVER_ID)
    running = MtlsServer(server_context(svid, bundle), bundle)
    yield running
    running.close()


def talk(context: ssl.SSLContext, port: int) -> tuple[bytes, x509.Certificate]:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return tls.recv(1024), x509.load_der_x509_certificate(der)


def test_client_with_valid_svid_is_identified(
    ca: CertificateAuthority, bundle: TrustBundle, server: MtlsServer
) -> None:
    context = client_context(ca.issue_x509_svid(CLIENT_ID), bundle)
    answer, server_cert = talk(context, server.port)
    assert answer == CLIENT_ID.encode() + b"\n"
    assert server.results.get(timeout=TIMEOUT) == ("ok", CLIENT_ID)
    san = server_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [SERVER_ID]


def test_client_with_a_certificate_from_another_ca_is_refused(
    bundle: TrustBundle, server: MtlsServer
) -> None:
    stranger = make_ca(live=True)  # same trust domain name, different keys
    context = client_context(stranger.issue_x509_svid(CLIENT_ID), bundle)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        talk(context, server.port)
    assert server.results.get(timeout=TIMEOUT)[0] == "refused"


def test_client_without_a_certificate_is_refused(bundle: TrustBundle, server: MtlsServer) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(cadata=bundle.to_pem().decode())
    with pytest.raises((ssl.SSLError, ConnectionError)):
        talk(context, server.port)
    assert server.results.get(timeout=TIMEOUT)[0] == "refused"


def test_client_refuses_a_server_from_another_ca(
    ca: CertificateAuthority, bundle: TrustBundle
) -> None:
    stranger = make_ca(live=True)
    rogue = MtlsServer(server_context(stranger.issue_x509_svid(SERVER_ID), bundle), bundle)
    try:
        context = client_context(ca.issue_x509_svid(CLIENT_ID), bundle)
        with pytest.raises(ssl.SSLCertVerificationError):
            talk(context, rogue.port)
    finally:
        rogue.close()


def test_ed25519_ca_with_intermediate_handshake() -> None:
    ca = make_ca("ed25519", intermediate=True, live=True)
    bundle = TrustBundle.of_authority(ca)
    running = MtlsServer(server_context(ca.issue_x509_svid(SERVER_ID), bundle), bundle)
    try:
        answer, _ = talk(client_context(ca.issue_x509_svid(CLIENT_ID), bundle), running.port)
        assert answer == CLIENT_ID.encode() + b"\n"
    finally:
        running.close()


def test_rotated_svid_is_presented_by_new_handshakes(
    ca: CertificateAuthority, bundle: TrustBundle
) -> None:
    first = ca.issue_x509_svid(SERVER_ID)
    context = server_context(first, bundle)
    running = MtlsServer(context, bundle)
    try:
        client = client_context(ca.issue_x509_svid(CLIENT_ID), bundle)
        assert talk(client, running.port)[1].serial_number == first.certificate.serial_number
        second = ca.issue_x509_svid(SERVER_ID)
        load_svid(context, second)
        assert talk(client, running.port)[1].serial_number == second.certificate.serial_number
    finally:
        running.close()
