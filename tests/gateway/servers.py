"""Real sockets for tests: an ASGI app served by uvicorn in a thread on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

from verity.cli.serve import uvicorn_options
from verity.config import VerityConfig


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThreadServer:
    """``with ThreadServer(app) as server:`` serves ``app`` at ``server.url`` until exit."""

    def __init__(self, app: Any, *, lifespan: str = "off", **options: Any) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, lifespan=lifespan, log_level="warning", proxy_headers=False,
            timeout_graceful_shutdown=2, **options,
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})
        self.thread.daemon = True

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def serve_options(config: VerityConfig) -> dict[str, Any]:
    """The uvicorn options ``verity serve`` uses for ``config`` (protocols, TLS, WebSocket
    limits), minus those ``ThreadServer`` sets itself (address, lifespan, logging)."""
    options = uvicorn_options(config, access_log=False)
    for key in ("host", "port", "lifespan", "proxy_headers", "timeout_graceful_shutdown",
                "log_config"):  # fmt: skip
        options.pop(key, None)
    return options


class SilentServer:
    """``with SilentServer() as port:`` a TCP listener that accepts and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])

    def __enter__(self) -> int:
        self.sock.listen(8)
        return self.port

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.sock.close()
