"""A tiny programmable OIDC issuer on 127.0.0.1 (discovery + JWKS) for the JWKS tests."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class IdP:
    """Serves ``/.well-known/openid-configuration`` and ``/jwks`` from a background thread.

    ``jwks``, ``cache_control``, ``status`` and ``discovery_override`` can be changed while
    it runs; ``requests`` records every path asked for.
    """

    def __init__(self) -> None:
        self.jwks: dict[str, Any] = {"keys": []}
        self.cache_control: str | None = "max-age=300"
        self.status = 200
        self.discovery_override: dict[str, Any] = {}
        self.redirect_jwks_to: str | None = None
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self.server.server_address[1]
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()
        self.running = True

    def count(self, path: str) -> int:
        with self._lock:
            return self.requests.count(path)

    def stop(self) -> None:
        if self.running:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(5)
            self.running = False

    def _respond(self, path: str) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.requests.append(path)
        if path == "/.well-known/openid-configuration":
            document = {"issuer": self.issuer, "jwks_uri": f"{self.issuer}/jwks"}
            document.update(self.discovery_override)
            return 200, {}, json.dumps(document).encode()
        if path == "/jwks":
            if self.redirect_jwks_to:
                return 302, {"Location": self.redirect_jwks_to}, b""
            headers = {"Cache-Control": self.cache_control} if self.cache_control else {}
            return self.status, headers, json.dumps(self.jwks).encode()
        return 404, {}, b"{}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, headers, body = idp._respond(self.path)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        return Handler
