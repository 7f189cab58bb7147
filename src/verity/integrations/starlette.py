"""Verity as ASGI middleware for Starlette (or any ASGI app): every request is enforced.

    from verity.integrations.starlette import VerityMiddleware

    app = Starlette(routes=..., middleware=[Middleware(
        VerityMiddleware, verifier=verifier, engine=engine, exclude_paths=("/health",))])

The policy sees the HTTP host, method and path (no application resource type). On allow
the handler finds ``request.state.verity_principal`` and ``request.state.verity_decision``;
client-supplied identity headers (``X-Verity-*``, ``X-Forwarded-User``...) are removed
from the request before the app sees it. A missing or bad token is 401, a deny 403 JSON,
a failure on the decision path a 403 deny (fail closed). A path whose decoded and
normalised forms differ (``/public/../admin``) is refused with 400, so the path the
policy decided on is the path the app routes on. WebSocket handshakes are enforced too
(a rejection closes with code 1008). Lifespan and other scopes pass through.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ..gateway.enforce import Decider
from ..gateway.errors import BadRequestError
from ..identity import TokenVerifier
from ._common import (
    AssertionSource,
    Guard,
    Incoming,
    Listener,
    Outcome,
    Rejection,
    canonical_path,
    strip_identity_headers,
)

POLICY_VIOLATION = 1008  # RFC 6455 close code


def incoming(scope: Scope) -> Incoming:
    """The ``Incoming`` view of an ASGI HTTP or WebSocket scope."""
    raw = scope.get("raw_path")
    raw_path = bytes(raw).decode("latin-1") if raw else str(scope.get("path", "/"))
    client = scope.get("client")
    return Incoming(
        method=str(scope.get("method", "GET")), raw_path=raw_path,
        routed_path=str(scope.get("path", "/")), headers=scope["headers"],
        peer=client[0] if client else None,
    )  # fmt: skip


def path_excluded(canonical: str, patterns: Sequence[str]) -> bool:
    """True when ``canonical`` is one of ``patterns``: an exact path, or ``/prefix/**``."""
    for pattern in patterns:
        if pattern.endswith("/**"):
            prefix = pattern[:-3]
            if canonical == prefix or canonical.startswith(prefix + "/"):
                return True
        elif canonical == pattern:
            return True
    return False


class VerityMiddleware:
    """Enforces the policy on every HTTP request and WebSocket handshake."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        engine: Decider | None = None,
        verifier: TokenVerifier | None = None,
        assertion: AssertionSource | None = None,
        exclude_paths: Sequence[str] = (),
        allow_anonymous: bool = False,
        trusted_proxies: Sequence[str] = (),
        trusted_hops: int = 1,
        policy_host: str | None = None,
        listeners: Sequence[Listener] = (),
        guard: Guard | None = None,
    ) -> None:
        """Give ``engine`` plus ``verifier`` and/or ``assertion`` (or a ready ``guard``).

        ``exclude_paths`` (e.g. ``("/health", "/static/**")``) are not enforced; they are
        matched against the canonical path. Anonymous requests get 401 unless
        ``allow_anonymous``, in which case the policy decides (``authenticated: false``).
        """
        if guard is None:
            if engine is None:
                raise ValueError("VerityMiddleware needs an engine (or a guard)")
            guard = Guard(
                engine=engine, verifier=verifier, assertion=assertion,
                trusted_proxies=trusted_proxies, trusted_hops=trusted_hops,
                policy_host=policy_host, listeners=listeners,
            )  # fmt: skip
        self.app = app
        self.guard = guard
        self.exclude_paths = tuple(exclude_paths)
        self.allow_anonymous = allow_anonymous

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request = incoming(scope)
        try:
            excluded = path_excluded(canonical_path(request), self.exclude_paths)
        except BadRequestError as exc:
            body = {"error": "bad_request", "error_description": exc.public_message}
            await _reject(Rejection(exc.status, body), scope, receive, send)
            return
        if excluded:
            await self.app(scope, receive, send)
            return
        outcome = await self.guard.aauthorize(request, anonymous_ok=self.allow_anonymous)
        if outcome.rejection is not None:
            await _reject(outcome.rejection, scope, receive, send)
            return
        await self.app(_allowed_scope(scope, outcome), receive, send)


def _allowed_scope(scope: Scope, outcome: Outcome) -> Scope:
    """A copy of ``scope`` without client identity headers and with the verdict in state."""
    headers = strip_identity_headers(scope["headers"])
    state: dict[str, Any] = dict(scope.get("state") or {})
    state["verity_principal"] = outcome.principal
    state["verity_decision"] = outcome.decision
    return {**scope, "headers": headers, "state": state}


async def _reject(rejection: Rejection, scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": POLICY_VIOLATION})
        return
    response = JSONResponse(dict(rejection.body), rejection.status, dict(rejection.headers))
    await response(scope, receive, send)


__all__ = ["AssertionSource", "VerityMiddleware", "incoming", "path_excluded"]
