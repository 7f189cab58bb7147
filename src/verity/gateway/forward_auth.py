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

Every answer is one audited decision (``verity.gateway.refusals``): a check whose host
and path match no route is denied (403, reason ``no_route``), a malformed check or one
from an untrusted caller keeps its 4xx status and is denied and audited too, and an
unexpected failure is a 403 ``internal_error`` (fail closed). Each carries
``X-Verity-Decision-Id``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.responses import Response

from ..model import HttpTarget, parse_ip
from . import refusals, responses
from .enforce import Enforcer, Outcome, Subject, Verdict, internal_deny
from .errors import BadRequestError
from .headers import ClientAddress, single_header, valid_method
from .inbound import Inbound, Scope, canonical_path, http_target, raw_target, request_host
from .routing import RouteTable
from .settings import ForwardAuthConfig, RouteConfig

Render = Callable[[Outcome, bool], Response]
log = logging.getLogger("verity.gateway")


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

    def handles(self, path: str) -> bool:
        """True for a forward-auth path (when forward-auth is enabled)."""
        return self.config.enabled and (path == self.config.path or self.is_envoy(path))

    def _endpoint(self, envoy: bool) -> str:
        return self.config.envoy_path_prefix if envoy else self.config.path

    async def check(self, scope: Scope, inbound: Inbound, *, envoy: bool) -> Response:
        """The forward-auth answer for one check request; never raises (see above)."""
        try:
            return await self._check(scope, inbound, envoy=envoy)
        except BadRequestError as exc:
            decision = refusals.refused(exc)
            await refusals.record(
                self.enforcer, decision, inbound.client, endpoint=self._endpoint(envoy)
            )
            response = responses.error(exc.status, exc.public_message, html=inbound.html)
            return refusals.with_decision_id(response, decision)
        except Exception:  # fail closed on anything (logged with its traceback)
            decision = internal_deny()
            log.exception("fail closed: forward-auth error (decision %s)", decision.decision_id)
            await refusals.record(
                self.enforcer, decision, inbound.client, endpoint=self._endpoint(envoy)
            )
            return responses.denied(decision, html=inbound.html)

    async def refuse_unread(
        self, scope: Scope, error: BadRequestError, response: Response
    ) -> Response:
        """Audit a check refused before its headers could be read (e.g. 431): the client
        is the socket peer. Returns ``response`` with the decision id."""
        peer = scope.get("client")
        try:
            ip = parse_ip(str(peer[0])) if peer else None
        except ValueError:
            ip = None
        decision = refusals.refused(error)
        endpoint = self._endpoint(scope["path"] != self.config.path)
        await refusals.record(
            self.enforcer, decision, ClientAddress(ip, ip, False), endpoint=endpoint
        )
        return refusals.with_decision_id(response, decision)

    async def _check(self, scope: Scope, inbound: Inbound, *, envoy: bool) -> Response:
        if self.config.require_trusted_caller and not inbound.client.peer_trusted:
            raise BadRequestError(403, "Forward-auth answers only the configured proxies.")
        prefix = self.config.envoy_path_prefix if envoy else None
        method, target = _original(inbound, scope, prefix)
        host = request_host(inbound, forwarded=not envoy)
        path = canonical_path(target)
        route = self.routes.match(host, path)
        if route is None:
            decision = await refusals.unrouted(
                self.enforcer, inbound.client, host=host, method=valid_method(method), path=path
            )
            return responses.denied(decision, html=inbound.html)
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
