"""WebSocket pass-through over real sockets: the gateway under uvicorn (as ``verity serve``
runs it) in front of a real WebSocket upstream, both on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import ValidationError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from verity.cli.serve import uvicorn_options
from verity.config import ServerConfig, VerityConfig
from verity.gateway import GatewayConfig, RouteConfig
from verity.gateway.app import Gateway
from verity.gateway.inbound import read_target
from verity.gateway.websocket import sendable
from verity.gateway.websocket_handshake import websocket_target
from verity.model import AccessRequest, HttpTarget, Principal
from verity.policy import compile_policy, load_policy
from verity.request_io import problems_of

from .conftest import Issuer, MakeGateway
from .servers import SilentServer, ThreadServer, free_port, serve_options

pytestmark = pytest.mark.anyio
LIMIT = 64 * 1024  # gateway.websocket.max_message_bytes in these tests


@dataclass
class Upstream:
    """A WebSocket app: echo, report headers, close with a code, or send too much."""

    handshakes: list[dict[str, Any]] = field(default_factory=list)
    disconnects: list[int] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()  # websocket.connect
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        self.handshakes.append({"path": scope["path"], "headers": headers,
                                "subprotocols": scope["subprotocols"]})  # fmt: skip
        offered = scope["subprotocols"]
        chosen = "v2" if "v2" in offered else None  # the upstream's preference
        await send({"type": "websocket.accept", "subprotocol": chosen})
        path = scope["path"]
        if path == "/headers":
            await send({"type": "websocket.send", "text": json.dumps(headers)})
        elif path.startswith("/close/"):
            code = int(path.rsplit("/", 1)[1])
            await send({"type": "websocket.close", "code": code, "reason": "upstream says bye"})
            return
        elif path == "/big":
            await send({"type": "websocket.send", "bytes": b"x" * (LIMIT + 1)})
        await self._echo(receive, send)

    async def _echo(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                self.disconnects.append(message.get("code", 1005))
                return
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})


@dataclass
class Stack:
    gateway: str  # ws://127.0.0.1:PORT
    upstream: Upstream
    issuer: Issuer

    def token(self, **kwargs: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.issuer.token(**kwargs)}"}


def ws_config(
    upstream: str, *, websocket: dict[str, Any] | None = None, **route: Any
) -> VerityConfig:
    routes = [{"name": "ws", "host": "*", "policy_host": "app.test", "upstream": upstream,
               "connect_timeout_seconds": 1, **route}]  # fmt: skip
    return VerityConfig.model_validate(
        {
            "gateway": {
                "public_url": "https://gateway.test",
                "routes": routes,
                "websocket": {"max_message_bytes": LIMIT, **(websocket or {})},
            }
        }
    )


def gateway_for(make_gateway: MakeGateway, config: VerityConfig) -> Gateway:
    server = ServerConfig(trusted_proxies=["10.0.0.0/8"], trusted_hops=1)
    return make_gateway(config=config.gateway, server=server)


@pytest.fixture
def stack(make_gateway: MakeGateway, issuer: Issuer) -> Iterator[Stack]:
    upstream = Upstream()
    with ThreadServer(upstream, ws="websockets-sansio") as up:
        config = ws_config(up.url)
        gateway = gateway_for(make_gateway, config)
        with ThreadServer(gateway, **serve_options(config)) as gw:
            yield Stack(gw.url.replace("http://", "ws://"), upstream, issuer)


async def refused(uri: str, **kwargs: Any) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as caught:
        async with connect(uri, open_timeout=5, proxy=None, **kwargs):
            pass
    return caught.value


async def closed_with(ws: ClientConnection, timeout: float = 5) -> tuple[int | None, str]:
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), timeout)
    return ws.close_code, ws.close_reason or ""


async def test_allowed_user_echoes_text_and_binary(stack: Stack) -> None:
    async with connect(f"{stack.gateway}/echo", additional_headers=stack.token(),
                       proxy=None, open_timeout=5) as ws:  # fmt: skip
        await ws.send("hello")
        assert await asyncio.wait_for(ws.recv(), 5) == "hello"
        await ws.send(b"\x00\x01binary")
        assert await asyncio.wait_for(ws.recv(), 5) == b"\x00\x01binary"
    assert [h["path"] for h in stack.upstream.handshakes] == ["/echo"]


async def test_denied_user_gets_403_and_upstream_never_connects(stack: Stack) -> None:
    error = await refused(
        f"{stack.gateway}/echo", additional_headers=stack.token(groups=("sales",))
    )
    assert error.response.status_code == 403
    body = json.loads(error.response.body)
    assert body["error"] == "access_denied"
    assert body["decision_id"] == error.response.headers["x-verity-decision-id"]
    assert "engineers" in body["reason"]
    assert stack.upstream.handshakes == []


async def test_unauthenticated_gets_401_with_a_challenge(stack: Stack) -> None:
    error = await refused(f"{stack.gateway}/echo")
    assert error.response.status_code == 401
    assert error.response.headers["www-authenticate"].startswith("Bearer")
    assert json.loads(error.response.body)["error"] == "unauthenticated"
    assert stack.upstream.handshakes == []


async def test_bad_token_is_401_invalid_token(stack: Stack) -> None:
    error = await refused(
        f"{stack.gateway}/echo", additional_headers={"Authorization": "Bearer x.y.z"}
    )
    assert error.response.status_code == 401
    assert json.loads(error.response.body)["error"] == "invalid_token"


async def test_spoofed_identity_headers_never_reach_upstream(stack: Stack) -> None:
    spoofed = {**stack.token(subject="alice"), "X-Verity-User": "root", "X_Verity_Groups": "admins",
               "X-Forwarded-User": "root", "Remote-User": "root", "X-Forwarded-For": "1.2.3.4"}  # fmt: skip
    async with connect(f"{stack.gateway}/headers", additional_headers=spoofed,
                       proxy=None, open_timeout=5) as ws:  # fmt: skip
        seen = dict(json.loads(await asyncio.wait_for(ws.recv(), 5)))
    headers = stack.upstream.handshakes[0]["headers"]
    names = [name.lower() for name, _ in headers]
    assert seen["x-verity-user"] == "alice"
    assert names.count("x-verity-user") == 1
    assert seen["x-verity-groups"] == "engineers"
    assert "x-verity-assertion" in seen
    assert "x_verity_groups" not in names
    assert "x-forwarded-user" not in names
    assert "remote-user" not in names
    assert "authorization" not in names  # forward_authorization is off
    assert seen["x-forwarded-for"] == "127.0.0.1"  # the peer is not a trusted proxy


async def test_anonymous_access_allowed_by_policy_carries_no_identity(stack: Stack) -> None:
    async with connect(f"{stack.gateway}/public/ws", proxy=None, open_timeout=5) as ws:
        await ws.send("anonymous but public")
        assert await asyncio.wait_for(ws.recv(), 5) == "anonymous but public"
    names = [name for name, _ in stack.upstream.handshakes[0]["headers"]]
    assert "x-verity-decision-id" in names
    assert "x-verity-user" not in names  # anonymous: no identity to assert


async def test_subprotocol_offered_upstream_and_its_choice_accepted(stack: Stack) -> None:
    async with connect(f"{stack.gateway}/echo", additional_headers=stack.token(),
                       subprotocols=["v1", "v2"], proxy=None, open_timeout=5) as ws:  # type: ignore[list-item]  # fmt: skip
        assert ws.subprotocol == "v2"
    assert stack.upstream.handshakes[0]["subprotocols"] == ["v1", "v2"]
    async with connect(f"{stack.gateway}/echo", additional_headers=stack.token(),
                       subprotocols=["v1"], proxy=None, open_timeout=5) as ws:  # type: ignore[list-item]  # fmt: skip
        assert ws.subprotocol is None


async def test_upstream_close_code_and_reason_reach_the_client(stack: Stack) -> None:
    async with connect(f"{stack.gateway}/close/4001", additional_headers=stack.token(),
                       proxy=None, open_timeout=5) as ws:  # fmt: skip
        assert await closed_with(ws) == (4001, "upstream says bye")


async def test_client_close_code_reaches_upstream(stack: Stack, issuer: Issuer) -> None:
    async with connect(f"{stack.gateway}/echo", additional_headers=stack.token(),
                       proxy=None, open_timeout=5) as ws:  # fmt: skip
        await ws.send("ping")
        await asyncio.wait_for(ws.recv(), 5)
        await ws.close(4002, "client says bye")
    assert ws.close_code == 4002  # the close handshake completed through the gateway
    for _ in range(100):
        if stack.upstream.disconnects:
            break
        await asyncio.sleep(0.05)
    assert stack.upstream.disconnects == [4002]


async def test_oversize_message_from_client_closes_1009(stack: Stack) -> None:
    async with connect(f"{stack.gateway}/echo", additional_headers=stack.token(),
                       proxy=None, open_timeout=5, max_size=None) as ws:  # fmt: skip
        await ws.send(b"x" * (LIMIT + 1))
        code, _ = await closed_with(ws)
    assert code == 1009


async def test_oversize_message_from_upstream_closes_1009(stack: Stack) -> None:
    async with connect(f"{stack.gateway}/big", additional_headers=stack.token(),
                       proxy=None, open_timeout=5, max_size=None) as ws:  # fmt: skip
        code, _ = await closed_with(ws)
    assert code == 1009


async def test_cross_site_origin_is_refused_without_a_bearer_token(stack: Stack) -> None:
    error = await refused(f"{stack.gateway}/public/ws", origin="https://evil.example")  # type: ignore[arg-type]
    assert error.response.status_code == 403
    assert (
        json.loads(error.response.body)["reason"] == "this WebSocket was opened from another site"
    )
    same = stack.gateway.replace("ws://", "http://")
    async with connect(f"{stack.gateway}/public/ws", origin=same, proxy=None, open_timeout=5):  # type: ignore[arg-type]
        pass
    assert len(stack.upstream.handshakes) == 1


async def test_reserved_and_unrouted_paths_are_404(stack: Stack) -> None:
    for path in ("/healthz", "/verity/auth"):
        error = await refused(f"{stack.gateway}{path}", additional_headers=stack.token())
        assert error.response.status_code == 404, path
    assert stack.upstream.handshakes == []


async def test_upstream_down_is_502(make_gateway: MakeGateway, issuer: Issuer) -> None:
    config = ws_config(f"http://127.0.0.1:{free_port()}")
    with ThreadServer(gateway_for(make_gateway, config), **serve_options(config)) as gw:
        uri = gw.url.replace("http://", "ws://") + "/echo"
        error = await refused(uri, additional_headers={"Authorization": f"Bearer {issuer.token()}"})
    assert error.response.status_code == 502
    assert json.loads(error.response.body)["error"] == "bad_gateway"


async def test_upstream_that_never_answers_the_handshake_is_504(
    make_gateway: MakeGateway, issuer: Issuer
) -> None:
    with SilentServer() as port:
        config = ws_config(f"http://127.0.0.1:{port}", connect_timeout_seconds=0.5)
        with ThreadServer(gateway_for(make_gateway, config), **serve_options(config)) as gw:
            uri = gw.url.replace("http://", "ws://") + "/echo"
            token = {"Authorization": f"Bearer {issuer.token()}"}
            error = await refused(uri, additional_headers=token)
    assert error.response.status_code == 504


async def test_upstream_refusal_is_passed_on_and_redirects_are_not_followed(
    make_gateway: MakeGateway, issuer: Issuer
) -> None:
    async def refusing(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        status = 307 if scope["path"] == "/moved" else 418
        headers = [(b"location", b"ws://127.0.0.1:9/elsewhere")] if status == 307 else []
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": b"teapot"})

    with ThreadServer(refusing, ws="websockets-sansio") as up:
        config = ws_config(up.url)
        with ThreadServer(gateway_for(make_gateway, config), **serve_options(config)) as gw:
            uri = gw.url.replace("http://", "ws://")
            token = {"Authorization": f"Bearer {issuer.token()}"}
            teapot = await refused(f"{uri}/tea", additional_headers=token)
            moved = await refused(f"{uri}/moved", additional_headers=token)
    assert teapot.response.status_code == 418
    assert teapot.response.body == b"teapot"
    assert moved.response.status_code == 502  # a redirect is never followed nor passed on


def test_policy_sees_a_get_with_upgrade_websocket() -> None:
    policy = compile_policy(load_policy("""
version: 1
rules:
  - name: websockets-only
    resources: [{host: app.test}]
    allow: {headers: {upgrade: [websocket]}}
"""))  # fmt: skip
    route = RouteConfig(name="ws", host="gw.test", policy_host="app.test")
    target = websocket_target(route, host="gw.test", target=read_target("/x"), headers=[])
    assert (target.method, target.host, target.headers["upgrade"]) == (
        "GET",
        "app.test",
        "websocket",
    )
    anonymous = Principal.anonymous()
    assert policy.decide(AccessRequest(principal=anonymous, http=target, time=0)).allowed
    plain_get = HttpTarget(host="app.test", method="GET", path="/x")
    assert not policy.decide(AccessRequest(principal=anonymous, http=plain_get, time=0)).allowed


def test_close_codes_that_cannot_be_sent_are_mapped() -> None:
    assert sendable(4001, 1001) == 4001
    assert sendable(1009, 1001) == 1009
    assert sendable(1005, 1001) == 1000  # closed without a code
    assert sendable(1006, 1001) == 1001  # vanished
    assert sendable(None, 1014) == 1014
    assert sendable(999, 1011) == 1011


def test_websocket_settings_are_validated_with_their_key_path() -> None:
    route = {"name": "ws", "host": "a.test", "upstream": "http://127.0.0.1:9"}
    with pytest.raises(ValidationError) as caught:
        GatewayConfig.model_validate(
            {
                "routes": [{**route, "websocket_origins": ["evil.example/path"]}],
                "websocket": {"max_message_bytes": 10},
            }
        )
    paths = {p.path for p in problems_of(caught.value)}
    assert paths == {"routes[0].websocket_origins", "websocket.max_message_bytes"}
    config = GatewayConfig.model_validate(
        {"routes": [{**route, "websocket_origins": ["HTTPS://App.Example:8443/", "*"]}]}
    )
    assert config.routes[0].websocket_origins == ("https://app.example:8443", "*")
    assert config.websocket.max_message_bytes == 1024 * 1024  # the safe default


def test_verity_serve_runs_uvicorn_with_websockets_and_the_size_limit() -> None:
    options = uvicorn_options(ws_config("http://127.0.0.1:9"), access_log=False)
    assert options["ws"] == "websockets-sansio"  # supports websocket.http.response
    assert options["ws_max_size"] == LIMIT
    assert options["ws_ping_interval"] == 20


@pytest.fixture
def rechecking(make_gateway: MakeGateway, issuer: Issuer) -> Iterator[Stack]:
    """A gateway that decides open WebSockets again every 0.2 s and ends them at 3 s."""
    upstream = Upstream()
    with ThreadServer(upstream, ws="websockets-sansio") as up:
        settings = {"reauthorize_seconds": 0.2, "max_lifetime_seconds": 3}
        config = ws_config(up.url, websocket=settings)
        gateway = gateway_for(make_gateway, config)
        with ThreadServer(gateway, **serve_options(config)) as gw:
            yield Stack(gw.url.replace("http://", "ws://"), upstream, issuer)


async def test_an_open_websocket_ends_when_its_subject_is_revoked(rechecking: Stack) -> None:
    subject = (
        f"ws-revoked-{id(rechecking)}"  # the issuer's verifier is shared: a subject of its own
    )
    async with connect(f"{rechecking.gateway}/echo", proxy=None, open_timeout=5,
                       additional_headers=rechecking.token(subject=subject)) as ws:  # fmt: skip
        await asyncio.sleep(0.5)  # two re-checks: still allowed
        await ws.send("still here")
        assert await asyncio.wait_for(ws.recv(), 5) == "still here"
        rechecking.issuer.verifier.revoke(subject=subject)
        code, reason = await closed_with(ws)
    assert code == 1008
    assert reason == "access re-checked and refused"
    for _ in range(50):  # the upstream side is closed too
        if rechecking.upstream.disconnects:
            break
        await asyncio.sleep(0.05)
    assert rechecking.upstream.disconnects == [1001]


async def test_an_open_websocket_ends_at_its_maximum_lifetime(rechecking: Stack) -> None:
    loop = asyncio.get_running_loop()
    async with connect(f"{rechecking.gateway}/echo", proxy=None, open_timeout=5,
                       additional_headers=rechecking.token()) as ws:  # fmt: skip
        opened = loop.time()
        code, reason = await closed_with(ws, timeout=10)
    assert code == 1008
    assert reason == "connection lifetime reached"
    assert 2.5 <= loop.time() - opened < 6


def test_the_recheck_interval_and_lifetime_are_validated() -> None:
    with pytest.raises(ValidationError):
        ws_config("http://127.0.0.1:1", websocket={"reauthorize_seconds": 0})
    with pytest.raises(ValidationError):
        ws_config("http://127.0.0.1:1", websocket={"max_lifetime_seconds": -1})


async def test_refused_handshakes_do_not_fill_the_error_log(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """An unauthenticated client refused 20 times leaves no ERROR line from uvicorn.

    uvicorn up to 0.5x logged "ASGI callable returned without completing handshake." for
    every handshake answered with ``websocket.http.response``; newer ones do not. Either
    way, with the filter ``verity serve`` installs, the error log stays empty, and the
    filter drops exactly that line and nothing else."""
    from verity.cli.serve import REFUSED_HANDSHAKE, RefusedHandshakeFilter, quiet_refused_handshakes

    uvicorn_errors = logging.getLogger("uvicorn.error")
    before = list(uvicorn_errors.filters)
    try:
        quiet_refused_handshakes()
        quiet_refused_handshakes()  # idempotent
        installed = [f for f in uvicorn_errors.filters if isinstance(f, RefusedHandshakeFilter)]
        assert len(installed) == 1
        with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
            for _ in range(20):
                await refused(f"{stack.gateway}/echo")  # 401: no credentials
            await asyncio.sleep(0.3)  # uvicorn logs when the ASGI call returns, after the answer
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == [], [r.getMessage() for r in errors]

        def record(message: str) -> logging.LogRecord:
            return logging.LogRecord(
                "uvicorn.error", logging.ERROR, __file__, 1, message, None, None
            )

        assert not installed[0].filter(record(REFUSED_HANDSHAKE))  # uvicorn's line is dropped
        assert installed[0].filter(record("boom"))  # other errors still pass
    finally:
        for f in list(uvicorn_errors.filters):
            if f not in before:
                uvicorn_errors.removeFilter(f)
