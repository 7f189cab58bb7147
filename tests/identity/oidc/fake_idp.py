"""A tiny programmable OpenID Provider (Starlette, ES256) for the relying-party tests.

It auto-approves every authorization request for ``user`` (no login page), enforces
single-use codes, redirect_uri and PKCE S256 at its token endpoint, rotates refresh
tokens, and mints logout tokens. ``id_overrides`` changes the next ID tokens' claims
(``None`` removes one).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any
from urllib.parse import parse_qs, urlencode

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from verity.identity.dev import generate_private_key, public_jwk
from verity.identity.oidc import BACKCHANNEL_EVENT
from verity.identity.oidc.idtoken import token_hash_claim

CLIENT_ID = "verity-rp"
CLIENT_SECRET = "s3cret-client-secret"


class FakeIdP:
    def __init__(self) -> None:
        self.key = generate_private_key("ES256")
        self.kid = "idp-key-1"
        self.issuer = "http://127.0.0.1:0"
        self.reset()
        self.app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/jwks", self.jwks),
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
                Route("/end_session", self.end_session),
            ]
        )

    def reset(self) -> None:
        """Forget every login, token and override (between tests)."""
        self.user: dict[str, Any] = {
            "sub": "alice",
            "email": "alice@example.com",
            "email_verified": True,
            "groups": ["engineers"],
            "realm_access": {"roles": ["admin"]},
            "amr": ["pwd", "otp"],
        }
        self.id_overrides: dict[str, Any] = {}
        self.id_ttl = 300
        # When the user last authenticated here: set at each authorization, and kept by
        # refreshed ID tokens (OIDC Core 12.2), whatever second the refresh happens in.
        self.auth_time = int(time.time()) - 5
        self.codes: dict[str, dict[str, Any]] = {}
        self.refresh_tokens: dict[str, str] = {}
        self.authorize_requests: list[dict[str, str]] = []
        self.token_requests: list[dict[str, str]] = []
        self.token_errors: list[str] = []
        self.end_session_requests: list[dict[str, str]] = []
        self.sid = "idp-session-1"

    # -- endpoints --------------------------------------------------------------------------
    async def discovery(self, request: Request) -> Response:
        i = self.issuer
        return JSONResponse({
            "issuer": i, "jwks_uri": f"{i}/jwks", "authorization_endpoint": f"{i}/authorize",
            "token_endpoint": f"{i}/token", "end_session_endpoint": f"{i}/end_session",
            "code_challenge_methods_supported": ["S256"], "backchannel_logout_supported": True,
        })  # fmt: skip

    async def jwks(self, request: Request) -> Response:
        return JSONResponse({"keys": [public_jwk(self.key, "ES256", self.kid)]})

    async def authorize(self, request: Request) -> Response:
        params = dict(request.query_params)
        self.authorize_requests.append(params)
        self.auth_time = int(time.time()) - 5
        code = secrets.token_urlsafe(16)
        self.codes[code] = params
        query = urlencode({"code": code, "state": params.get("state", "")})
        return RedirectResponse(f"{params['redirect_uri']}?{query}", status_code=302)

    async def token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        self.token_requests.append(form)
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("authorization") != expected:
            return self._error("invalid_client", 401)
        if form.get("grant_type") == "refresh_token":
            return self._refresh(form)
        params = self.codes.pop(form.get("code", ""), None)
        if params is None or params["redirect_uri"] != form.get("redirect_uri"):
            return self._error("invalid_grant")
        verifier = form.get("code_verifier", "")
        digest = hashlib.sha256(verifier.encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != params["code_challenge"]:
            return self._error("invalid_grant")
        return self._tokens(nonce=params.get("nonce"))

    async def end_session(self, request: Request) -> Response:
        self.end_session_requests.append(dict(request.query_params))
        return Response("logged out")

    # -- helpers -------------------------------------------------------------------------------
    def _error(self, code: str, status: int = 400) -> Response:
        self.token_errors.append(code)
        return JSONResponse({"error": code}, status_code=status)

    def _refresh(self, form: dict[str, str]) -> Response:
        if self.refresh_tokens.pop(form.get("refresh_token", ""), None) is None:
            return self._error("invalid_grant")
        return self._tokens(nonce=None)

    def _tokens(self, *, nonce: str | None) -> Response:
        access = secrets.token_urlsafe(24)
        refresh = secrets.token_urlsafe(24)
        self.refresh_tokens[refresh] = self.user["sub"]
        claims: dict[str, Any] = {**self.user, "sid": self.sid,
                                  "at_hash": token_hash_claim(access, "ES256")}  # fmt: skip
        if nonce is not None:
            claims["nonce"] = nonce
        id_token = self.sign(self.id_claims(claims))
        return JSONResponse({"access_token": access, "token_type": "Bearer", "expires_in": 300,
                             "refresh_token": refresh, "id_token": id_token})  # fmt: skip

    def id_claims(self, extra: dict[str, Any]) -> dict[str, Any]:
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": CLIENT_ID, "iat": now, "exp": now + self.id_ttl,
                  "auth_time": self.auth_time, **extra, **self.id_overrides}  # fmt: skip
        return {k: v for k, v in claims.items() if v is not None}

    def sign(self, claims: dict[str, Any], typ: str = "JWT", key: Any = None) -> str:
        headers = {"kid": self.kid, "typ": typ}
        return jwt.encode(claims, key or self.key, algorithm="ES256", headers=headers)

    def logout_token(self, **overrides: Any) -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": CLIENT_ID, "iat": now, "exp": now + 120,
                  "jti": secrets.token_hex(8), "sub": self.user["sub"], "sid": self.sid,
                  "events": {BACKCHANNEL_EVENT: {}}, **overrides}  # fmt: skip
        return self.sign({k: v for k, v in claims.items() if v is not None}, typ="logout+jwt")
