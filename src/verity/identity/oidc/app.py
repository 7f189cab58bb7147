"""The login routes as a Starlette app the gateway mounts (or serves on its own):

GET  {prefix}/login[?provider=NAME][&rd=URL]   chooser page, or 302 to the provider
GET  {prefix}/callback                          code exchange, new session, 302 to rd
GET  {prefix}/logout                            "Sign out?" page: a form with a CSRF token
POST {prefix}/logout                            with that token, same-origin only: revoke,
                                                303 to the provider's end-session endpoint
POST {prefix}/backchannel-logout                OIDC Back-Channel Logout 1.0
"""

from __future__ import annotations

import html
import logging
from urllib.parse import parse_qs, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ...audit.builders import authentication_event
from ...audit.ocsf import UserType
from ...audit.schema import UserRef
from ...audit.sink import publish
from ..notices import NOTICE_COOKIE, NOTICES
from ..unavailable import EXCEPTION_HANDLERS
from .cookies import clear_cookie, cookie_values, set_cookie
from .errors import LoginError, LogoutForgeryError, LogoutTokenError
from .redirects import safe_return_url
from .service import LoginService

log = logging.getLogger("verity.identity.oidc")
MAX_LOGOUT_BODY = 16384
_NOBODY = UserRef(uid="unknown", type=UserType.UNKNOWN)
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache", "Referrer-Policy": "no-referrer"}
_NO_FRAMES = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"}
_SAME_ORIGIN_FETCH = frozenset({"same-origin", "none"})  # Sec-Fetch-Site of our own pages


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    document = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head><body><h1>{html.escape(title)}</h1>"
        f"{body}</body></html>"
    )
    return HTMLResponse(document, status_code=status, headers=_NO_STORE | _NO_FRAMES)


def _redirect(location: str, *cookies: str, status: int = 302) -> Response:
    response = RedirectResponse(location, status_code=status, headers=_NO_STORE)
    for cookie in cookies:
        response.headers.append("set-cookie", cookie)
    return response


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def _failure_code(exc: LoginError) -> str:
    """A stable code for a failed login: the class name in snake_case, never its text."""
    name = type(exc).__name__.removesuffix("Error")
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def _one_cookie(request: Request, name: str) -> str | None:
    values = cookie_values(request.headers.getlist("cookie"), name)
    return values[0] if len(values) == 1 else None


def _require_same_origin(request: Request, base: str) -> None:
    """``LogoutForgeryError`` when the browser says the request comes from another site or
    origin (``Sec-Fetch-Site``, ``Origin``): a state change is refused then, token or not."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site.lower() not in _SAME_ORIGIN_FETCH:
        raise LogoutForgeryError(f"logout request with Sec-Fetch-Site {fetch_site[:20]!r}")
    origin = request.headers.get("origin")
    if origin is not None and _origin(origin) != _origin(base):
        raise LogoutForgeryError("logout request from another origin")


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> tuple[str, str, int | None] | None:
    """An origin as (scheme, host, port) with the default port filled in, so that
    ``https://gw.example.com:443`` (a ``public_url``) is the browser's
    ``https://gw.example.com``; ``None`` for ``null`` or anything unparsable."""
    try:
        parts = urlsplit(url.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, port or _DEFAULT_PORTS.get(parts.scheme)


async def _form_field(request: Request, name: str) -> str | None:
    """One field of an urlencoded form body (at most ``MAX_LOGOUT_BODY`` bytes)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_LOGOUT_BODY:
            return None
    values = parse_qs(body.decode("latin-1"), max_num_fields=8).get(name, [])
    return values[0] if len(values) == 1 else None


class _Routes:
    """The request handlers of one ``LoginService``."""

    def __init__(self, service: LoginService) -> None:
        self.service = service
        self.config = service.config

    def base_of(self, request: Request) -> str:
        return self.service.base_url(f"{request.url.scheme}://{request.url.netloc}")

    def chooser(self, return_url: str) -> Response:
        items = "".join(
            f"<li><a href='{html.escape(self.service.login_url(return_url, provider=p.name))}'>"
            f"{html.escape(p.label)}</a></li>"
            for p in self.config.providers
        )
        return _page("Sign in", f"<ul>{items}</ul>")

    def failed(self, exc: LoginError) -> Response:
        retry = html.escape(f"{self.config.path_prefix}/login")
        body = f"<p>{html.escape(exc.public_message)}</p><p><a href='{retry}'>Sign in</a></p>"
        return _page("Sign-in failed", body, exc.status)

    async def login(self, request: Request) -> Response:
        service, base = self.service, self.base_of(request)
        return_url = safe_return_url(
            request.query_params.get("rd"),
            allowed_hosts=service.allowed_hosts(base),
            default=self.config.default_redirect,
        )
        name = request.query_params.get("provider")
        if name is None and len(self.config.providers) == 1:
            name = self.config.providers[0].name
        if name is None:
            return self.chooser(return_url)
        try:
            url, tx = await service.start_login(provider=name, return_url=return_url, base=base)
        except LoginError as exc:
            log.warning("login start failed: %s", exc)
            return self.failed(exc)
        notice = request.query_params.get("notice")
        if notice in NOTICES:  # a fixed word, never text from the request
            url += ("&" if "?" in url else "?") + f"verity_notice={notice}"
        max_age = int(self.config.login_timeout_seconds)
        name = service.cookie_name(base, login=True)
        secure = service.secure(base)
        return _redirect(
            url, set_cookie(name, tx, max_age=max_age, secure=secure),
            clear_cookie(NOTICE_COOKIE, secure=secure),
        )  # fmt: skip

    async def callback(self, request: Request) -> Response:
        service, base = self.service, self.base_of(request)
        secure = service.secure(base)
        tx_name, session_name = service.cookie_name(base, login=True), service.cookie_name(base)
        query = request.query_params
        try:
            cookie, return_url = await service.complete_login(
                login_cookie=_one_cookie(request, tx_name),
                untrusted_state=query.get("state"),
                untrusted_code=query.get("code"),
                untrusted_error=query.get("error"),
                previous_session=_one_cookie(request, session_name),
                client_ip=_client_ip(request),
            )
        except LoginError as exc:
            log.warning("login callback failed: %s", exc)
            code = _failure_code(exc)
            event = authentication_event(
                _NOBODY, success=False, src_ip=_client_ip(request), status_detail=code,
                message=f"browser login failed: {code}",
            )  # fmt: skip
            await publish(service.events, event, name="login.failed", level="warning")
            response = self.failed(exc)
            response.headers.append("set-cookie", clear_cookie(tx_name, secure=secure))
            return response
        max_age = int(self.config.session_lifetime_seconds)
        session = set_cookie(session_name, cookie, max_age=max_age, secure=secure)
        return _redirect(return_url, session, clear_cookie(tx_name, secure=secure))

    async def logout_page(self, request: Request) -> Response:
        """GET: a confirmation page whose form POSTs this session's CSRF token (a GET
        changes nothing: a cross-site link or image cannot sign anyone out)."""
        service, base = self.service, self.base_of(request)
        token = service.logout_token(_one_cookie(request, service.cookie_name(base)))
        if token is None:
            return _redirect(self.config.post_logout_path)
        action = html.escape(f"{self.config.path_prefix}/logout")
        form = (
            f"<form method='post' action='{action}'><p>Sign out of this session?</p>"
            f"<input type='hidden' name='csrf' value='{html.escape(token)}'>"
            "<button type='submit'>Sign out</button></form>"
        )
        return _page("Sign out", form)

    async def logout(self, request: Request) -> Response:
        """POST from the confirmation page: same origin and this session's CSRF token,
        else 403 and the session stays."""
        service, base = self.service, self.base_of(request)
        name = service.cookie_name(base)
        try:
            _require_same_origin(request, base)
            location = await service.logout(
                session_cookie=_one_cookie(request, name),
                untrusted_csrf=await _form_field(request, "csrf"),
                base=base,
                client_ip=_client_ip(request),
            )
        except LogoutForgeryError as exc:
            log.warning("logout refused: %s", exc)
            again = html.escape(f"{self.config.path_prefix}/logout")
            body = f"<p>{html.escape(exc.public_message)}</p><p><a href='{again}'>Sign out</a></p>"
            return _page("Sign-out refused", body, exc.status)
        secure = service.secure(base)
        said = set_cookie(NOTICE_COOKIE, "1", max_age=60, secure=secure)  # "you signed out"
        return _redirect(location, clear_cookie(name, secure=secure), said, status=303)

    async def backchannel(self, request: Request) -> Response:
        headers = {"Cache-Control": "no-store"}
        invalid = JSONResponse({"error": "invalid_request"}, status_code=400, headers=headers)
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_LOGOUT_BODY:
                return invalid
        tokens = parse_qs(body.decode("latin-1"), max_num_fields=8).get("logout_token", [])
        if content_type != "application/x-www-form-urlencoded" or len(tokens) != 1:
            return invalid
        try:
            count = await self.service.backchannel_logout(tokens[0])
        except LogoutTokenError as exc:
            log.warning("back-channel logout rejected: %s", exc)
            return invalid
        log.info("back-channel logout: %d session(s) revoked", count)
        return Response(status_code=200, headers=headers)


def build_login_app(service: LoginService) -> Starlette:
    """The ASGI app serving the login routes of ``service`` under ``path_prefix``."""
    routes = _Routes(service)
    prefix = service.config.path_prefix
    return Starlette(
        routes=[
            Route(f"{prefix}/login", routes.login, methods=["GET"]),
            Route(f"{prefix}/callback", routes.callback, methods=["GET"]),
            Route(f"{prefix}/logout", routes.logout_page, methods=["GET"]),
            Route(f"{prefix}/logout", routes.logout, methods=["POST"]),
            Route(f"{prefix}/backchannel-logout", routes.backchannel, methods=["POST"]),
        ],
        exception_handlers=EXCEPTION_HANDLERS,  # store down: 503, nothing half-done
    )
