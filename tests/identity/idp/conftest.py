"""A real provider on 127.0.0.1 (uvicorn, random port) on SQLite or PostgreSQL, its stores,
and a scripted browser; several providers sharing one database are several nodes."""

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
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.cookiejar import CookieJar
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
    IdpStorage,
    UserStore,
    create_app,
    hash_password,
    open_idp_storage,
)
from verity.identity.idp.totp import new_secret
from verity.store.factory import Stores, open_stores

PASSWORD = "correct horse battery staple"
CLIENT_SECRET = "s" * 40
CONFIDENTIAL = "webapp"
PUBLIC = "cli"
REDIRECT = "http://127.0.0.1:9999/callback"
GATEWAY_AUDIENCE = "verity"
SCOPE = "openid email profile groups roles offline_access"  # every claim, refresh tokens


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
    users: UserStore
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
            audiences=(GATEWAY_AUDIENCE,),  # like the gateway's own login client
        ),
        IdpClient(client_id=PUBLIC, redirect_uris=(REDIRECT, "http://127.0.0.1:9999/cb?x=1")),
    )
    return IdpConfig(issuer=issuer, **{"clients": clients, **overrides})


@pytest.fixture
def idp_overrides() -> dict[str, Any]:
    return {}


def bind() -> tuple[socket.socket, str]:
    """A listening socket on 127.0.0.1 (random port) and its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


@contextmanager
def backend(
    request: pytest.FixtureRequest, kind: str, *, redis: bool = False
) -> Iterator[tuple[Stores, IdpStorage]]:
    """One node's stores and IdP storage: ``sqlite`` (a file in tmp_path) or ``postgresql``
    (the test's schema); nodes opened in one test share the database. ``redis`` moves
    counters (lockout) to Redis, under the test's key prefix."""
    schema: str | None = None
    if kind == "sqlite":
        url = f"sqlite:///{request.getfixturevalue('tmp_path') / 'verity.db'}"
    else:
        url = request.getfixturevalue("postgres_dsn")
        schema = request.getfixturevalue("pg_schema")
    redis_url = request.getfixturevalue("redis_url") if redis else None
    prefix = request.getfixturevalue("redis_prefix") if redis else "verity:"
    config = StoreConfig(url=url, redis_url=redis_url)
    with open_stores(config, schema=schema, redis_prefix=prefix) as stores:
        storage = open_idp_storage(url, schema=schema, max_size=4)
        try:
            yield stores, storage
        finally:
            storage.close()


@contextmanager
def running_idp(
    stores: Stores,
    storage: IdpStorage,
    clock: Clock,
    overrides: dict[str, Any],
    *,
    issuer: str | None = None,
    cookies: CookieJar | None = None,
) -> Iterator[Idp]:
    """A provider on its own uvicorn server (one node); ``issuer`` defaults to its URL,
    ``cookies`` lets several nodes' clients share one browser's cookie jar."""
    sock, base = bind()
    issuer = issuer or base + "/idp"
    provider = IdentityProvider(
        make_config(issuer, **overrides),
        users=storage.users,
        state=storage.state,
        keys=stores.keys,
        counters=stores.counters,
        revocations=stores.revocations,
        clock=clock,
    )
    server = Server(sock, Starlette(routes=[Mount("/idp", app=create_app(provider))]))
    client = httpx.Client(
        base_url=base, timeout=10, follow_redirects=False, trust_env=False, cookies=cookies
    )
    try:
        yield Idp(base, issuer, provider, storage.users, stores, clock, client)
    finally:
        client.close()
        server.stop()
        sock.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def idp(
    request: pytest.FixtureRequest, clock: Clock, idp_overrides: dict[str, Any]
) -> Iterator[Idp]:
    """The provider on SQLite (users and flow state in the store's file) or PostgreSQL."""
    with (
        backend(request, request.param) as (stores, storage),
        running_idp(stores, storage, clock, idp_overrides) as node,
    ):
        yield node


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
            "scope": SCOPE,
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
