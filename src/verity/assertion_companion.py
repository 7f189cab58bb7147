"""The per-request companion of a reused identity assertion (``X-Verity-Request``).

On a route with an ``assertion_companion_key_file``, the gateway signs one ES256
assertion per (principal, route, device and trust facts) and reuses it for up to 30 s.
Such an assertion carries ``"cmp": 1`` and no ``req``: alone, it authorises nothing.
What binds one request travels next to it, in a compact value only the gateway and the
upstream can produce (they share the route's key, at least 32 bytes)::

    X-Verity-Request: base64url(JSON{jti, req, did, iat, n}) "." base64url(HMAC-SHA256)

``jti`` is the assertion's (the companion belongs to that assertion only), ``req`` the
request binding (``verity.request_binding``: method and canonical path), ``did`` the
request's decision id, ``iat`` when it was made (UNIX seconds) and ``n`` a value unique
to this request, which the upstream accepts once (its replay cache). The MAC is over the
base64url payload as sent. An HMAC costs about a microsecond where an ES256 signature
costs 30 to 80; the upstream checks it in constant time before reading the payload.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import os
import secrets
from pathlib import Path
from typing import Any

import orjson

COMPANION_CLAIM = "cmp"
COMPANION_HEADER = "x-verity-request"
MIN_KEY_BYTES = 32
MAX_COMPANION_BYTES = 1024


class CompanionKeyError(ValueError):
    """A companion key that is missing, unreadable or shorter than ``MIN_KEY_BYTES``."""


class CompanionError(ValueError):
    """A companion value that is malformed or whose MAC does not verify."""


def check_key(key: bytes) -> bytes:
    """``key`` if it is long enough to be a companion key, else ``CompanionKeyError``."""
    if len(key) < MIN_KEY_BYTES:
        raise CompanionKeyError(f"a companion key has at least {MIN_KEY_BYTES} bytes")
    return key


def load_key(path: Path) -> bytes:
    """The key in ``path``: its bytes without surrounding whitespace (e.g. the output of
    ``openssl rand -hex 32``). The message never includes the key."""
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise CompanionKeyError(f"{path}: cannot read the companion key ({exc.strerror})") from None
    try:
        return check_key(key)
    except CompanionKeyError as exc:
        raise CompanionKeyError(f"{path}: {exc}") from None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class _Nonces:
    """Unique per request: a per-process random prefix and a counter (no randomness per
    request), renewed after ``fork``."""

    __slots__ = ("counter", "prefix")

    def __init__(self) -> None:
        self.prefix = ""
        self.counter = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        self.prefix = secrets.token_urlsafe(12) + "."
        self.counter = itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}{next(self.counter):x}"


_NONCES = _Nonces()
os.register_at_fork(after_in_child=_NONCES.reset)


def make(key: bytes, *, jti: str, req: str, did: str, iat: int, n: str | None = None) -> str:
    """The companion value for one request."""
    payload = orjson.dumps(
        {"jti": jti, "req": req, "did": did, "iat": iat, "n": n or _NONCES.next()}
    )
    body = _b64(payload)
    mac = hmac.new(key, body.encode("ascii"), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def read(key: bytes, untrusted: str) -> dict[str, Any]:
    """The payload of a companion whose MAC verifies with ``key`` (checked in constant
    time before the payload is parsed); ``CompanionError`` otherwise. The caller checks
    what the fields say."""
    if len(untrusted) > MAX_COMPANION_BYTES or untrusted.count(".") != 1:
        raise CompanionError("not a companion value")
    body, _, mac = untrusted.partition(".")
    try:
        sent = _unb64(mac)
        raw_body = body.encode("ascii")
    except (binascii.Error, ValueError):
        raise CompanionError("not a companion value") from None
    expected = hmac.new(key, raw_body, hashlib.sha256).digest()
    if not hmac.compare_digest(sent, expected):
        raise CompanionError("the companion's MAC does not verify")
    try:
        payload = orjson.loads(_unb64(body))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise CompanionError("the companion's payload is not JSON") from None
    if not isinstance(payload, dict):
        raise CompanionError("the companion's payload is not an object")
    for name, kind in (("jti", str), ("req", str), ("did", str), ("n", str), ("iat", int)):
        value = payload.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CompanionError(f"the companion's {name!r} is missing or of the wrong type")
    return payload


__all__ = [
    "COMPANION_CLAIM",
    "COMPANION_HEADER",
    "MIN_KEY_BYTES",
    "CompanionError",
    "CompanionKeyError",
    "check_key",
    "load_key",
    "make",
    "read",
]
