"""What the gateway answers itself: 401 challenges, 403 denies, 4xx/5xx errors.

Browsers (``Accept`` prefers ``text/html``) get a small HTML page rendered by Jinja2
with autoescaping; everything else gets JSON. Only public text appears: the decision id,
the human reason and the hint for a deny; a fixed sentence for every other error. No
exception text, stack trace, rule internals or token ever reaches a client.
"""

from __future__ import annotations

import json
import shlex
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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
code,pre{font-size:.95em}small{color:#666}pre{background:#f4f6f8;padding:.6rem;overflow-x:auto}
nav{margin-top:2rem;border-top:1px solid #ddd;padding-top:.8rem}nav a{margin-right:1rem}
</style></head><body>
<h1>{{ title }}</h1>
{% if who %}<p><small>Signed in as <strong>{{ who }}</strong>.</small></p>{% endif %}
<p>{{ message }}</p>
{% if hint %}<p class="hint"><strong>What you can do:</strong> {{ hint }}</p>{% endif %}
{% for step in steps %}<p>{{ step.text }}{% if step.link %}
 <a href="{{ step.link }}">{{ step.label }}</a>{% endif %}</p>
{% if step.command %}<pre><code>{{ step.command }}</code></pre>{% endif %}{% endfor %}
{% if decision_id %}<p><small>Decision id: <code>{{ decision_id }}</code>
 &mdash; quote it when you contact your administrator.</small></p>{% endif %}
{% if links %}<nav>{% for label, href in links %}<a href="{{ href }}">{{ label }}</a>{% endfor %}
</nav>{% endif %}
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
FAVICON_PATH = "/favicon.ico"


def _favicon() -> bytes:
    """A 16x16 icon (a dark square with a lighter inner square) as an ICO holding a PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    dark, light = b"\x1f\x3a\x5f", b"\xe8\xf0\xf8"
    rows = b"".join(
        b"\x00" + b"".join(light if 4 <= x < 12 and 4 <= y < 12 else dark for x in range(16))
        for y in range(16)
    )
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )
    return (
        struct.pack("<HHH", 0, 1, 1)
        + struct.pack("<BBBBHHII", 16, 16, 0, 0, 1, 32, len(png), 22)
        + png
    )


FAVICON = _favicon()
FAVICON_HEADERS = {
    "cache-control": "public, max-age=86400",
    "content-type": "image/x-icon",
    "x-content-type-options": "nosniff",
}
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


@dataclass(frozen=True, slots=True)
class Step:
    """One next step on a deny page: words, and a link on the gateway or a command."""

    text: str
    link: str | None = None
    label: str = ""
    command: str | None = None


@dataclass(frozen=True, slots=True)
class DenyContext:
    """What a deny page offers besides the reason. Links are paths on the gateway (a
    forward-auth deny has none: its page is served on the application's host)."""

    who: str | None = None
    principal_id: str | None = None
    method: str | None = None
    path: str | None = None
    home: str | None = None
    sign_out: str | None = None
    sign_in_again: str | None = None
    local_users: bool = False
    """Users of the embedded IdP: a second factor is enrolled with ``verity users``."""


_STEP_UP = frozenset({"auth.mfa", "auth.mfa_age", "auth.methods", "auth.auth_age"})


def next_steps(decision: Decision, context: DenyContext) -> list[Step]:
    """The concrete next steps for a deny's remedies: sign in again (and how to get a
    second factor), or the exact command that requests a just-in-time grant (there is no
    web form for it yet, so no link)."""
    remedies = decision.reasons[0].remedies if decision.reasons else ()
    steps: list[Step] = []
    codes = {remedy.code for remedy in remedies}
    if codes & _STEP_UP and context.sign_in_again:
        steps.append(Step("Sign in again, entering the code from your authenticator app:",
                          context.sign_in_again, "sign in again"))  # fmt: skip
        if "auth.mfa" in codes and context.local_users and context.who:
            steps.append(Step(
                "No second factor set up yet? It cannot be enrolled in the browser yet: ask "
                "your administrator to run this command on the Verity host, add the "
                "otpauth:// link it prints to your authenticator app, then sign in again:",
                command=f"verity users reset-mfa {shlex.quote(context.who)} --enroll",
            ))  # fmt: skip
    for remedy in remedies:
        if remedy.code == "jit.grant" and remedy.values and context.principal_id:
            target = f"{context.method or 'GET'} {context.path or '/'}"
            steps.append(Step(
                "Request just-in-time access (there is no web form yet): run this command; "
                "someone else approves it, then reload this page:",
                command=(f"verity grants request {shlex.quote(remedy.values[0])} --for 1h "
                         f"--reason {shlex.quote('access to ' + target)} "
                         f"--principal {shlex.quote(context.principal_id)}"),
            ))  # fmt: skip
    return steps


def _links(context: DenyContext | None) -> list[tuple[str, str]]:
    if context is None:
        return []
    links = [("Home", context.home)] if context.home else []
    return links + ([("Sign out", context.sign_out)] if context.sign_out else [])


def _render(
    status: int,
    body: Mapping[str, object],
    *,
    html: bool,
    message: str,
    hint: str | None = None,
    decision_id: str | None = None,
    headers: Mapping[str, str] | None = None,
    context: DenyContext | None = None,
    steps: Sequence[Step] = (),
) -> Response:
    merged = {**SECURITY_HEADERS, **(headers or {})}
    if html:
        page = _TEMPLATE.render(
            title=_TITLES.get(status, "Error"), message=message, hint=hint,
            decision_id=decision_id, who=context.who if context else None, steps=steps,
            links=_links(context),
        )  # fmt: skip
        return Response(page, status, merged, media_type="text/html; charset=utf-8")
    text = json.dumps(body, separators=(",", ":"))
    return Response(text, status, merged, media_type="application/json")


def public_reason(decision: Decision) -> tuple[str, str | None]:
    """The sentence and next step a person may see (an internal error says nothing more);
    the engine's words (``Reason.message``) stay in the audit log and ``explain``."""
    if not decision.reasons:
        return "Access denied.", None
    reason = decision.reasons[0]
    if reason.code == "internal_error":
        return INTERNAL_REASON, None
    return reason.summary, reason.hint


def denied(decision: Decision, *, html: bool, context: DenyContext | None = None) -> Response:
    """403 for a decision that denied an identified caller."""
    reason, hint = public_reason(decision)
    body = {
        "error": "access_denied",
        "decision_id": decision.decision_id,
        "reason": reason,
        "hint": hint,
    }
    extra = {"x-verity-decision-id": decision.decision_id}
    internal = bool(decision.reasons) and decision.reasons[0].code == "internal_error"
    steps = next_steps(decision, context) if html and context and not internal else []
    return _render(
        403, body, html=html, message=reason, hint=hint,
        decision_id=decision.decision_id, headers=extra, context=context, steps=steps,
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
