"""HTTP adapter to an OpenID Provider: discovery metadata and token-endpoint calls.

HTTPS only (HTTP for loopback hosts), no redirects followed, bounded size and time,
environment proxies ignored for loopback. Error answers are reduced to their OAuth
``error`` code; bodies, codes and tokens never reach a log line or an exception text.
"""

from __future__ import annotations

import functools
import json
import re
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..config import is_loopback_host, require_secure_url
from .errors import ProviderError

MAX_RESPONSE = 1 << 20
_ERROR_CODE = re.compile(r"^[a-z_]{1,64}$")


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """The parts of a discovery document the relying party uses."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    end_session_endpoint: str | None = None


@dataclass(frozen=True, slots=True)
class TokenResponse:
    """A successful token-endpoint answer (tokens are secrets: no repr)."""

    id_token: str | None
    access_token: str | None
    refresh_token: str | None
    expires_in: float | None

    def __repr__(self) -> str:
        return "TokenResponse(<redacted>)"


def _secure(url: object, what: str) -> str:
    if not isinstance(url, str):
        raise ProviderError(f"discovery: '{what}' is missing")
    try:
        return require_secure_url(url)
    except ValueError:
        raise ProviderError(f"discovery: '{what}' is not an https (or loopback) URL") from None


@functools.cache
def _tls() -> ssl.SSLContext:
    """httpx's default TLS context (certificate verification on), built once."""
    return httpx.create_ssl_context()


def _client(url: str, timeout: float, transport: httpx.AsyncBaseTransport | None) -> Any:
    loopback = is_loopback_host(urlsplit(url).hostname)
    return httpx.AsyncClient(
        timeout=timeout,
        follow_redirects=False,
        trust_env=not loopback,
        transport=transport,
        verify=_tls(),
    )


def _json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    if len(response.content) > MAX_RESPONSE:
        raise ProviderError(f"{what}: response larger than {MAX_RESPONSE} bytes")
    try:
        value = json.loads(response.content)
    except (ValueError, RecursionError):
        raise ProviderError(f"{what}: HTTP {response.status_code}, not JSON") from None
    if not isinstance(value, dict):
        raise ProviderError(f"{what}: not a JSON object")
    return value


def _error_code(body: dict[str, Any]) -> str:
    code = body.get("error")
    return code if isinstance(code, str) and _ERROR_CODE.match(code) else "unknown"


async def fetch_metadata(
    issuer: str, *, timeout: float, transport: httpx.AsyncBaseTransport | None = None
) -> ProviderMetadata:
    """Discovery (OIDC Discovery 1.0 section 4): the document must name ``issuer`` exactly."""
    url = _secure(issuer.rstrip("/") + "/.well-known/openid-configuration", "issuer")
    try:
        async with _client(url, timeout, transport) as client:
            response = await client.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise ProviderError(f"discovery {url}: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise ProviderError(f"discovery {url}: HTTP {response.status_code}")
    document = _json_object(response, f"discovery {url}")
    if document.get("issuer") != issuer:
        raise ProviderError(f"discovery {url}: 'issuer' is not the configured issuer")
    methods = document.get("code_challenge_methods_supported")
    if isinstance(methods, list) and "S256" not in methods:
        raise ProviderError(f"discovery {url}: the provider does not support PKCE S256")
    end_session = document.get("end_session_endpoint")
    return ProviderMetadata(
        issuer=issuer,
        authorization_endpoint=_secure(document.get("authorization_endpoint"), "authorization"),
        token_endpoint=_secure(document.get("token_endpoint"), "token_endpoint"),
        end_session_endpoint=None if end_session is None else _secure(end_session, "end_session"),
    )


def _token_response(body: dict[str, Any]) -> TokenResponse:
    def text(name: str) -> str | None:
        value = body.get(name)
        return value if isinstance(value, str) and value else None

    expires = body.get("expires_in")
    if not isinstance(expires, int | float) or isinstance(expires, bool) or expires <= 0:
        expires = None
    return TokenResponse(
        id_token=text("id_token"),
        access_token=text("access_token"),
        refresh_token=text("refresh_token"),
        expires_in=None if expires is None else float(expires),
    )


async def token_request(
    endpoint: str,
    form: dict[str, str],
    *,
    auth: tuple[str, str] | None,
    timeout: float,
    transport: httpx.AsyncBaseTransport | None = None,
) -> TokenResponse:
    """POST ``form`` to the token endpoint; ``auth`` is HTTP Basic client authentication."""
    try:
        async with _client(endpoint, timeout, transport) as client:
            response = await client.post(
                endpoint, data=form, auth=auth, headers={"Accept": "application/json"}
            )
    except httpx.HTTPError as exc:
        raise ProviderError(f"token endpoint: {type(exc).__name__}") from None
    body = _json_object(response, "token endpoint")
    if response.status_code != 200:
        code = _error_code(body)
        raise ProviderError(
            f"token endpoint: HTTP {response.status_code} error={code}", error_code=code
        )
    return _token_response(body)
