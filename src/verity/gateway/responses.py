"""What the gateway answers itself: 401 challenges, 403 denies, 4xx/5xx errors.

Browsers (``Accept`` prefers ``text/html``) get a small HTML page rendered by Jinja2
with autoescaping; everything else gets JSON. Only public text appears: the decision id,
the human reason and the hint for a deny; a fixed sentence for every other error. No
exception text, stack trace, rule internals or token ever reaches a client.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from jinja2 import DictLoader, Environment, select_autoescape
from starlette.responses import Response

from ..model import Decision

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}.hint{background:#f4f6f8;padding:.8rem 1rem;border-radius:6px}
code{font-size:.95em}small{color:#666}
</style></head><body>
<h1>{{ title }}</h1>
<p>{{ message }}</p>
{% if hint %}<p class="hint"><strong>What you can do:</strong> {{ hint }}</p>{% endif %}
{% if decision_id %}<p><small>Decision id: <code>{{ decision_id }}</code>
 &mdash; quote it when you contact your administrator.</small></p>{% endif %}
</body></html>
"""
_ENV = Environment(
    loader=DictLoader({"page.html": _PAGE}),
    autoescape=select_autoescape(default=True, default_for_string=True),
)
_TEMPLATE = _ENV.get_template("page.html")
SECURITY_HEADERS = {
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'",
}
INTERNAL_REASON = "Access denied: the request could not be evaluated."
_TITLES = {
    400: "Bad request",
    401: "Sign-in required",
    403: "Access denied",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    413: "Request body too large",
    431: "Request headers too large",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}
_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "request_too_large",
    431: "headers_too_large",
    502: "bad_gateway",
    503: "unavailable",
    504: "gateway_timeout",
}


def wants_html(accept: str | None) -> bool:
    """True when ``Accept`` ranks ``text/html`` above ``application/json`` (browsers)."""
    if not accept:
        return False
    ranks: dict[str, float] = {}
    for item in accept.lower().split(","):
        kind, *params = (p.strip() for p in item.split(";"))
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        ranks[kind] = max(ranks.get(kind, 0.0), q)
    return ranks.get("text/html", 0.0) > ranks.get("application/json", 0.0)


def _render(
    status: int,
    body: Mapping[str, object],
    *,
    html: bool,
    message: str,
    hint: str | None = None,
    decision_id: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    merged = {**SECURITY_HEADERS, **(headers or {})}
    if html:
        page = _TEMPLATE.render(
            title=_TITLES.get(status, "Error"), message=message, hint=hint, decision_id=decision_id
        )
        return Response(page, status, merged, media_type="text/html; charset=utf-8")
    text = json.dumps(body, separators=(",", ":"))
    return Response(text, status, merged, media_type="application/json")


def public_reason(decision: Decision) -> tuple[str, str | None]:
    """The reason and hint a person may see (an internal error says nothing more)."""
    if not decision.reasons:
        return "Access denied.", None
    reason = decision.reasons[0]
    if reason.code == "internal_error":
        return INTERNAL_REASON, None
    return reason.message, reason.hint


def denied(decision: Decision, *, html: bool) -> Response:
    """403 for a decision that denied an identified caller."""
    reason, hint = public_reason(decision)
    body = {
        "error": "access_denied",
        "decision_id": decision.decision_id,
        "reason": reason,
        "hint": hint,
    }
    extra = {"x-verity-decision-id": decision.decision_id}
    return _render(
        403, body, html=html, message=reason, hint=hint,
        decision_id=decision.decision_id, headers=extra,
    )  # fmt: skip


def challenge(realm: str, error_description: str | None) -> str:
    """The RFC 6750 ``WWW-Authenticate`` value; no error code when no token was sent."""
    if error_description is None:
        return f'Bearer realm="{realm}"'
    description = error_description.replace('"', "'").replace("\\", "")
    return f'Bearer realm="{realm}", error="invalid_token", error_description="{description}"'


def unauthenticated(
    realm: str,
    *,
    html: bool,
    error_description: str | None = None,
    decision: Decision | None = None,
) -> Response:
    """401 with a Bearer challenge: no token (``error_description`` None) or a bad one."""
    message = error_description or "Authentication is required to access this resource."
    body: dict[str, object] = {
        "error": "invalid_token" if error_description else "unauthenticated",
        "error_description": message,
    }
    headers = {"www-authenticate": challenge(realm, error_description)}
    decision_id = decision.decision_id if decision is not None else None
    if decision_id is not None:
        body["decision_id"] = decision_id
        headers["x-verity-decision-id"] = decision_id
    return _render(401, body, html=html, message=message, decision_id=decision_id, headers=headers)


def error(status: int, message: str, *, html: bool) -> Response:
    """A plain 4xx/5xx with a fixed public ``message``."""
    body = {"error": _CODES.get(status, "error"), "error_description": message}
    return _render(status, body, html=html, message=message)
