"""Gateway fixtures: an ES256 issuer, tokens, a policy, a recording upstream, a gateway."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from verity.config import ServerConfig
from verity.gateway import AssertionSigner, GatewayConfig, build_gateway
from verity.gateway.app import Gateway
from verity.identity import IdentityConfig, IssuerConfig, TokenVerifier, keyset_from_jwks
from verity.identity.dev import generate_private_key, mint, public_jwk
from verity.policy import compile_policy, load_policy

ISSUER = "https://idp.test"
AUDIENCE = "verity"
GATEWAY_URL = "https://gateway.test"

POLICY = """
version: 1
rules:
  - name: public
    resources: [{host: app.test, paths: ["/public/**"]}]
    allow: {}
  - name: engineers-app
    resources: [{host: app.test}]
    allow: {groups: [engineers]}
    hint: ask for the engineers group
  - name: engineers-forward-auth
    resources: [{host: fa.test}]
    allow: {groups: [engineers]}
  - name: engineers-test-upstreams
    resources: [{hosts: [small.test, slow.test, down.test]}]
    allow: {groups: [engineers]}
"""

ROUTES = [
    {"name": "app", "host": "app.test", "upstream": "http://upstream.test"},
    {"name": "fa", "host": "fa.test"},
]


@dataclass
class Issuer:
    """A test identity provider with one ES256 key."""

    key: Any
    kid: str = "idp-key-1"
    verifier: TokenVerifier = field(init=False)

    def __post_init__(self) -> None:
        jwks = {"keys": [public_jwk(self.key, "ES256", self.kid)]}
        config = IssuerConfig(issuer=ISSUER, audiences=[AUDIENCE], algorithms=("ES256",))
        self.verifier = TokenVerifier(config, keys=keyset_from_jwks(jwks, ("ES256",)))

    def token(
        self, subject: str = "alice", groups: tuple[str, ...] = ("engineers",), **claims: Any
    ) -> str:
        extra = {"groups": list(groups), "email": f"{subject}@example.com", **claims}
        return mint(
            self.key, alg="ES256", kid=self.kid, issuer=ISSUER, audience=AUDIENCE,
            subject=subject, claims=extra,
        )  # fmt: skip


@pytest.fixture(scope="session")
def issuer() -> Issuer:
    return Issuer(generate_private_key("ES256"))


@pytest.fixture(scope="session")
def signer() -> AssertionSigner:
    return AssertionSigner(generate_private_key("ES256"), issuer=GATEWAY_URL)  # type: ignore[arg-type]


@dataclass
class Seen:
    """One request as the upstream saw it."""

    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name.lower()]


class RecordingUpstream:
    """An ASGI app that records every request and echoes a JSON summary."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        raw_path = scope.get("raw_path") or scope["path"].encode()
        seen = Seen(
            scope["method"],
            raw_path.decode("latin-1"),
            scope["query_string"].decode(),
            headers,
            body,
        )
        self.seen.append(seen)
        payload = json.dumps({"path": seen.path, "bytes": len(body)}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"set-cookie", b"a=1"),
                    (b"set-cookie", b"b=2"),
                    (b"connection", b"x-hop"),
                    (b"x-hop", b"1"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


@pytest.fixture
def upstream() -> RecordingUpstream:
    return RecordingUpstream()


def gateway_config(**overrides: Any) -> GatewayConfig:
    data: dict[str, Any] = {"public_url": GATEWAY_URL, "routes": ROUTES}
    data.update(overrides)
    return GatewayConfig.model_validate(data)


MakeGateway = Callable[..., Gateway]


@pytest.fixture
def make_gateway(
    issuer: Issuer, signer: AssertionSigner, upstream: RecordingUpstream
) -> MakeGateway:
    def make(
        *,
        config: GatewayConfig | None = None,
        server: ServerConfig | None = None,
        decider: Any = None,
        transport: httpx.AsyncBaseTransport | None = None,
        verifiers: list[TokenVerifier] | None = None,
        **kwargs: Any,
    ) -> Gateway:
        return build_gateway(
            config or gateway_config(),
            server=server or ServerConfig(trusted_proxies=["10.0.0.0/8"], trusted_hops=1),
            identity=IdentityConfig(),
            decider=decider or compile_policy(load_policy(POLICY)),
            verifiers=verifiers if verifiers is not None else [issuer.verifier],
            signer=signer,
            transport=transport or httpx.ASGITransport(app=upstream),
            **kwargs,
        )

    return make


@pytest.fixture
async def client(make_gateway: MakeGateway) -> AsyncIterator[httpx.AsyncClient]:
    """A client talking to the gateway in-process from 203.0.113.9 (an untrusted peer)."""
    transport = httpx.ASGITransport(app=make_gateway(), client=("203.0.113.9", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
