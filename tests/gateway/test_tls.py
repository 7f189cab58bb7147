"""``gateway.tls``: ``verity serve`` over TLS (>= 1.2, HSTS) with a plain-HTTP 308 redirect,
exercised through real sockets on 127.0.0.1 with a throwaway CA."""

from __future__ import annotations

import datetime
import ipaddress
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from verity.cli.serve import app, load_serve_config, redirect_options, uvicorn_options
from verity.gateway.tls import HttpsRedirect

from .conftest import POLICY
from .servers import free_port

HSTS = "max-age=31536000; includeSubDomains"


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def write_pki(folder: Path) -> None:
    """ca.pem, and cert.pem + key.pem for 127.0.0.1 signed by it; other-key.pem unrelated."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(_name("test ca")).issuer_name(_name("test ca"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName(
        [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("app.test")]
    )
    cert = (
        x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(san, critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "cert.pem").write_bytes(cert.public_bytes(pem))
    for name, private in (
        ("key.pem", key),
        ("other-key.pem", ec.generate_private_key(ec.SECP256R1())),
    ):
        raw = private.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        (folder / name).write_bytes(raw)


def write_config(folder: Path, *, port: int, http_port: int, key: str = "key.pem") -> Path:
    (folder / "policy.yaml").write_text(POLICY)
    config = folder / "verity.yaml"
    config.write_text(
        f"server: {{host: 127.0.0.1, port: {port}}}\n"
        "store: {url: 'sqlite:///verity.db'}\n"
        "policy: {path: policy.yaml, reload_seconds: 0}\n"
        f"gateway:\n  public_url: 'https://127.0.0.1:{port}'\n"
        "  header_timeout_seconds: 2\n  max_header_bytes: 4096\n"
        "  routes:\n    - {name: app, host: app.test, upstream: 'http://127.0.0.1:9'}\n"
        f"  tls: {{cert_file: cert.pem, key_file: {key}, redirect_http_port: {http_port}}}\n"
    )
    return config


@dataclass
class Served:
    port: int
    http_port: int
    ca: Path

    @property
    def https(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def _wait(proc: subprocess.Popen[bytes], url: str, ca: Path, log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"verity serve exited: {log.read_text()}")
        try:
            if httpx.get(url, verify=ssl.create_default_context(cafile=ca), timeout=1).is_success:
                return
        except httpx.HTTPError:
            time.sleep(0.05)
    pytest.fail("verity serve did not start in 20 s")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("tls")
    write_pki(folder)
    port, http_port = free_port(), free_port()
    config = write_config(folder, port=port, http_port=http_port)
    log = folder / "stderr.log"
    verity = Path(sys.executable).parent / "verity"
    proc = subprocess.Popen(  # noqa: S603 - our own CLI
        [str(verity), "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL, stderr=log.open("wb"), cwd=folder,
    )  # fmt: skip
    try:
        served = Served(port, http_port, folder / "ca.pem")
        _wait(proc, f"{served.https}/healthz", served.ca, log)
        _wait(proc, f"{served.http}/healthz", served.ca, log)
        yield served
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _client(served: Served) -> httpx.Client:
    return httpx.Client(verify=ssl.create_default_context(cafile=served.ca), timeout=5)


def test_https_serves_with_hsts_on_every_response(served: Served) -> None:
    with _client(served) as client:
        health = client.get(f"{served.https}/healthz")
        unrouted = client.get(f"{served.https}/nothing-here")
    assert health.status_code == 200
    assert health.headers["strict-transport-security"] == HSTS
    assert unrouted.status_code == 404
    assert unrouted.headers["strict-transport-security"] == HSTS
    with _client(served) as client:  # a routed request and a HEAD (the fast path)
        routed = client.get(f"{served.https}/x", headers={"Host": "app.test"})
        head = client.head(f"{served.https}/x", headers={"Host": "app.test"})
    assert (routed.status_code, head.status_code) == (401, 401)
    assert routed.headers["strict-transport-security"] == HSTS
    assert head.headers["strict-transport-security"] == HSTS
    assert head.content == b""
    assert head.headers["content-length"] == routed.headers["content-length"]


def _handshake(port: int, *, maximum: ssl.TLSVersion) -> str | None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer old versions at all
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = maximum
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw) as tls,
    ):
        return tls.version()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
def test_tls_1_0_and_1_1_are_refused(served: Served) -> None:
    assert _handshake(served.port, maximum=ssl.TLSVersion.TLSv1_2) == "TLSv1.2"  # control
    for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _handshake(served.port, maximum=version)


def test_plain_http_redirects_308_to_https_same_host_path_query(served: Served) -> None:
    response = httpx.get(f"{served.http}/a/b%20c?x=1&y=%2F", timeout=5)
    assert response.status_code == 308
    assert response.headers["location"] == f"{served.https}/a/b%20c?x=1&y=%2F"
    assert "strict-transport-security" not in response.headers
    routed = httpx.get(f"{served.http}/p", headers={"host": "app.test:80"}, timeout=5)
    assert routed.headers["location"] == f"https://app.test:{served.port}/p"


def test_open_redirect_spoofed_host_is_refused(served: Served) -> None:
    for host in ("evil.example", "evil.example:443", "127.0.0.1@evil.example", "app.test.evil"):
        response = httpx.get(f"{served.http}/login", headers={"host": host}, timeout=5)
        assert response.status_code == 400, host
        assert "location" not in response.headers


def test_health_stays_reachable_over_plain_http(served: Served) -> None:
    response = httpx.get(f"{served.http}/healthz", headers={"host": "anything"}, timeout=5)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_open_redirect_duplicate_or_odd_targets_are_refused() -> None:
    redirect = HttpsRedirect(hosts={"gw.test"}, https_port=443)
    ok = {"path": "/x", "raw_path": b"/x", "query_string": b"", "headers": [(b"host", b"gw.test")]}
    assert redirect.location(ok) == "https://gw.test/x"
    twice = {**ok, "headers": [(b"host", b"gw.test"), (b"host", b"evil.example")]}
    assert redirect.location(twice) is None
    assert redirect.location({**ok, "raw_path": b"*"}) is None
    assert redirect.location({**ok, "raw_path": b"/\r\nSet-Cookie:x"}) is None


runner = CliRunner()


class _NoGateway:
    async def __call__(self, scope: object, receive: object, send: object) -> None:
        raise AssertionError("not called")


@pytest.mark.parametrize("key", ["missing.pem", "other-key.pem"])
def test_bad_key_is_a_clean_config_error_naming_the_key_path(tmp_path: Path, key: str) -> None:
    write_pki(tmp_path)
    config = write_config(tmp_path, port=8443, http_port=8080, key=key)
    result = runner.invoke(app, ["--config", str(config), "--check"])
    assert result.exit_code == 1
    assert "gateway.tls.key_file" in result.output
    assert "Traceback" not in result.output
    assert "PRIVATE KEY" not in result.output


def test_uvicorn_options_carry_tls_and_the_redirect_listener_does_not(tmp_path: Path) -> None:
    write_pki(tmp_path)
    config = load_serve_config(write_config(tmp_path, port=8443, http_port=8080))
    options = uvicorn_options(config, access_log=False)
    assert options["ssl_certfile"] == str(tmp_path / "cert.pem")
    assert options["ssl_keyfile"] == str(tmp_path / "key.pem")
    context = options["ssl_context_factory"](None, None)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    redirect = redirect_options(config, _NoGateway())  # type: ignore[arg-type]
    assert redirect is not None
    assert redirect["port"] == 8080
    assert not any(key.startswith("ssl_") for key in redirect)


def test_tls_and_redirect_listeners_cut_slowloris_and_huge_headers(served: Served) -> None:
    context = ssl.create_default_context(cafile=served.ca)
    head = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    raw = socket.create_connection(("127.0.0.1", served.port), timeout=5)
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(head)  # the head never ends
        started = time.monotonic()
        answer = tls.recv(200)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert time.monotonic() - started < 4
    raw = socket.create_connection(("127.0.0.1", served.port), timeout=5)
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(head + b"X-Big: " + b"a" * 20000)
        assert tls.recv(200).startswith(b"HTTP/1.1 431 ")
    with socket.create_connection(("127.0.0.1", served.http_port), timeout=5) as plain:
        plain.sendall(head)  # the plain-HTTP redirect listener: the same bounds
        assert plain.recv(200).startswith(b"HTTP/1.1 408 ")
