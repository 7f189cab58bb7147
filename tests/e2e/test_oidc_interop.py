"""Interop: Verity's relying party against panva/oidc-provider (npm), a third-party
OpenID Provider, started with node on 127.0.0.1 (tests/e2e/oidc_provider/provider.mjs).

Covers the login through the provider's own interaction pages, claims mapping, signing
key rotation (provider restarted with a new key set), RP-initiated logout and
back-channel logout revoking the server-side session.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
from jwt.algorithms import ECAlgorithm
from pydantic import SecretStr

from tests.conftest import service_unavailable
from tests.gateway.servers import ThreadServer, free_port
from tests.identity.oidc.harness import RP, gateway_app
from verity.config import StoreConfig
from verity.identity.config import ClaimMapping, JwksPolicy
from verity.identity.dev import generate_private_key
from verity.identity.oidc import LoginConfig, LoginService, ProviderConfig
from verity.store import open_stores

pytestmark = pytest.mark.services
HERE = Path(__file__).resolve().parent / "oidc_provider"
CLIENT_ID = "verity-e2e"
USERS = {"alice": {"email": "alice@example.com", "email_verified": True, "name": "Alice",
                   "groups": ["engineers", "oncall"], "realm_access": {"roles": ["admin"]}}}  # fmt: skip


def ensure_provider_installed() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        service_unavailable("node/npm", "node and npm are needed to run oidc-provider")
    if not (HERE / "node_modules" / "oidc-provider").is_dir():
        try:
            result = subprocess.run(  # noqa: S603 - fixed arguments
                # npm ci: exactly package-lock.json (pinned versions and integrity hashes)
                [npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, capture_output=True,
                timeout=180, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            service_unavailable("npm", "npm ci timed out")
        if result.returncode != 0:
            service_unavailable("npm", result.stderr.decode(errors="replace")[-300:])
    return node


def private_jwks() -> dict[str, Any]:
    jwk: dict[str, Any] = ECAlgorithm.to_jwk(generate_private_key("ES256"), as_dict=True)
    jwk.update(alg="ES256", use="sig", kid=f"es-{secrets.token_hex(4)}")
    return {"keys": [jwk]}


class NodeProvider:
    """oidc-provider in a node subprocess; ``restart(jwks)`` rotates its signing keys."""

    def __init__(self, node: str, tmp: Path, *, port: int, rp_url: str) -> None:
        self.node, self.tmp, self.port = node, tmp, port
        self.issuer = f"http://127.0.0.1:{port}"
        self.settings = {"port": port, "issuer": self.issuer, "rp_url": rp_url,
                         "client_id": CLIENT_ID, "client_secret": secrets.token_urlsafe(24),
                         "cookie_key": secrets.token_urlsafe(24), "users": USERS}  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None
        self.log = tmp / "provider.log"

    def start(self, jwks: dict[str, Any]) -> None:
        config = self.tmp / "provider.json"
        config.write_text(json.dumps({**self.settings, "jwks": jwks}))
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - fixed arguments
                [self.node, str(HERE / "provider.mjs"), str(config)], cwd=HERE,
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"oidc-provider exited: {self.log.read_text()[-2000:]}")
            try:
                httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=1)
            except httpx.TransportError:
                time.sleep(0.05)
            else:
                return
        raise RuntimeError("oidc-provider did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def restart(self, jwks: dict[str, Any]) -> None:
        self.stop()
        self.start(jwks)


class FormParser(HTMLParser):
    """The first form of a page: its action and its named inputs/buttons."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None:
            self.action = values.get("action", "")
        elif tag == "input" and "name" in values:
            self.fields[values["name"]] = values.get("value", "")


def browse(client: httpx.Client, url: str, *, stop_at: str, login: str = "alice") -> httpx.Response:
    """Follow redirects and submit the provider's forms (login, consent, logout) until the
    browser reaches a URL starting with ``stop_at``; returns that response."""
    response = client.get(url)
    for _ in range(25):
        if response.status_code in (301, 302, 303):
            url = urljoin(str(response.url), response.headers["location"])
            if url.startswith(stop_at):
                return client.get(url)
            response = client.get(url)
            continue
        form = FormParser()
        form.feed(response.text)
        if response.status_code != 200 or form.action is None:
            return response
        data = {**form.fields, "login": login, "password": "any", "logout": "yes"}
        if form.fields.get("prompt") == "consent":
            data = form.fields
        response = client.post(urljoin(str(response.url), form.action), data=data)
    raise AssertionError("the login did not finish in 25 steps")


@dataclass
class Stack:
    rp: RP
    provider: NodeProvider


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    node = ensure_provider_installed()
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    provider_config = ProviderConfig(
        name="node", issuer=issuer, client_id=CLIENT_ID, client_secret="placeholder",
        scopes=("openid", "email", "profile", "groups"), algorithms=("ES256",),
        claims=ClaimMapping(roles="realm_access.roles"),
        jwks=JwksPolicy(refetch_interval_seconds=0),
    )  # fmt: skip
    with open_stores(StoreConfig(url=f"sqlite:///{tmp_path}/verity.db")) as stores:
        holder: dict[str, LoginService] = {}

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            await gateway_app(holder["service"])(scope, receive, send)

        with ThreadServer(app) as server:
            provider = NodeProvider(node, tmp_path, port=port, rp_url=server.url)
            secret = str(provider.settings["client_secret"])
            config = LoginConfig(
                providers=(
                    provider_config.model_copy(update={"client_secret": SecretStr(secret)}),
                ),
                cache_seconds=0,
            )
            holder["service"] = service = LoginService.from_stores(config, stores)
            try:
                provider.start(private_jwks())
                with httpx.Client(base_url=server.url, timeout=10) as client:
                    yield Stack(RP(service, server.url, client, None), provider)
            finally:
                provider.stop()
                service.close()


def login(stack: Stack, client: httpx.Client) -> httpx.Response:
    return browse(client, f"{stack.rp.url}/app", stop_at=f"{stack.rp.url}/app")


def test_login_and_claims_mapping_against_oidc_provider(stack: Stack) -> None:
    rp = stack.rp
    page = login(stack, rp.client)
    assert page.status_code == 200, page.text[:500]
    assert page.json() == {"id": "alice", "groups": ["engineers", "oncall"], "roles": ["admin"],
                           "mfa": False}  # fmt: skip
    principal = rp.principal(rp.client.cookies["verity_session"])
    assert principal is not None
    assert principal.email == "alice@example.com"
    assert isinstance(principal.claims.get("sid"), str)
    assert principal.auth_time is not None


def test_logout_backchannel_and_key_rotation_against_oidc_provider(stack: Stack) -> None:
    rp = stack.rp
    assert login(stack, rp.client).status_code == 200
    first = rp.client.cookies["verity_session"]
    with httpx.Client(base_url=rp.url, timeout=10) as other:
        assert login(stack, other).status_code == 200
        second = other.cookies["verity_session"]
        # Back-channel logout: ending the session at the provider revokes ours at once.
        end = browse(other, f"{stack.provider.issuer}/session/end", stop_at=rp.url)
        assert end.status_code < 500
        assert rp.principal(second) is None
        assert other.get("/app").status_code == 302
    assert rp.principal(first) is not None  # another browser, another IdP session

    # RP-initiated logout: end_session with id_token_hint, back to post_logout_redirect_uri.
    assert rp.client.get("/verity/logout").status_code == 200  # GET: a confirmation only
    assert rp.principal(first) is not None
    answer = rp.logout()
    location = answer.headers["location"]
    assert location.startswith(f"{stack.provider.issuer}/session/end?")
    assert "id_token_hint=" in location
    assert rp.principal(first) is None
    landed = browse(rp.client, location, stop_at=f"{rp.url}/")
    assert str(landed.url).startswith(f"{rp.url}/")

    # Key rotation: the provider restarts with a new key set; a new login verifies.
    old = rp.service.providers["node"].id_tokens.jwks_status()
    stack.provider.restart(private_jwks())
    with httpx.Client(base_url=rp.url, timeout=10) as third:
        assert login(stack, third).status_code == 200
        assert rp.principal(third.cookies["verity_session"]) is not None
    new = rp.service.providers["node"].id_tokens.jwks_status()
    assert old is not None
    assert new is not None
    assert set(new.key_ids).isdisjoint(old.key_ids)
