"""A real nginx (Debian package) in front of a sample app, with Verity forward-auth.

nginx runs deploy/nginx/verity-forward-auth.conf with run-time ports; Verity runs as
``python -m verity.cli.serve`` (the ``verity serve`` command) in a subprocess; the sample
app is uvicorn in a thread. Everything listens on 127.0.0.1 and stops in teardown.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import debian_tool
from tests.gateway.servers import ThreadServer, free_port
from verity.gateway.headers import UPSTREAM_CLEARED_HEADERS
from verity.identity.dev import generate_private_key, mint, public_jwk, write_private_key
from verity.integrations import assertion

pytestmark = pytest.mark.services
ROOT = Path(__file__).resolve().parents[2]
NGINX = "/usr/sbin/nginx"
NGINX_PACKAGE = "nginx=1.22.1-9*"  # Debian 12's: the version these tests were written against
HOST = "app.example.com"
ISSUER = "https://idp.e2e.test"
POLICY = """
version: 1
rules:
  - name: public
    resources: [{host: app.example.com, paths: ["/public/**"]}]
    allow: {}
  - name: engineers
    resources: [{host: app.example.com}]
    allow: {groups: [engineers]}
    hint: ask your manager for the engineers group
"""
MAIN_CONF = """
{user}
worker_processes 1;
pid {dir}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {dir}/site.conf;
}}
"""


def ensure_nginx() -> str:
    return debian_tool(NGINX, NGINX_PACKAGE)


class SampleApp:
    """The protected application: echoes what it was given."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers: dict[str, list[str]] = {}
        for key, value in scope["headers"]:
            headers.setdefault(key.decode(), []).append(value.decode())
        seen = {"path": scope["path"], "raw_path": scope["raw_path"].decode("latin-1"),
                "method": scope["method"], "headers": headers}  # fmt: skip
        body = json.dumps(seen).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})


def wait_until_up(url: str, process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            httpx.get(url, timeout=1)
        except httpx.TransportError:
            time.sleep(0.1)
        else:
            return
    raise RuntimeError(f"{what} did not start at {url}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


@dataclass
class Stack:
    url: str
    verity_url: str
    key: Any

    def token(self, subject: str, groups: list[str]) -> str:
        return mint(self.key, alg="ES256", kid="e2e", issuer=ISSUER, audience="verity",
                    subject=subject, claims={"groups": groups})  # fmt: skip


def write_verity(
    tmp: Path,
    verity_port: int,
    key: Any,
    *,
    policy: str = POLICY,
    routes: str = f"[{{name: app, host: {HOST}}}]",
    audited: bool = False,
) -> Path:
    """A ``verity.yaml`` (and its policy, IdP key set and assertion key) in ``tmp``:
    tokens of ``ISSUER`` signed by ``key``, nginx on 127.0.0.1 as the trusted proxy;
    ``audited`` adds a SQLite store and audit log in ``tmp``."""
    (tmp / "policy.yaml").write_text(policy)
    (tmp / "idp.jwks").write_text(json.dumps({"keys": [public_jwk(key, "ES256", "e2e")]}))
    write_private_key(tmp / "assertion.pem", generate_private_key("ES256"))
    stores = (
        f"store: {{url: 'sqlite:///{tmp}/verity.db'}}\naudit: {{url: 'sqlite:///{tmp}/audit.db'}}\n"
        if audited
        else ""
    )
    config = tmp / "verity.yaml"
    config.write_text(
        f"server: {{host: 127.0.0.1, port: {verity_port}, trusted_proxies: [127.0.0.1/32], trusted_hops: 1}}\n"
        "policy: {path: policy.yaml, reload_seconds: 0}\n"
        f"{stores}"
        f"identity: {{issuers: [{{issuer: '{ISSUER}', audiences: [verity], algorithms: [ES256], jwks_file: idp.jwks}}]}}\n"
        f"gateway: {{public_url: 'http://127.0.0.1:{verity_port}', assertion: {{signing_key: assertion.pem}},\n"
        f"  routes: {routes}}}\n"
    )
    return config


def write_nginx(tmp: Path, nginx_port: int, verity_port: int, app_port: int) -> Path:
    site = (ROOT / "deploy/nginx/verity-forward-auth.conf").read_text()
    site = site.replace("127.0.0.1:8080", f"127.0.0.1:{verity_port}")
    site = site.replace("127.0.0.1:9000", f"127.0.0.1:{app_port}")
    site = site.replace("listen 8000;", f"listen 127.0.0.1:{nginx_port};")
    (tmp / "site.conf").write_text(site)
    user = "user root;" if os.geteuid() == 0 else ""
    (tmp / "nginx.conf").write_text(MAIN_CONF.format(dir=tmp, user=user))
    return tmp / "nginx.conf"


@contextmanager
def verity_behind_nginx(
    tmp: Path, config: Path, verity_port: int, nginx_port: int, app_port: int
) -> Iterator[None]:
    """``verity serve --config config`` and nginx (the shipped site, in front of the app
    on ``app_port``), both up until the block ends; their logs are in ``tmp``."""
    nginx = ensure_nginx()
    verity_log, nginx_log = tmp / "verity.log", tmp / "nginx.log"
    with verity_log.open("wb") as out:
        verity = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "verity.cli.serve", "--config", str(config)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    conf = write_nginx(tmp, nginx_port, verity_port, app_port)
    with nginx_log.open("wb") as out:
        proxy = subprocess.Popen(  # noqa: S603
            [nginx, "-c", str(conf), "-p", str(tmp), "-g", "daemon off;"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_until_up(f"http://127.0.0.1:{verity_port}/healthz", verity, "verity", verity_log)
        wait_until_up(f"http://127.0.0.1:{nginx_port}/", proxy, "nginx", nginx_log)
        yield
    finally:
        stop(proxy)
        stop(verity)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    ensure_nginx()
    tmp = tmp_path_factory.mktemp("nginx-e2e")
    key = generate_private_key("ES256")
    nginx_port, verity_port = free_port(), free_port()
    with ThreadServer(SampleApp()) as app:
        config = write_verity(tmp, verity_port, key)
        with verity_behind_nginx(tmp, config, verity_port, nginx_port, app.port):
            yield Stack(f"http://127.0.0.1:{nginx_port}", f"http://127.0.0.1:{verity_port}", key)


def get(stack: Stack, path: str = "/", **headers: str) -> httpx.Response:
    return httpx.get(stack.url + path, headers={"Host": HOST, **headers}, timeout=10)


def test_allowed_request_reaches_the_app_with_a_verifiable_assertion(stack: Stack) -> None:
    response = get(stack, "/docs", Authorization=f"Bearer {stack.token('alice', ['engineers'])}")
    assert response.status_code == 200
    seen = response.json()["headers"]
    assert seen["x-verity-user"] == ["alice"]
    assert seen["x-verity-groups"] == ["engineers"]
    assert "authorization" not in seen
    claims = assertion.verify(
        seen["x-verity-assertion"][0], issuer=stack.verity_url, audience="app",
        jwks_url=f"{stack.verity_url}/.well-known/verity/jwks.json", method="GET", path="/docs",
    )  # fmt: skip
    assert claims.subject == "alice"
    assert claims.decision_id == seen["x-verity-decision-id"][0]


def test_the_assertion_binds_the_request_the_app_receives_and_only_once(stack: Stack) -> None:
    """The gateway hashes the canonical path of X-Original-URI; the app, behind nginx,
    recomputes it from the path it receives: they agree. A captured assertion then fails
    for another method, and a second use of it fails too."""
    response = get(
        stack, "/docs/a%20b?x=1", Authorization=f"Bearer {stack.token('alice', ['engineers'])}"
    )
    assert response.status_code == 200
    seen = response.json()
    options: dict[str, Any] = {
        "issuer": stack.verity_url, "audience": "app",
        "jwks_url": f"{stack.verity_url}/.well-known/verity/jwks.json",
        "replay_cache": assertion.MemoryReplayCache(),
    }  # fmt: skip
    token = seen["headers"]["x-verity-assertion"][0]
    with pytest.raises(assertion.AssertionBindingError):
        assertion.verify(token, method="DELETE", path=seen["raw_path"], **options)
    claims = assertion.verify(token, method=seen["method"], path=seen["raw_path"], **options)
    assert (claims.subject, seen["raw_path"]) == ("alice", "/docs/a%20b")
    with pytest.raises(assertion.AssertionReplayError):
        assertion.verify(token, method=seen["method"], path=seen["raw_path"], **options)


def test_denied_request_is_403_with_a_decision_id(stack: Stack) -> None:
    response = get(stack, Authorization=f"Bearer {stack.token('bob', ['sales'])}")
    assert response.status_code == 403
    body = response.json()
    assert body["error"] == "access_denied"
    assert body["decision_id"] == response.headers["x-verity-decision-id"]
    assert body["hint"] == "ask your manager for the engineers group"


def test_denied_browser_gets_the_html_page(stack: Stack) -> None:
    token = stack.token("bob", ["sales"])
    response = get(stack, Authorization=f"Bearer {token}", Accept="text/html")
    assert response.status_code == 403
    assert "Decision id" in response.text


def test_unauthenticated_request_is_401_with_a_challenge(stack: Stack) -> None:
    response = get(stack)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="verity"'
    garbage = get(stack, Authorization="Bearer not-a-token")
    assert garbage.status_code == 401
    assert 'error="invalid_token"' in garbage.headers["www-authenticate"]


def test_spoofed_identity_headers_are_stripped(stack: Stack) -> None:
    token = stack.token("alice", ["engineers"])
    response = get(stack, Authorization=f"Bearer {token}", **{
        "X-Verity-User": "mallory", "X-Forwarded-User": "mallory", "Remote-User": "mallory",
        "X-Verity-Groups": "admins", "X_Verity_User": "mallory",
    })  # fmt: skip
    seen = response.json()["headers"]
    assert seen["x-verity-user"] == ["alice"]
    assert seen["x-verity-groups"] == ["engineers"]
    assert "x-forwarded-user" not in seen
    assert "remote-user" not in seen
    assert "mallory" not in json.dumps(seen)


def test_spoofed_forwarded_host_cannot_choose_the_route(stack: Stack) -> None:
    token = stack.token("bob", ["sales"])
    response = get(stack, Authorization=f"Bearer {token}", **{"X-Forwarded-Host": "elsewhere.test",
                                                              "X-Original-URI": "/public"})  # fmt: skip
    assert response.status_code == 403


def raw_get(stack: Stack, target: str, **headers: str) -> tuple[int, bytes]:
    """GET ``target`` through nginx byte for byte (httpx would resolve dot segments)."""
    host, port = stack.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.putrequest("GET", target, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", HOST)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_the_public_path_is_open_to_anonymous_requests(stack: Stack) -> None:
    status, body = raw_get(stack, "/public/y")
    assert (status, json.loads(body)["path"]) == (200, "/public/y")


@pytest.mark.parametrize(
    "target",
    [
        "/admin/x/../../public/y",
        "/admin/x%2f..%2f..%2fpublic/y",
        "/admin/x/%2e%2e/%2e%2e/public/y",
        "/admin/x%5c..%5c..%5cpublic/y",
        "/admin/settings%252f..%252f..%252fpublic%252fy",
        "/admin/%25%32%65%25%32%65/public/y",
    ],
    ids=["dot_segments", "%2f..%2f", "%2e%2e", "%5c..", "%252f", "%25%32%65"],
)
def test_nginx_forwarded_raw_target_cannot_be_decided_as_its_normalised_path(
    stack: Stack, target: str
) -> None:
    # nginx forwards the raw target; Verity used to decide on /public/y and allow it.
    status, body = raw_get(stack, target)
    assert status == 400
    assert json.loads(body)["error"] == "bad_request"  # Verity's answer, not the app's


@pytest.mark.parametrize(
    "target", ["/public/..;/admin", "/public/x/../../admin;x=1/settings", "/%EF%BD%81dmin/x"]
)
def test_nginx_forwarded_parameters_and_full_width_spellings_are_refused(
    stack: Stack, target: str
) -> None:
    assert raw_get(stack, target)[0] == 400


def test_nginx_forwarded_method_override_is_refused(stack: Stack) -> None:
    assert raw_get(stack, "/public/y", **{"X-HTTP-Method-Override": "DELETE"})[0] == 400
    assert raw_get(stack, "/public/y?_method=DELETE")[0] == 400


def test_nginx_clears_every_identity_header_a_client_sends(stack: Stack) -> None:
    spoofed = {name: "mallory" for name in UPSTREAM_CLEARED_HEADERS}
    spoofed["Forwarded"] = "for=6.6.6.6;by=mallory"
    status, body = raw_get(stack, "/public/y", **spoofed)
    assert status == 200
    seen = json.loads(body)["headers"]
    assert "mallory" not in json.dumps(seen)
    # anonymous: no identity, only Verity's decision id
    assert sorted(UPSTREAM_CLEARED_HEADERS & seen.keys()) == ["x-verity-decision-id"]


COMPANION_KEY = b"e2e-companion-key-" + b"0" * 32


@pytest.fixture(scope="module")
def companion_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The shipped site in front of a route with ``assertion_companion_key_file``."""
    ensure_nginx()
    tmp = tmp_path_factory.mktemp("nginx-e2e-companion")
    (tmp / "companion.key").write_bytes(COMPANION_KEY + b"\n")
    key = generate_private_key("ES256")
    nginx_port, verity_port = free_port(), free_port()
    routes = f"[{{name: app, host: {HOST}, assertion_companion_key_file: companion.key}}]"
    with ThreadServer(SampleApp()) as app:
        config = write_verity(tmp, verity_port, key, routes=routes)
        with verity_behind_nginx(tmp, config, verity_port, nginx_port, app.port):
            yield Stack(f"http://127.0.0.1:{nginx_port}", f"http://127.0.0.1:{verity_port}", key)


def test_a_reused_assertion_and_its_companion_reach_the_app_through_nginx(
    companion_stack: Stack,
) -> None:
    """nginx passes X-Verity-Request on (and overwrites a client's); the app verifies
    each request with its companion; a GET's companion does not open a DELETE."""
    token = companion_stack.token("alice", ["engineers"])
    seen = [
        get(companion_stack, path, Authorization=f"Bearer {token}",
            **{"X-Verity-Request": "forged.value"}).json()
        for path in ("/docs/a", "/docs/b")
    ]  # fmt: skip
    assertions = [s["headers"]["x-verity-assertion"][0] for s in seen]
    assert assertions[0] == assertions[1]  # one signature for both requests
    replay = assertion.MemoryReplayCache()
    options: dict[str, Any] = {
        "issuer": companion_stack.verity_url, "audience": "app", "replay_cache": replay,
        "jwks_url": f"{companion_stack.verity_url}/.well-known/verity/jwks.json",
        "companion_key": COMPANION_KEY,
    }  # fmt: skip
    for one in seen:
        companions = one["headers"]["x-verity-request"]
        assert companions != ["forged.value"]
        assert len(companions) == 1
        with pytest.raises(assertion.AssertionBindingError):
            assertion.verify(assertions[0], method="DELETE", path=one["raw_path"],
                             companion=companions[0], **options)  # fmt: skip
        claims = assertion.verify(assertions[0], method="GET", path=one["raw_path"],
                                  companion=companions[0], **options)  # fmt: skip
        assert claims.decision_id == one["headers"]["x-verity-decision-id"][0]
    with pytest.raises(assertion.AssertionCompanionError):
        assertion.verify(assertions[0], method="GET", path="/docs/a", **options)
