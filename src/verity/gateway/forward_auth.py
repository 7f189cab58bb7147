"""Forward-auth: the proxy's decision, asked for by nginx, Traefik or Envoy.

One decision path, three ways to describe the original request:

- nginx ``auth_request``: ``X-Original-URI`` and ``X-Original-Method``; the original
  ``Host`` is passed through (``proxy_set_header Host $host``).
- Traefik ``ForwardAuth``: ``X-Forwarded-Method/Proto/Host/Uri``.
- Envoy ``ext_authz`` (HTTP service): the original path follows ``envoy_path_prefix``,
  the method and ``Host`` are the original ones.

``X-Forwarded-Host`` is believed only from a trusted proxy. 200 carries the identity
headers for the upstream (``X-Verity-User``, ``-Email``, ``-Groups``, ``-Assertion``,
``-Decision-Id``); 401 and 403 carry the same bodies as the proxy's.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.responses import Response

from ..ids import new_decision_id
from ..model import Decision, Effect, HttpTarget, Reason
from . import responses
from .enforce import Enforcer, Outcome, Subject, Verdict
from .errors import BadRequestError
from .headers import single_header
from .inbound import Inbound, Scope, canonical_path, http_target, raw_target, request_host
from .routing import RouteTable
from .settings import ForwardAuthConfig, RouteConfig

Render = Callable[[Outcome, bool], Response]


def _original(inbound: Inbound, scope: Scope, envoy_prefix: str | None) -> tuple[str, str]:
    """(method, request target) of the original request."""
    if envoy_prefix is not None:
        return scope["method"], raw_target(scope)[len(envoy_prefix) :] or "/"
    raw = inbound.headers
    for uri, method in ((b"x-original-uri", b"x-original-method"),
                        (b"x-forwarded-uri", b"x-forwarded-method")):  # fmt: skip
        target = single_header(raw, uri)
        if target is not None:
            return single_header(raw, method) or scope["method"], target
    raise BadRequestError(400, "Forward-auth needs X-Original-URI or X-Forwarded-Uri.")


def _allowed_response(outcome: Outcome) -> Response:
    response = Response(b"", 200, headers=responses.SECURITY_HEADERS)
    for name, value in outcome.identity_headers:
        response.headers.append(name, value)
    return response


class ForwardAuth:
    """Answers forward-auth checks with the shared ``Enforcer``."""

    def __init__(
        self,
        config: ForwardAuthConfig,
        *,
        routes: RouteTable,
        enforcer: Enforcer,
        render: Render,
    ) -> None:
        self.config = config
        self.routes = routes
        self.enforcer = enforcer
        self.render = render

    def is_envoy(self, path: str) -> bool:
        """True for a path under the Envoy ext_authz prefix."""
        prefix = self.config.envoy_path_prefix
        return path == prefix or path.startswith(prefix + "/")

    async def check(self, scope: Scope, inbound: Inbound, *, envoy: bool) -> Response:
        """The forward-auth answer for one check request. Raises ``BadRequestError``."""
        if self.config.require_trusted_caller and not inbound.client.peer_trusted:
            raise BadRequestError(403, "Forward-auth answers only the configured proxies.")
        prefix = self.config.envoy_path_prefix if envoy else None
        method, target = _original(inbound, scope, prefix)
        host = request_host(inbound, forwarded=not envoy)
        path = canonical_path(target)
        route = self.routes.match(host, path)
        if route is None:
            return responses.denied(_no_route(), html=inbound.html)
        subject = Subject(route, self._target(route, host, method, path, inbound), inbound.client,
                          inbound.headers)  # fmt: skip
        outcome = await self.enforcer.authorize(subject)
        if outcome.verdict is Verdict.ALLOWED:
            return _allowed_response(outcome)
        return self.render(outcome, inbound.html)

    def _target(
        self, route: RouteConfig, host: str, method: str, path: str, inbound: Inbound
    ) -> HttpTarget:
        return http_target(
            host=host, method=method, path=path, headers=inbound.headers,
            policy_host=route.policy_host,
        )  # fmt: skip


def _no_route() -> Decision:
    reason = Reason("no_route", "no application is configured at this address")
    return Decision(Effect.DENY, None, new_decision_id(), "", (reason,))
