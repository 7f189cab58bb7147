"""Signed cookies: HMAC-SHA256 over a purpose, a key version and the value.

    signer = CookieSigner({1: key}, current=1)
    raw = signer.sign("session", secret)         # "1.<secret>.<mac>"
    signer.unsign("session", raw)                # secret, or None if anything is off

The purpose is part of the MAC, so a login-transaction cookie can never be replayed as
a session cookie. Keys are versioned: cookies signed with an older key still verify
while that key is known, and new cookies use the newest one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from http.cookies import CookieError, SimpleCookie

from ...store import KeyStore

KEY_NAME = "verity.login.cookie"
MAX_COOKIE = 512
_MIN_KEY = 32


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class CookieSigner:
    """Signs and verifies cookie values with versioned HMAC keys (constant-time check)."""

    def __init__(self, keys: Mapping[int, bytes], *, current: int) -> None:
        """``keys`` maps version -> key (each >= 32 bytes); ``current`` signs new cookies."""
        if current not in keys or any(len(key) < _MIN_KEY for key in keys.values()):
            raise ValueError("cookie keys must include the current version, >= 32 bytes each")
        self._keys = dict(keys)
        self._current = current

    def _mac(self, purpose: str, version: int, value: str) -> str:
        message = f"{purpose}\x00{version}\x00{value}".encode()
        return _b64(hmac.new(self._keys[version], message, hashlib.sha256).digest())

    def sign(self, purpose: str, value: str) -> str:
        """``value`` (URL-safe text without dots) with its version and MAC."""
        return f"{self._current}.{value}.{self._mac(purpose, self._current, value)}"

    def unsign(self, purpose: str, untrusted: str | None) -> str | None:
        """The value of a cookie signed for ``purpose``, or ``None`` if it does not verify."""
        if not untrusted or len(untrusted) > MAX_COOKIE or untrusted.count(".") != 2:
            return None
        version_text, value, mac = untrusted.split(".")
        if not version_text.isdigit() or len(version_text) > 6:
            return None
        version = int(version_text)
        if version not in self._keys:
            return None
        if not hmac.compare_digest(mac.encode(), self._mac(purpose, version, value).encode()):
            return None
        return value


def signer_from_store(keys: KeyStore, *, configured: bytes | None = None) -> CookieSigner:
    """A signer using ``configured`` (from ``login.cookie_key``) or the key store's
    versions of ``verity.login.cookie`` (a first 256-bit version is created if none)."""
    if configured is not None:
        return CookieSigner({0: configured}, current=0)
    versions = keys.versions(KEY_NAME)
    if not versions:
        keys.put(KEY_NAME, secrets.token_bytes(32), algorithm="HS256")
        versions = keys.versions(KEY_NAME)
    table = {v.version: v.material for v in versions}
    return CookieSigner(table, current=max(table))


def cookie_values(cookie_header_values: list[str], name: str) -> list[str]:
    """Every value of cookie ``name`` in the request's ``Cookie`` headers."""
    found: list[str] = []
    for header in cookie_header_values:
        for part in header.split(";"):
            key, sep, value = part.strip().partition("=")
            if sep and key == name:
                found.append(value.strip().strip('"'))
    return found


def set_cookie(name: str, value: str, *, max_age: int, secure: bool, path: str = "/") -> str:
    """A ``Set-Cookie`` value: HttpOnly, SameSite=Lax, Secure when asked, no Domain."""
    jar: SimpleCookie = SimpleCookie()
    try:
        jar[name] = value
    except CookieError as exc:
        raise ValueError(f"bad cookie name {name!r}") from exc
    morsel = jar[name]
    morsel["path"] = path
    morsel["max-age"] = str(max(0, max_age))
    morsel["httponly"] = True
    morsel["samesite"] = "Lax"
    if secure:
        morsel["secure"] = True
    return morsel.OutputString()


def clear_cookie(name: str, *, secure: bool, path: str = "/") -> str:
    """A ``Set-Cookie`` value that deletes cookie ``name``."""
    return set_cookie(name, "", max_age=0, secure=secure, path=path)
