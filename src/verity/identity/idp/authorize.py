"""Validation of authorization requests (the sans-I/O half of ``/authorize``).

Order matters for safety: the client and its exact ``redirect_uri`` are checked first,
and until both pass nothing is ever redirected (errors are shown as a page, so the
endpoint cannot be used as an open redirector). Later errors go back to the validated
``redirect_uri`` with ``error`` and ``state``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from urllib.parse import urlencode

from .config import IdpClient, IdpConfig
from .errors import OAuthError

_PKCE = re.compile(r"[A-Za-z0-9._~-]{43,128}")
_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
MAX_PARAM = 512


class RedirectableError(OAuthError):
    """An authorization error reported to the client's validated ``redirect_uri``."""

    def __init__(self, error: str, description: str, *, redirect_uri: str, state: str | None):
        super().__init__(error, description, status=303)
        self.redirect_uri = redirect_uri
        self.state = state

    def location(self, issuer: str) -> str:
        """The redirect carrying the error (RFC 6749 4.1.2.1, RFC 9207 ``iss``)."""
        params = {"error": self.error, "error_description": self.description}
        if self.state is not None:
            params["state"] = self.state
        params["iss"] = issuer
        return add_query(self.redirect_uri, params)


def add_query(uri: str, params: Mapping[str, str]) -> str:
    """``uri`` with ``params`` appended to its query."""
    return uri + ("&" if "?" in uri else "?") + urlencode(params)


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge of ``verifier`` (RFC 7636 4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def pkce_matches(untrusted_verifier: str, challenge: str) -> bool:
    """Whether the verifier is well-formed and hashes to ``challenge`` (constant time)."""
    if not _PKCE.fullmatch(untrusted_verifier):
        return False
    return hmac.compare_digest(pkce_challenge(untrusted_verifier), challenge)


def registered_client(config: IdpConfig, untrusted: Mapping[str, str]) -> tuple[IdpClient, str]:
    """The client and its exact, registered ``redirect_uri``; ``OAuthError`` otherwise
    (never redirected)."""
    client = config.client(untrusted.get("client_id", ""))
    if client is None:
        raise OAuthError("invalid_request", "Unknown client.")
    redirect_uri = untrusted.get("redirect_uri", "")
    if redirect_uri not in client.redirect_uris:
        raise OAuthError("invalid_request", "The redirect_uri is not registered for this client.")
    return client, redirect_uri


def _optional(untrusted: Mapping[str, str], name: str, fail: RedirectableError) -> str | None:
    value = untrusted.get(name)
    if value is not None and (not value or len(value) > MAX_PARAM):
        raise fail
    return value


def check_request(
    client: IdpClient, redirect_uri: str, untrusted: Mapping[str, str]
) -> tuple[tuple[str, ...], str, str | None, str | None]:
    """Validate the rest of the request; returns ``(scope, code_challenge, state, nonce)``.

    Raises ``RedirectableError``: ``code`` flow only, ``response_mode=query`` only (the
    error itself goes back in the query), ``prompt=none`` answered ``login_required`` (no
    provider session), ``openid`` scope, the client's registered scopes only, PKCE with
    S256 required, bounded ``state`` and ``nonce``.
    """
    raw_state = untrusted.get("state")
    state = raw_state if raw_state and len(raw_state) <= MAX_PARAM else None

    def fail(error: str, description: str) -> RedirectableError:
        return RedirectableError(error, description, redirect_uri=redirect_uri, state=state)

    if raw_state is not None and state is None:
        raise fail("invalid_request", "state is empty or too long.")
    if "request" in untrusted or "request_uri" in untrusted:
        raise fail("request_not_supported", "Request objects are not supported.")
    if untrusted.get("response_type") != "code":
        raise fail("unsupported_response_type", "Only response_type=code is supported.")
    if untrusted.get("response_mode", "query") != "query":
        raise fail("invalid_request", "Only response_mode=query is supported.")
    prompt = untrusted.get("prompt", "").split()
    if "none" in prompt:  # no provider session: a login without UI is never possible
        if len(prompt) > 1:
            raise fail("invalid_request", "prompt=none cannot be combined with other values.")
        raise fail("login_required", "The user must log in; prompt=none cannot be honoured.")
    scope = tuple(dict.fromkeys(untrusted.get("scope", "").split()))
    if "openid" not in scope:
        raise fail("invalid_scope", "The openid scope is required.")
    if not set(scope) <= set(client.scopes):
        raise fail("invalid_scope", "A requested scope is not allowed for this client.")
    challenge = untrusted.get("code_challenge", "")
    if untrusted.get("code_challenge_method") != "S256" or not _CHALLENGE.fullmatch(challenge):
        raise fail("invalid_request", "PKCE with code_challenge_method=S256 is required.")
    nonce = _optional(untrusted, "nonce", fail("invalid_request", "nonce is too long."))
    return scope, challenge, state, nonce
