"""Verity in a Flask app: the ``@token_required`` pattern done right.

    from verity.integrations.flask import Verity, require

    app = Flask(__name__)
    Verity(app, verifier=TokenVerifier(issuer_config), engine=LivePolicy("policy.yaml"))

    @app.get("/invoices/<invoice_id>")
    @require(action="read", resource_type="invoice", resource_id_arg="invoice_id",
             attributes=lambda invoice_id: {"owner": INVOICES[invoice_id].owner})
    def read_invoice(invoice_id):
        return {"viewer": g.verity_principal.id}

Algorithms come from the verifier's configuration, never from the token; each rejection
has its own reason (``expired``, ``bad_audience``...), answered 401 with
``WWW-Authenticate``; a deny is 403 JSON with the decision id, reason and hint; any
exception on the decision path is a 403 deny with reason ``internal_error`` and the view
never runs. The verified principal is ``g.verity_principal`` (the decision
``g.verity_decision``); client-supplied identity headers (``X-Verity-User``...) are
never read, and are removed from ``request.headers`` before the view runs. Needs the
``flask`` extra (``pip install verity[flask]``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

from flask import Flask, Response, current_app, g, jsonify, request

from ..gateway.enforce import Decider, internal_deny
from ..identity import TokenVerifier
from ..model import Principal
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
    strip_identity_environ,
)

log = logging.getLogger("verity.integrations")
EXTENSION_KEY = "verity"
P = ParamSpec("P")
R = TypeVar("R")
AttributeLoader = Callable[[str | None], Mapping[str, Any] | None]


class Verity:
    """The Flask extension: Verity's configuration for one app (``app.extensions``)."""

    def __init__(
        self,
        app: Flask | None = None,
        *,
        engine: Decider,
        verifier: TokenVerifier | None = None,
        assertion: AssertionSource | None = None,
        trusted_proxies: Sequence[str] = (),
        trusted_hops: int = 1,
        policy_host: str | None = None,
        listeners: Sequence[Listener] = (),
    ) -> None:
        """See ``Guard`` for the arguments; ``app`` may be given later to ``init_app``."""
        self.guard = Guard(
            engine=engine, verifier=verifier, assertion=assertion,
            trusted_proxies=trusted_proxies, trusted_hops=trusted_hops,
            policy_host=policy_host, listeners=listeners,
        )  # fmt: skip
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register with ``app`` (one ``Verity`` per app)."""
        app.extensions[EXTENSION_KEY] = self


def incoming() -> Incoming:
    """The ``Incoming`` view of the current Flask request (raw URI as sent, if known)."""
    environ = request.environ
    routed = request.script_root + request.path
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    raw_path = raw.encode("latin-1").decode("latin-1") if isinstance(raw, str) else None
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in request.headers.items()
    ]
    return Incoming(
        method=request.method,
        raw_path=raw_path if raw_path else _quoted(routed),
        routed_path=routed,
        headers=headers,
        peer=request.remote_addr,
    )


def _quoted(path: str) -> str:
    from urllib.parse import quote  # noqa: PLC0415 - only without a raw URI

    return quote(path, safe="/:@!$&'()*+,;=-._~")


def _response(rejection: Rejection) -> Response:
    response = jsonify(dict(rejection.body))
    response.status_code = rejection.status
    for name, value in rejection.headers.items():
        response.headers[name] = value
    return response


def _target(
    kwargs: Mapping[str, Any],
    *,
    action: str | None,
    resource_type: str | None,
    resource_id_arg: str | None,
    attributes: AttributeLoader | None,
) -> Callable[[Principal], Target]:
    def load(_principal: Principal) -> Target:
        resource_id = None if resource_id_arg is None else str(kwargs[resource_id_arg])
        loaded = attributes(resource_id) if attributes is not None else None
        if loaded is not None and not isinstance(loaded, Mapping):
            raise TypeError("the attribute loader must return a mapping or None")
        return Target(action, resource_type, resource_id, loaded or {})

    return load


def _outcome(guard: Guard | None, load: Callable[[Principal], Target], anonymous: bool) -> Outcome:
    outcome = _decided(guard, load, anonymous)
    if outcome.identity is not None:
        g.verity_identity = outcome.identity  # for a stacked @require on the same request
    return outcome


def _decided(guard: Guard | None, load: Callable[[Principal], Target], anonymous: bool) -> Outcome:
    if guard is None:
        log.error("fail closed: verity.integrations.flask.Verity(app) was not set up")
        decision = internal_deny()
        return Outcome(decision=decision, rejection=denied(decision))
    try:
        current = incoming()
    except (UnicodeError, ValueError):
        body = {"error": "bad_request", "error_description": "Malformed request."}
        return Outcome(rejection=Rejection(400, body))
    known = g.get("verity_identity")
    return guard.authorize(
        current, load, anonymous_ok=anonymous,
        identity=known if isinstance(known, Identity) else None,
    )  # fmt: skip


def require(
    *,
    action: str | None = None,
    resource_type: str | None = None,
    resource_id_arg: str | None = None,
    attributes: AttributeLoader | None = None,
    allow_anonymous: bool = False,
) -> Callable[[Callable[P, R]], Callable[P, R | Response]]:
    """Decorate a view so that it runs only when the policy allows the request.

    ``resource_id_arg`` names the URL variable holding the resource id;
    ``attributes(resource_id)`` returns the resource's attributes (e.g. its owner) and
    runs only for an authenticated caller. Anonymous callers get 401 unless
    ``allow_anonymous`` (then the policy decides).
    """

    def decorate(view: Callable[P, R]) -> Callable[P, R | Response]:
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Response:
            extension = current_app.extensions.get(EXTENSION_KEY)
            guard = extension.guard if isinstance(extension, Verity) else None
            load = _target(
                kwargs, action=action, resource_type=resource_type,
                resource_id_arg=resource_id_arg, attributes=attributes,
            )  # fmt: skip
            outcome = _outcome(guard, load, allow_anonymous)
            g.verity_decision = outcome.decision
            if outcome.rejection is not None:
                return _response(outcome.rejection)
            g.verity_principal = outcome.principal
            strip_identity_environ(request.environ)  # no forged X-Verity-User for the view
            return view(*args, **kwargs)

        return wrapper

    return decorate


__all__ = ["AssertionSource", "Verity", "incoming", "require"]
