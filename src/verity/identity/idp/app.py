"""The provider over HTTP: a Starlette app to mount at the issuer's path (e.g. ``/idp``).

    GET  /.well-known/openid-configuration    discovery
    GET  /jwks                                 public signing keys
    GET  /authorize                            login form (code flow + PKCE S256)
    POST /login, /login/otp                    password, then TOTP (CSRF-protected)
    POST /token                                code exchange, refresh
    GET  /userinfo                             claims for a bearer access token

Blocking work (argon2, SQLite) runs in the thread pool. Pages are never framed or cached.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ..errors import TokenError
from ..idp_config import SCOPE_CLAIMS, SUPPORTED_SCOPES
from ..unavailable import EXCEPTION_HANDLERS
from ._templates import render
from .authorize import RedirectableError
from .errors import OAuthError
from .provider import EXPIRED, CsrfError, IdentityProvider, LoginStep
from .token_endpoint import token_response
from .userinfo import userinfo

BROWSER_COOKIE = "verity_idp_browser"
_COOKIE_VALUE = re.compile(r"[A-Za-z0-9_-]{43}")
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
    ),
}
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class BadForm(Exception):
    """The request body or query is not an acceptable form."""


def _single(pairs: list[tuple[str, str]]) -> dict[str, str]:
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise BadForm("a parameter is repeated")
        form[name] = value
    return form


async def read_form(request: Request, limit: int) -> dict[str, str]:
    """The urlencoded body (at most ``limit`` bytes, each parameter once)."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != (
        "application/x-www-form-urlencoded"
    ):
        raise BadForm("expected application/x-www-form-urlencoded")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BadForm("request body too large")
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        raise BadForm("malformed form") from None
    return _single(pairs)


_NOTICES = {  # fixed sentences: the parameter only chooses one (``verity_notice``)
    "signed_out": "You signed out. Sign in again to continue.",
    "session_ended": "Your session has ended (it was signed out elsewhere, revoked or expired). "
    "Sign in again to continue.",
}


def _page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(render(name, **context), status_code=status, headers=_PAGE_HEADERS)


def _error_page(message: str, status: int = 400) -> HTMLResponse:
    return _page("error.html", status, title="Sign-in problem", error=message)


class IdpApp:
    """Builds the Starlette application for one ``IdentityProvider``."""

    def __init__(self, provider: IdentityProvider) -> None:
        self.provider = provider
        self.config = provider.config
        self.base = self.config.cookie_path.rstrip("/")

    def discovery(self, request: Request) -> JSONResponse:
        """OpenID Connect Discovery 1.0 metadata."""
        issuer = self.config.issuer
        document = {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/authorize",
            "token_endpoint": f"{issuer}/token",
            "userinfo_endpoint": f"{issuer}/userinfo",
            "jwks_uri": f"{issuer}/jwks",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [self.config.keys.algorithm],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "none",
            ],
            "scopes_supported": list(SUPPORTED_SCOPES),
            "claims_supported": [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "nonce",
                "acr",
                "amr",
                "azp",
                *dict.fromkeys(claim for claims in SCOPE_CLAIMS.values() for claim in claims),
            ],
            "claims_parameter_supported": False,
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
            "authorization_response_iss_parameter_supported": True,
        }
        return JSONResponse(document, headers={"Cache-Control": "public, max-age=300"})

    async def jwks(self, request: Request) -> JSONResponse:
        """The JWK Set; cached by verifiers for less than a new key's publication lead."""
        provider = self.provider
        await run_in_threadpool(provider.keys.ensure)
        document = await run_in_threadpool(provider.keys.jwks)
        max_age = int(min(300, self.config.keys.publish_before_use_seconds / 2))
        cache = f"public, max-age={max_age}" if max_age > 0 else "no-cache"
        return JSONResponse(document, headers={"Cache-Control": cache})

    def _name(self, client_id: str) -> str:
        """What the sign-in form calls the client: its display name, else its id."""
        client = self.config.client(client_id)
        return (client.display_name or client_id) if client is not None else client_id

    def _form_page(self, name: str, tx_id: str, csrf: str, **context: Any) -> HTMLResponse:
        status = int(context.pop("status", 200))
        action = f"{self.base}/login" + ("/otp" if name == "otp.html" else "")
        return _page(name, status, action=action, tx=tx_id, csrf=csrf, **context)

    async def authorize(self, request: Request) -> Response:
        """Validate the request, then show the login form (bound to a browser cookie)."""
        try:
            params = _single(list(request.query_params.multi_items()))
            cookie = request.cookies.get(BROWSER_COOKIE, "")
            browser = cookie if _COOKIE_VALUE.fullmatch(cookie) else None
            tx = await run_in_threadpool(self.provider.start, params, browser=browser)
        except BadForm:
            return _error_page("The request repeats a parameter.")
        except RedirectableError as exc:
            return RedirectResponse(exc.location(self.config.issuer), status_code=303)
        except OAuthError as exc:
            return _error_page(exc.description)
        response = self._form_page(
            "login.html", tx.id, tx.csrf, title="Sign in", client_name=self._name(tx.client_id),
            email="", notice=_NOTICES.get(params.get("verity_notice", "")),
        )  # fmt: skip
        response.set_cookie(
            BROWSER_COOKIE,
            tx.browser,
            max_age=int(self.config.lifetimes.login_transaction),
            path=self.config.cookie_path,
            secure=self.config.secure_cookies,
            httponly=True,
            samesite="lax",
        )
        return response

    async def _login_form(self, request: Request) -> tuple[dict[str, str], Any] | Response:
        try:
            form = await read_form(request, self.config.max_body_bytes)
            tx = self.provider.transaction(
                form.get("tx", ""),
                csrf=form.get("csrf", ""),
                browser=request.cookies.get(BROWSER_COOKIE, ""),
            )
        except BadForm:
            return _error_page("The form could not be read.")
        except CsrfError:
            return _error_page("The form is invalid (CSRF check failed).", 403)
        if tx is None:
            return _error_page(EXPIRED)
        return form, tx

    def _step(self, step: LoginStep, tx: Any, email: str = "") -> Response:
        if step.redirect is not None:
            return RedirectResponse(step.redirect, status_code=303, headers=_NO_STORE)
        if step.need_otp:
            return self._form_page(
                "otp.html", tx.id, tx.csrf, title="Verification", error=step.error,
                status=step.status,
            )  # fmt: skip
        if step.status == 400:
            return _error_page(step.error or EXPIRED)
        return self._form_page(
            "login.html", tx.id, tx.csrf, title="Sign in", client_name=self._name(tx.client_id),
            email=email, error=step.error, status=step.status,
        )  # fmt: skip

    async def _throttle(self, ip: str, *, email: str = "", user_id: str | None = None) -> None:
        """Slow down attempts from an IP with many failures (asleep, not in a thread)."""
        wait = await run_in_threadpool(self.provider.throttle, ip, email=email, user_id=user_id)
        if wait > 0:
            await asyncio.sleep(wait)

    async def login(self, request: Request) -> Response:
        """The password step."""
        parsed = await self._login_form(request)
        if isinstance(parsed, Response):
            return parsed
        form, tx = parsed
        email = form.get("email", "")[:320]
        ip = request.client.host if request.client else "unknown"
        await self._throttle(ip, email=email)
        step = await run_in_threadpool(
            self.provider.password_step, tx, email=email, password=form.get("password", ""), ip=ip
        )
        return self._step(step, tx, email)

    async def login_otp(self, request: Request) -> Response:
        """The TOTP step."""
        parsed = await self._login_form(request)
        if isinstance(parsed, Response):
            return parsed
        form, tx = parsed
        if tx.pending_user is None:
            return _error_page(EXPIRED)
        ip = request.client.host if request.client else "unknown"
        await self._throttle(ip, user_id=tx.pending_user)
        step = await run_in_threadpool(self.provider.otp_step, tx, code=form.get("code", ""), ip=ip)
        return self._step(step, tx)

    async def token(self, request: Request) -> JSONResponse:
        """The token endpoint (errors per RFC 6749 5.2)."""
        try:
            form = await read_form(request, self.config.max_body_bytes)
            body = await run_in_threadpool(
                token_response, self.provider, form, request.headers.get("authorization")
            )
        except BadForm as exc:
            return _oauth_error(OAuthError("invalid_request", str(exc)))
        except OAuthError as exc:
            return _oauth_error(exc)
        return JSONResponse(body, headers=_NO_STORE)

    async def userinfo(self, request: Request) -> JSONResponse:
        """Claims of the user an access token stands for."""
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else ""
        try:
            claims = await run_in_threadpool(userinfo, self.provider, token)
        except OAuthError as exc:
            challenge = f'Bearer error="{exc.error}"'
            return JSONResponse(
                exc.body(), status_code=401, headers={"WWW-Authenticate": challenge}
            )
        except TokenError:
            challenge = 'Bearer error="invalid_token"'
            body = {"error": "invalid_token", "error_description": "The access token is invalid."}
            return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": challenge})
        return JSONResponse(claims, headers=_NO_STORE)

    def starlette(self) -> Starlette:
        """The ASGI application."""
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery, methods=["GET"]),
                Route("/jwks", self.jwks, methods=["GET"]),
                Route("/authorize", self.authorize, methods=["GET"]),
                Route("/login", self.login, methods=["POST"]),
                Route("/login/otp", self.login_otp, methods=["POST"]),
                Route("/token", self.token, methods=["POST"]),
                Route("/userinfo", self.userinfo, methods=["GET", "POST"]),
            ],
            exception_handlers=EXCEPTION_HANDLERS,  # store down: 503, nothing half-done
        )


def _oauth_error(exc: OAuthError) -> JSONResponse:
    headers: Mapping[str, str] = dict(_NO_STORE)
    if exc.status == 401:
        headers = {**_NO_STORE, "WWW-Authenticate": 'Basic realm="verity-idp"'}
    return JSONResponse(exc.body(), status_code=exc.status, headers=dict(headers))


def create_app(provider: IdentityProvider) -> Starlette:
    """The provider's ASGI app; mount it at the issuer URL's path."""
    return IdpApp(provider).starlette()
