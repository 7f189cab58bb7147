"""A relying party as the gateway would run it: login routes plus a protected page."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse

from verity.identity.oidc import LoginService, build_login_app
from verity.model import Principal

_CSRF = re.compile(r"name='csrf' value='([^']*)'")


def logout_token(page: httpx.Response) -> str:
    """The CSRF token of the sign-out confirmation page (GET /verity/logout)."""
    assert page.status_code == 200, page.text
    found = _CSRF.search(page.text)
    assert found is not None, page.text
    return found.group(1)


def gateway_app(service: LoginService) -> Any:
    """What the gateway does: login routes to the login app, everything else needs a session."""
    login_app = build_login_app(service)
    prefix = service.config.path_prefix + "/"

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"].startswith(prefix):
            await login_app(scope, receive, send)
            return
        principal = await service.authenticate_cookie(scope["headers"])
        request = Request(scope)
        if principal is None:
            response: Any = RedirectResponse(service.login_url(str(request.url)), 302)
        else:
            response = JSONResponse({"id": principal.id, "groups": sorted(principal.groups),
                                     "roles": sorted(principal.roles), "mfa": principal.mfa})  # fmt: skip
        await response(scope, receive, send)

    return app


@dataclass
class RP:
    service: LoginService
    url: str
    client: httpx.Client
    idp: Any
    extra: dict[str, Any] = field(default_factory=dict)

    def start(self, rd: str = "/app", **params: str) -> httpx.Response:
        return self.client.get("/verity/login", params={"rd": rd, **params})

    def authorize(self, start: httpx.Response) -> str:
        """Follow the IdP's authorization endpoint; returns the callback URL."""
        assert start.status_code == 302, start.text
        answer = httpx.get(start.headers["location"], follow_redirects=False)
        assert answer.status_code == 302
        return answer.headers["location"]

    def login(self, rd: str = "/app") -> httpx.Response:
        return self.client.get(self.authorize(self.start(rd)))

    def principal(self, cookie: str | None = None) -> Principal | None:
        value = cookie if cookie is not None else self.client.cookies.get("verity_session")
        headers = [(b"host", self.url.split("//")[1].encode()),
                   (b"cookie", f"verity_session={value}".encode())]  # fmt: skip
        return asyncio.run(self.service.authenticate_cookie(headers))

    def logout(self, **headers: str) -> httpx.Response:
        """Sign out as a browser does: the confirmation page, then its form (same origin)."""
        token = logout_token(self.client.get("/verity/logout"))
        origin = {"Origin": self.url, "Sec-Fetch-Site": "same-origin"}
        return self.client.post("/verity/logout", data={"csrf": token}, headers=origin | headers)
