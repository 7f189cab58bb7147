"""Verity in a FastAPI app: a dependency that verifies the caller and enforces the policy.

    from verity.integrations.fastapi import Verity, require

    app = FastAPI()
    Verity(app, verifier=TokenVerifier(issuer_config), engine=LivePolicy("policy.yaml"))

    @app.get("/invoices/{invoice_id}")
    def read_invoice(
        invoice_id: str,
        principal: Principal = Depends(require(
            action="read", resource_type="invoice", resource_id_param="invoice_id",
            attributes=load_invoice_attributes)),
    ): ...

A missing or bad token is 401 (``WWW-Authenticate: Bearer ...``); a deny is 403 with
``{"error": "access_denied", "decision_id", "reason", "hint"}``; any exception on the
decision path (the attribute loader, the engine) is a 403 deny with reason
``internal_error`` and the handler never runs. ``request.state.verity_decision`` holds
the decision. Client-supplied identity headers (``X-Verity-*``, ``X-Forwarded-User``...)
are removed from the request before the handler runs. Needs the ``fastapi`` extra
(``pip install verity[fastapi]``).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

from ..gateway.enforce import Decider
from ..gateway.enforce import internal_deny as _internal_deny
from ..identity import TokenVerifier
from ..model import Decision, Principal
from ._common import (
    AssertionSource,
    Guard,
    Identity,
    Incoming,
    Listener,
    Outcome,
    Rejection,
    Target,
    denied,
    strip_identity_headers,
)
from .starlette import incoming as scope_incoming

log = logging.getLogger("verity.integrations")
STATE_KEY = "verity"
AttributeLoader = Callable[[Request, str | None], Mapping[str, Any] | Awaitable[Any] | None]


class VerityRejection(HTTPException):
    """A 400/401/403 from Verity. ``Verity(app)`` renders ``body`` as the exact JSON body;
    without that handler FastAPI still answers the same status as ``{"detail": body}``."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.status, dict(rejection.body), dict(rejection.headers))
        self.rejection = rejection


async def _render(_request: Request, exc: Exception) -> Response:
    if not isinstance(exc, VerityRejection):  # pragma: no cover - registered for it only
        raise exc
    body, headers = exc.rejection.body, exc.rejection.headers
    return JSONResponse(dict(body), exc.rejection.status, dict(headers))


class Verity:
    """Configures Verity for one FastAPI app (stored in ``app.state.verity``)."""

    def __init__(
        self,
        app: FastAPI | None = None,
        *,
        engine: Decider,
        verifier: TokenVerifier | None = None,
        assertion: AssertionSource | None = None,
        trusted_proxies: tuple[str, ...] = (),
        trusted_hops: int = 1,
        policy_host: str | None = None,
        listeners: tuple[Listener, ...] = (),
    ) -> None:
        """See ``Guard`` for the arguments; ``app`` may be given later to ``init_app``."""
        self.guard = Guard(
            engine=engine, verifier=verifier, assertion=assertion,
            trusted_proxies=trusted_proxies, trusted_hops=trusted_hops,
            policy_host=policy_host, listeners=listeners,
        )  # fmt: skip
        if app is not None:
            self.init_app(app)

    def init_app(self, app: FastAPI) -> None:
        """Attach to ``app`` and render rejections with their exact JSON bodies."""
        setattr(app.state, STATE_KEY, self.guard)
        app.add_exception_handler(VerityRejection, _render)


def incoming(request: Request) -> Incoming:
    """The ``Incoming`` view of a FastAPI request."""
    return scope_incoming(request.scope)


def _guard(request: Request, explicit: Guard | None) -> Guard | None:
    if explicit is not None:
        return explicit
    found = getattr(request.app.state, STATE_KEY, None)
    return found if isinstance(found, Guard) else None


def decision(request: Request) -> Decision | None:
    """The decision Verity made for this request (``None`` before enforcement)."""
    value = getattr(request.state, "verity_decision", None)
    return value if isinstance(value, Decision) else None


def _target_loader(
    request: Request,
    *,
    action: str | None,
    resource_type: str | None,
    resource_id_param: str | None,
    attributes: AttributeLoader | None,
) -> Callable[[Principal], Awaitable[Target]]:
    async def load(_principal: Principal) -> Target:
        resource_id = None
        if resource_id_param is not None:
            resource_id = str(request.path_params[resource_id_param])
        loaded: Any = None
        if attributes is not None:
            loaded = attributes(request, resource_id)
            if inspect.isawaitable(loaded):
                loaded = await loaded
        if loaded is not None and not isinstance(loaded, Mapping):
            raise TypeError("the attribute loader must return a mapping or None")
        return Target(action, resource_type, resource_id, loaded or {})

    return load


def _enforce(request: Request, outcome: Outcome) -> Principal:
    if outcome.decision is not None:
        request.state.verity_decision = outcome.decision
    if outcome.rejection is not None or outcome.principal is None:
        raise VerityRejection(outcome.rejection or denied(_internal_deny()))
    request.state.verity_principal = outcome.principal
    # The handler (and its Header() parameters, read after this dependency) must not see
    # identity headers the client forged: the same headers Starlette's middleware strips.
    request.scope["headers"] = strip_identity_headers(request.scope["headers"])
    request.__dict__.pop("_headers", None)  # Starlette caches request.headers
    return outcome.principal


def require(
    *,
    action: str | None = None,
    resource_type: str | None = None,
    resource_id_param: str | None = None,
    attributes: AttributeLoader | None = None,
    allow_anonymous: bool = False,
    guard: Guard | None = None,
) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency enforcing the policy for this route; it returns the ``Principal``.

    ``resource_id_param`` names the path parameter holding the resource id.
    ``attributes(request, resource_id)`` (sync or async) returns the resource's
    attributes (e.g. ``{"owner": "alice"}``) for relations such as
    ``resource.owner == principal.id``; it runs only after the caller is authenticated.
    Anonymous callers get 401 unless ``allow_anonymous`` (then the policy decides).
    ``guard`` overrides the one ``Verity(app)`` installed.
    """

    async def dependency(request: Request) -> Principal:
        chosen = _guard(request, guard)
        if chosen is None:
            log.error("fail closed: verity.integrations.fastapi.Verity(app) was not set up")
            raise VerityRejection(denied(_internal_deny()))
        load = _target_loader(
            request, action=action, resource_type=resource_type,
            resource_id_param=resource_id_param, attributes=attributes,
        )  # fmt: skip
        # The caller an earlier require() of this request verified, reused only by the same
        # guard: another guard (``guard=``) trusts other issuers or audiences and verifies
        # the credentials itself.
        known = getattr(request.state, "verity_identity", None)
        reused = known[1] if isinstance(known, tuple) and known[0] is chosen else None
        outcome = await chosen.aauthorize(
            incoming(request), load, anonymous_ok=allow_anonymous,
            identity=reused if isinstance(reused, Identity) else None,
        )  # fmt: skip
        if outcome.identity is not None:
            request.state.verity_identity = (chosen, outcome.identity)
        return _enforce(request, outcome)

    return dependency


__all__ = ["AssertionSource", "Verity", "VerityRejection", "decision", "incoming", "require"]
