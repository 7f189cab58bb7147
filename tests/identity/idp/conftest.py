"""A real provider on 127.0.0.1 (uvicorn, random port), its stores, and a scripted browser."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import uvicorn
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.routing import Mount

from verity.config import StoreConfig
from verity.identity.idp import (
    IdentityProvider,
    IdpClient,
    IdpConfig,
    SqliteUserStore,
    create_app,
    hash_password,
)
from verity.identity.idp.totp import new_secret
from verity.store.factory import Stores, open_stores
from verity.store.sqlite.db import SqliteDatabase

PASSWORD = "correct horse battery staple"
CLIENT_SECRET = "s" * 40
CONFIDENTIAL = "webapp"
PUBLIC = "cli"
REDIRECT = "http://127.0.0.1:9999/callback"


class Clock:
    """A settable clock, starting at the real time (TOTP and tokens use it)."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class Server:
    """uvicorn serving ``app`` on a pre-bound socket, in a background thread."""

    def __init__(self, sock: socket.socket, app: Starlette) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[sock])), daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@dataclass
class Idp:
    """The running provider and everything a test needs to drive it."""

    base: str
    issuer: str
    provider: IdentityProvider
    users: SqliteUserStore
    stores: Stores
    clock: Clock
    client: httpx.Client
    totp_secret: str = field(default="", repr=False)

    def add_user(self, email: str, *, mfa: bool = False, **kwargs: Any) -> str:
        secret = new_secret() if mfa else None
        self.users.add(email, password_hash=hash_password(PASSWORD), totp_secret=secret, **kwargs)
        return secret or ""


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_config(issuer: str, **overrides: Any) -> IdpConfig:
    clients = (
        IdpClient(
            client_id=CONFIDENTIAL,
            client_secret=SecretStr(CLIENT_SECRET),
            redirect_uris=(REDIRECT,),
        ),
        IdpClient(client_id=PUBLIC, redirect_uris=(REDIRECT, "http://127.0.0.1:9999/cb?x=1")),
    )
    return IdpConfig(issuer=issuer, clients=clients, **overrides)


@pytest.fixture
def idp_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
def idp(tmp_path: Path, clock: Clock, idp_overrides: dict[str, Any]) -> Iterator[Idp]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    issuer = base + "/idp"
    stores = open_stores(StoreConfig(url=f"sqlite:///{tmp_path / 'verity.db'}"))
    db = SqliteDatabase(tmp_path / "verity.db")
    users = SqliteUserStore(db)
    provider = IdentityProvider(
        make_config(issuer, **idp_overrides),
        users=users,
        keys=stores.keys,
        counters=stores.counters,
        revocations=stores.revocations,
        clock=clock,
    )
    server = Server(sock, Starlette(routes=[Mount("/idp", app=create_app(provider))]))
    client = httpx.Client(base_url=base, timeout=10, follow_redirects=False, trust_env=False)
    try:
        yield Idp(base, issuer, provider, users, stores, clock, client)
    finally:
        client.close()
        server.stop()
        sock.close()
        db.close()
        stores.close()


_HIDDEN = re.compile(r'name="(tx|csrf)" value="([^"]*)"')


def hidden_fields(html: str) -> dict[str, str]:
    return dict(_HIDDEN.findall(html))


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@dataclass
class Login:
    """One browser login: authorize, then forms, collecting the final redirect."""

    idp: Idp
    client_id: str = PUBLIC
    redirect_uri: str = REDIRECT
    state: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    nonce: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    verifier: str = ""
    fields: dict[str, str] = field(default_factory=dict)

    def authorize(self, **extra: str) -> httpx.Response:
        self.verifier, challenge = pkce_pair()
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": "openid email groups",
            "state": self.state,
            "nonce": self.nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        params.update(extra)
        response = self.idp.client.get("/idp/authorize", params=params)
        if response.status_code == 200:
            self.fields = hidden_fields(response.text)
        return response

    def password(self, email: str, password: str = PASSWORD) -> httpx.Response:
        form = {**self.fields, "email": email, "password": password}
        response = self.idp.client.post("/idp/login", data=form)
        if response.status_code != 303:
            self.fields = hidden_fields(response.text) or self.fields
        return response

    def otp(self, code: str) -> httpx.Response:
        return self.idp.client.post("/idp/login/otp", data={**self.fields, "code": code})

    def code(self, email: str) -> str:
        """Log in (password only) and return the authorization code."""
        self.authorize()
        response = self.password(email)
        assert response.status_code == 303, response.text
        return query_of(response.headers["location"])["code"]

    def exchange(self, code: str, *, verifier: str | None = None, **extra: str) -> httpx.Response:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "client_id": self.client_id,
            "code_verifier": self.verifier if verifier is None else verifier,
        }
        form.update(extra)
        return self.idp.client.post("/idp/token", data=form)
