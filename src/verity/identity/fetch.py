"""HTTP adapter: OIDC discovery and JWKS download with httpx (sync and async).

Only HTTPS, or HTTP to a loopback host; no redirects; bounded response size and time.
For loopback URLs proxy settings from the environment are ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from .config import IssuerConfig, is_loopback_host, require_secure_url
from .errors import InsecureUrlError, JwksError, KeyBindingError
from .jwks import cache_lifetime
from .keys import KeySet, keyset_from_jwks

_ACCEPT = {"Accept": "application/json, application/jwk-set+json"}


@dataclass(frozen=True, slots=True)
class FetchedKeys:
    """Keys from one successful fetch and how long they are fresh."""

    keys: KeySet
    ttl: float
    jwks_uri: str


def _secure(url: str) -> str:
    try:
        return require_secure_url(url)
    except ValueError as exc:
        raise InsecureUrlError(str(exc)) from None


def _client_options(url: str, timeout: float) -> dict[str, Any]:
    loopback = is_loopback_host(urlsplit(url).hostname)
    return {"timeout": timeout, "follow_redirects": False, "trust_env": not loopback}


def _check_status(response: httpx.Response, url: str) -> None:
    if response.status_code != 200:
        raise JwksError(f"GET {url}: HTTP {response.status_code}")


def _too_large(url: str, limit: int) -> JwksError:
    return JwksError(f"GET {url}: response larger than {limit} bytes")


def _json_object(body: bytes, url: str) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise JwksError(f"GET {url}: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise JwksError(f"GET {url}: not a JSON object")
    return value


class JwksFetcher:
    """Fetches one issuer's keys: discovery (unless ``jwks_uri`` is set), then the JWKS."""

    def __init__(
        self,
        config: IssuerConfig,
        *,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self._jwks_uri = _secure(config.jwks_uri) if config.jwks_uri else None
        self._discovered: str | None = None
        self._transport = transport
        self._async_transport = async_transport

    @property
    def source(self) -> str:
        """Where keys come from, for logs and status."""
        return self._jwks_uri or self.config.discovery_url

    def _jwks_from_discovery(self, document: Mapping[str, Any], url: str) -> str:
        if document.get("issuer") != self.config.issuer:
            raise JwksError(f"{url}: 'issuer' does not match the configured issuer")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise JwksError(f"{url}: no 'jwks_uri'")
        return _secure(jwks_uri)

    def _keys(self, body: bytes, headers: httpx.Headers, url: str) -> FetchedKeys:
        try:
            keys = keyset_from_jwks(_json_object(body, url), self.config.algorithms)
        except KeyBindingError as exc:
            raise JwksError(f"{url}: {exc}") from None
        ttl = cache_lifetime(headers.get("cache-control"), headers.get("age"), self.config.jwks)
        return FetchedKeys(keys, ttl, url)

    def fetch(self) -> FetchedKeys:
        """Download the keys (blocking). Raises ``JwksError``."""
        try:
            url = self._jwks_uri or self._discovered or self._discover()
            body, headers = self._get(url)
            return self._keys(body, headers, url)
        except JwksError:
            self._discovered = None
            raise

    def _discover(self) -> str:
        url = _secure(self.config.discovery_url)
        body, _ = self._get(url)
        self._discovered = self._jwks_from_discovery(_json_object(body, url), url)
        return self._discovered

    def _get(self, url: str) -> tuple[bytes, httpx.Headers]:
        limit = self.config.jwks.max_bytes
        options = _client_options(url, self.config.jwks.timeout_seconds)
        try:
            with (
                httpx.Client(transport=self._transport, **options) as client,
                client.stream("GET", url, headers=_ACCEPT) as response,
            ):
                _check_status(response, url)
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise _too_large(url, limit)
                return bytes(body), response.headers
        except httpx.HTTPError as exc:
            raise JwksError(f"GET {url}: {type(exc).__name__}: {exc}") from None

    async def afetch(self) -> FetchedKeys:
        """Download the keys (async). Raises ``JwksError``."""
        try:
            url = self._jwks_uri or self._discovered or await self._adiscover()
            body, headers = await self._aget(url)
            return self._keys(body, headers, url)
        except JwksError:
            self._discovered = None
            raise

    async def _adiscover(self) -> str:
        url = _secure(self.config.discovery_url)
        body, _ = await self._aget(url)
        self._discovered = self._jwks_from_discovery(_json_object(body, url), url)
        return self._discovered

    async def _aget(self, url: str) -> tuple[bytes, httpx.Headers]:
        limit = self.config.jwks.max_bytes
        options = _client_options(url, self.config.jwks.timeout_seconds)
        try:
            async with (
                httpx.AsyncClient(transport=self._async_transport, **options) as client,
                client.stream("GET", url, headers=_ACCEPT) as response,
            ):
                _check_status(response, url)
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise _too_large(url, limit)
                return bytes(body), response.headers
        except httpx.HTTPError as exc:
            raise JwksError(f"GET {url}: {type(exc).__name__}: {exc}") from None
