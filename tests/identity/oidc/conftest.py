"""Fixtures: the fake IdP and a relying party (LoginService + a protected page) on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway.servers import ThreadServer
from verity.config import StoreConfig
from verity.identity.config import ClaimMapping, JwksPolicy
from verity.identity.oidc import LoginConfig, LoginService, ProviderConfig
from verity.store import Stores, open_stores

from .fake_idp import CLIENT_ID, CLIENT_SECRET, FakeIdP
from .harness import RP, gateway_app

__all__ = ["RP", "make_rp", "provider_config"]


def provider_config(idp: FakeIdP, **overrides: Any) -> ProviderConfig:
    settings: dict[str, Any] = {
        "name": "fake",
        "issuer": idp.issuer,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "algorithms": ["ES256"],
        "claims": ClaimMapping(roles="realm_access.roles"),
        "jwks": JwksPolicy(refetch_interval_seconds=0),
        **overrides,
    }
    return ProviderConfig(**settings)


@pytest.fixture(scope="session")
def idp_server() -> Iterator[FakeIdP]:
    fake = FakeIdP()
    with ThreadServer(fake.app) as server:
        fake.issuer = server.url
        yield fake


@pytest.fixture
def idp(idp_server: FakeIdP) -> FakeIdP:
    idp_server.reset()
    return idp_server


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    with open_stores(StoreConfig(url=f"sqlite:///{tmp_path}/verity.db")) as opened:
        yield opened


@contextmanager
def make_rp(idp: FakeIdP, stores: Stores, **login: Any) -> Iterator[RP]:
    providers = login.pop("providers", None) or (provider_config(idp),)
    config = LoginConfig(**{"providers": providers, "cache_seconds": 0, **login})
    service = LoginService.from_stores(config, stores)
    with ThreadServer(gateway_app(service)) as server, httpx.Client(base_url=server.url) as client:
        yield RP(service, server.url, client, idp)
    service.close()


@pytest.fixture
def rp(idp: FakeIdP, stores: Stores) -> Iterator[RP]:
    with make_rp(idp, stores) as made:
        yield made
