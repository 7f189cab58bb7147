"""The demo upstream app behind the Verity gateway (started by ``verity demo``, ``make run``).

It trusts nothing but the gateway's signed ``X-Verity-Assertion``, which it verifies
against the gateway's JWKS with ``verity.integrations.assertion.verify``, and shows the
person who they are, what the gateway decided and which pages to try.
"""

from __future__ import annotations

import asyncio
import functools
import html

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from verity.integrations.assertion import AssertionVerificationError, verify

PAGES = (
    ("/", "home: every signed-in person"),
    ("/docs/handbook", "docs: engineers, admins, and contractors with MFA"),
    ("/reports", "reports: engineers and admins"),
    ("/admin/settings", "admin: admins only"),
)


def create_demo_app(*, gateway_url: str, audience: str) -> Starlette:
    """The demo app; it verifies assertions issued by ``gateway_url`` for ``audience``."""
    jwks_url = f"{gateway_url}/.well-known/verity/jwks.json"

    async def page(request: Request) -> HTMLResponse:
        token = request.headers.get("x-verity-assertion", "")
        raw = request.scope.get("raw_path") or request.url.path.encode()
        try:
            claims = await asyncio.to_thread(
                functools.partial(
                    verify, token, jwks_url=jwks_url, issuer=gateway_url, audience=audience,
                    method=request.method, path=bytes(raw).decode("latin-1"),
                )
            )  # fmt: skip
        except AssertionVerificationError as exc:
            return HTMLResponse(f"<h1>Refused</h1><p>{html.escape(str(exc))}</p>", status_code=401)
        links = "".join(
            f'<li><a href="{path}">{path}</a> - {html.escape(text)}</li>' for path, text in PAGES
        )
        body = f"""<!doctype html><html><head><meta charset="utf-8"><title>Verity demo app</title>
<style>body{{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem}}
code{{background:#f3f3f3;padding:0 .2rem}}</style></head><body>
<h1>Hello, {html.escape(claims.email or claims.subject)}</h1>
<p>You reached <code>{html.escape(request.url.path)}</code>. The gateway allowed it
(decision <code>{html.escape(claims.decision_id or "")}</code>) and vouched for you with a
signed assertion that this app verified.</p>
<p>Groups: <code>{html.escape(", ".join(claims.groups) or "(none)")}</code></p>
<h2>Try</h2><ul>{links}</ul>
<p><a href="/verity/logout">Sign out</a></p></body></html>"""
        return HTMLResponse(body)

    return Starlette(routes=[Route("/{path:path}", page, methods=["GET", "HEAD", "POST"])])
