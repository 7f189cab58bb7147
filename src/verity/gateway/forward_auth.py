"""Forward-auth: the proxy's decision, asked for by nginx, Traefik or Envoy.

One decision path, three dialects, each on its own endpoint and reading only its own
headers (docs/gateway.md, "Forward-auth"):

- nginx ``auth_request`` (``forward_auth.path``, ``/verity/auth``): ``X-Original-URI``
  and ``X-Original-Method``; the original ``Host`` is passed through.
- Traefik ``ForwardAuth`` (``forward_auth.traefik_path``, ``/verity/auth/traefik``):
  ``X-Forwarded-Method/Proto/Host/Uri``.
- Envoy ``ext_authz`` (HTTP service): the original path follows ``envoy_path_prefix``,
  the method and ``Host`` are the original ones.

A check carrying another dialect's request headers is refused (400): Traefik copies the
client's headers into the check, so a client-sent ``X-Original-URI`` must never be what
is decided. The upstream gets the raw target from the proxy, which Verity cannot
rewrite, so the target must already be in canonical form (``verity.gateway.target``):
anything ambiguous is refused (400, ``ambiguous_target``) and what is decided is what the
proxy forwards, decoded once.

The host is ``Host`` for nginx (whose ``auth_request`` passes the client's own
``X-Forwarded-Host`` on) and Envoy; Traefik's ``X-Forwarded-Host`` is believed only from
a trusted proxy. 200 carries the identity
headers for the upstream (``X-Verity-User``, ``-Email``, ``-Groups``, ``-Assertion``,
``-Decision-Id``); 401 and 403 carry the same bodies as the proxy's.

Every answer is one audited decision (``verity.gateway.refusals``): a check whose host
and path match no route is denied (403, reason ``no_route``), a malformed check or one
from an untrusted caller keeps its 4xx status and is denied and audited too, and an
unexpected failure is a 403 ``internal_error`` (fail closed). Each carries
``X-Verity-Decision-Id``.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable

from starlette.responses import Response

from ..model import parse_ip
from ..request_binding import canonical_request_path
from . import refusals, responses
from .enforce import Enforcer, Outcome, Subject, Verdict, internal_deny
from .errors import BadRequestError
from .headers import ClientAddress, header_values, single_header, valid_method
from .inbound import Inbound, RequestLine, http_target, read_target, request_host
from .routing import RouteTable
from .settings import ForwardAuthConfig

Render = Callable[[Outcome, bool], Response]
log = logging.getLogger("verity.gateway")


class Dialect(enum.Enum):
    """Which proxy asks, by the endpoint it calls."""

    NGINX = "nginx"
    TRAEFIK = "traefik"
    ENVOY = "envoy"


# (uri header, method header) each dialect reads; every other one here is refused.
_OWN = {
    Dialect.NGINX: (b"x-original-uri", b"x-original-method"),
    Dialect.TRAEFIK: (b"x-forwarded-uri", b"x-forwarded-method"),
}
_DESCRIBING = (b"x-original-uri", b"x-original-method", b"x-original-url",
               b"x-forwarded-uri", b"x-forwarded-method")  # fmt: skip


def _original(
    inbound: Inbound, line: RequestLine, dialect: Dialect, prefix: str
) -> tuple[str, str]:
    """(method, request target) of the original request, from ``dialect``'s own headers."""
    raw = inbound.headers
    own = _OWN.get(dialect)
    for name in _DESCRIBING:
        if (own is None or name not in own) and header_values(raw, name):
            raise BadRequestError(400, f"This endpoint does not read {name.decode()}.")
    if own is None:  # Envoy: the check is the original request, under the prefix
        sent = line.target  # as sent: the endpoint was matched on the decoded path
        if not sent.startswith(prefix):  # "/%76erity/ext_authz/...": cut at the wrong place
            raise BadRequestError(400, "The check's path must start with the prefix as is.")
        return line.method, sent[len(prefix) :] or "/"
    uri, method = single_header(raw, own[0]), single_header(raw, own[1])
    if uri is None or method is None:
        names = " and ".join(n.decode() for n in own)
        raise BadRequestError(400, f"Forward-auth needs {names}.")
    return method, uri


# What ``Response(b"", 200, headers=SECURITY_HEADERS)`` has, built once.
_ALLOWED_HEADERS = (
    *((name.lower().encode("latin-1"), value.encode("latin-1"))
      for name, value in responses.SECURITY_HEADERS.items()),
    (b"content-length", b"0"),
)  # fmt: skip


def _allowed_response(outcome: Outcome) -> Response:
    """200, the security headers, then the identity headers (the hot path: the same
    headers as appending each to a ``Response``, without building them each time)."""
    response = Response(b"", 200)
    response.raw_headers = [
        *_ALLOWED_HEADERS,
        *((name.lower().encode("latin-1"), value.encode("latin-1"))
          for name, value in outcome.identity_headers),
    ]  # fmt: skip
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

    def dialect(self, path: str) -> Dialect | None:
        """The dialect whose endpoint ``path`` is (None: not forward-auth, or disabled)."""
        config = self.config
        if not config.enabled:
            return None
        if path == config.path:
            return Dialect.NGINX
        if path == config.traefik_path:
            return Dialect.TRAEFIK
        prefix = config.envoy_path_prefix
        if path == prefix or path.startswith(prefix + "/"):
            return Dialect.ENVOY
        return None

    def handles(self, path: str) -> bool:
        """True for a forward-auth path (when forward-auth is enabled)."""
        return self.dialect(path) is not None

    def _endpoint(self, dialect: Dialect) -> str:
        config = self.config
        return {Dialect.NGINX: config.path, Dialect.TRAEFIK: config.traefik_path}.get(
            dialect, config.envoy_path_prefix
        )

    async def check(self, line: RequestLine, inbound: Inbound, *, dialect: Dialect) -> Response:
        """The forward-auth answer for one check request; never raises (see above)."""
        try:
            return await self._check(line, inbound, dialect)
        except BadRequestError as exc:
            decision = refusals.refused(exc)
            await refusals.record(
                self.enforcer, decision, inbound.client, endpoint=self._endpoint(dialect)
            )
            response = responses.error(exc.status, exc.public_message, html=inbound.html)
            return refusals.with_decision_id(response, decision)
        except Exception:  # fail closed on anything (logged with its traceback)
            decision = internal_deny()
            log.exception("fail closed: forward-auth error (decision %s)", decision.decision_id)
            await refusals.record(
                self.enforcer, decision, inbound.client, endpoint=self._endpoint(dialect)
            )
            return responses.denied(decision, html=inbound.html)

    async def refuse_unread(
        self, path: str, peer: str | None, error: BadRequestError, response: Response
    ) -> Response:
        """Audit a check to ``path`` refused before its headers could be read (e.g. 431):
        the client is the socket ``peer``. Returns ``response`` with the decision id."""
        try:
            ip = parse_ip(peer) if peer else None
        except ValueError:
            ip = None
        decision = refusals.refused(error)
        endpoint = self._endpoint(self.dialect(path) or Dialect.NGINX)
        await refusals.record(
            self.enforcer, decision, ClientAddress(ip, ip, False), endpoint=endpoint
        )
        return refusals.with_decision_id(response, decision)

    async def _check(self, line: RequestLine, inbound: Inbound, dialect: Dialect) -> Response:
        if self.config.require_trusted_caller and not inbound.client.peer_trusted:
            raise BadRequestError(403, "Forward-auth answers only the configured proxies.")
        method, sent = _original(inbound, line, dialect, self.config.envoy_path_prefix)
        # nginx passes the original Host (proxy_set_header Host $host) and, in auth_request,
        # every header the client sent: only Traefik names the host in X-Forwarded-Host.
        host = request_host(inbound, forwarded=dialect is Dialect.TRAEFIK)
        route = None
        try:
            target = read_target(sent)
            route = self.routes.match(host, target.decoded)
            if route is None:
                decision = await refusals.unrouted(
                    self.enforcer, inbound.client, host=host, method=valid_method(method),
                    path=target.decoded,
                )  # fmt: skip
                return responses.denied(decision, html=inbound.html)
            http = http_target(
                route, host=host, method=method, target=target, headers=inbound.headers
            )
        except BadRequestError as exc:  # an ambiguous target or override: refused, audited
            if exc.reason_code is None:
                raise
            decision = await refusals.refused_target(
                self.enforcer, exc, inbound.client, host=host, method=method,
                untrusted_target=sent.split("?", 1)[0],
                route=route.name if route else refusals.NO_ROUTE,
            )  # fmt: skip
            response = responses.error(exc.status, exc.public_message, html=inbound.html)
            return refusals.with_decision_id(response, decision)
        received = canonical_request_path(sent)  # the upstream receives the raw target
        bound = received if received != http.path else None
        subject = Subject(route, http, inbound.client, inbound.headers, bound_path=bound)
        outcome = await self.enforcer.authorize(subject)
        if outcome.verdict is Verdict.ALLOWED:
            return _allowed_response(outcome)
        return self.render(outcome, inbound.html)
