"""The upstream connection pool: keep-alive reuse, exclusive checkout, pool timeout."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from verity.gateway.pool import PooledTransport

from .servers import ThreadServer

pytestmark = pytest.mark.anyio


class PeerEcho:
    """Answers with the client port it saw (one port = one connection), slowly on /slow."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/slow":
            await asyncio.sleep(0.5)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(scope["client"][1]).encode()})


async def fetch(transport: httpx.AsyncBaseTransport, url: str, pool_timeout: float = 5) -> str:
    request = httpx.Request("GET", url)
    request.extensions["timeout"] = {"connect": 5, "read": 5, "write": 5, "pool": pool_timeout}
    response = await transport.handle_async_request(request)
    try:
        return (await response.aread()).decode()
    finally:
        await response.aclose()


async def test_sequential_requests_reuse_one_connection() -> None:
    transport = PooledTransport(max_connections=4, max_idle=4, keepalive_expiry=30)
    with ThreadServer(PeerEcho()) as server:
        ports = {await fetch(transport, server.url + "/") for _ in range(5)}
        await transport.aclose()
    assert len(ports) == 1


async def test_concurrent_requests_each_get_their_own_connection() -> None:
    transport = PooledTransport(max_connections=8, max_idle=8, keepalive_expiry=30)
    with ThreadServer(PeerEcho()) as server:
        ports = await asyncio.gather(*(fetch(transport, server.url + "/slow") for _ in range(4)))
        again = await asyncio.gather(*(fetch(transport, server.url + "/") for _ in range(4)))
        await transport.aclose()
    assert len(set(ports)) == 4
    assert set(again) == set(ports)


async def test_full_pool_times_out_as_pool_timeout() -> None:
    transport = PooledTransport(max_connections=1, max_idle=1, keepalive_expiry=30)
    with ThreadServer(PeerEcho()) as server:
        slow = asyncio.ensure_future(fetch(transport, server.url + "/slow"))
        await asyncio.sleep(0.1)
        with pytest.raises(httpx.PoolTimeout):
            await fetch(transport, server.url + "/", pool_timeout=0.1)
        await slow
        await transport.aclose()
