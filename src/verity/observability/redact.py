"""Redaction (sans-I/O): secrets and tokens never reach a log line.

Two independent nets, applied to every value of every event, nested dicts and lists
included:

- by key name: a value under a key that names a credential (``authorization``,
  ``cookie``, ``set-cookie``, ``token``, ``password``, ``secret``, ``assertion``,
  ``client_secret``, ``api_key``, ...; any case, ``-`` or ``_``) becomes ``<redacted>``;
  so does the second item of a ``(name, value)`` header pair with such a name;
- by value shape, inside any string (messages and exception text included): JWT/JWS/JWE
  compact strings become ``<redacted jwt>``, ``Bearer``/``Basic`` credentials become
  ``Bearer <redacted>``, ``token=...``-style query and form parameters and
  ``password: ...``-style fragments keep their name and lose their value.

Objects other than JSON scalars are rendered with ``repr`` first and then scrubbed, so
nothing reaches the renderer unchecked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from typing import Any

REDACTED = "<redacted>"
REDACTED_JWT = "<redacted jwt>"
MAX_DEPTH = 8

_SECRET_KEY = re.compile(
    r"authorization|cookie|token|passw|secret|assertion|credential|api_?key|private_?key"
    r"|session_?id|^otp$|^totp|^code_verifier$|^authorization_code$|^x_verity_assertion$"
)
# eyJ... (base64url of '{"') followed by one to four more base64url segments.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{2,}(?:\.[A-Za-z0-9_-]*){1,4}")
_SCHEME = re.compile(r"(?i)\b(bearer|basic|digest|negotiate)\s+[A-Za-z0-9\-._~+/]+=*")
# any identifier ending in a credential word: token, id_token, x_verity_assertion, ...
_NAMES = (
    r"[A-Za-z0-9_-]*(?:token|secret|passw(?:or)?d|assertion|api[-_]?key|authorization"
    r"|credentials?|cookie|code[-_]verifier)"
)
_B = r"(?<![A-Za-z0-9_-])"
_VALUE = r"(?!<redacted)[^\s&'\",;}]+"
# name=value or name: value (also inside a dict repr: 'password': 'x').
_PARAM = re.compile(rf"(?i){_B}({_NAMES})(['\"]?\s*[=:]\s*)(['\"]?){_VALUE}")
# query/form parameters that carry a credential only in name=value form (?code=...).
_QUERY = re.compile(rf"(?i){_B}(code|state|nonce|session|sid)(=)(){_VALUE}")
# a Cookie or Set-Cookie header: the whole rest of the line.
_COOKIE = re.compile(rf"(?i){_B}(set-cookie|cookie)(['\"]?\s*[=:]\s*)(['\"]?)[^\r\n'\"]+")
# a (name, value) pair in a repr: ('Cookie', 'a=1') or (b'authorization', b'...').
_PAIR = re.compile(rf"(?i)(b?['\"]{_NAMES}['\"]\s*,\s*)(b?)(['\"])(?:(?!\3).)*\3")


def is_secret_key(key: str) -> bool:
    """True when a field or header named ``key`` holds a credential."""
    return _SECRET_KEY.search(key.strip().lower().replace("-", "_")) is not None


def scrub_text(text: str) -> str:
    """``text`` with every token-shaped substring and credential parameter masked."""
    if not text:
        return text
    text = _JWT.sub(REDACTED_JWT, text)
    text = _SCHEME.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3)}{REDACTED}{m.group(3)}", text)
    for pattern in (_COOKIE, _PARAM, _QUERY):
        text = pattern.sub(_mask, text)
    return text


def _mask(match: re.Match[str]) -> str:
    return f"{match.group(1)}{match.group(2)}{match.group(3)}{REDACTED}"


def _key_text(key: object) -> str:
    if isinstance(key, bytes):
        return key.decode("latin-1")
    return key if isinstance(key, str) else str(key)


def _is_header_pair(value: tuple[Any, ...] | list[Any]) -> bool:
    return (
        len(value) == 2 and isinstance(value[0], str | bytes) and is_secret_key(_key_text(value[0]))
    )


def redact(value: Any, *, depth: int = 0) -> Any:
    """``value`` made safe to log: containers copied with secrets masked, strings scrubbed."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, bytes):
        return scrub_text(value.decode("latin-1"))
    if depth >= MAX_DEPTH:
        return "<truncated>"
    if isinstance(value, Mapping):
        return redact_mapping(value, depth=depth + 1)
    if isinstance(value, tuple | list | set | frozenset):
        items = list(value)
        if isinstance(value, tuple | list) and _is_header_pair(items):
            return [_key_text(items[0]), REDACTED]
        return [redact(item, depth=depth + 1) for item in items]
    return scrub_text(repr(value))


def redact_mapping(values: Mapping[Any, Any], *, depth: int = 0) -> dict[str, Any]:
    """A copy of ``values`` with secret-named keys masked and every other value redacted."""
    clean: dict[str, Any] = {}
    for key, value in values.items():
        name = _key_text(key)
        if is_secret_key(name) and value is not None:
            clean[name] = REDACTED
        else:
            clean[name] = redact(value, depth=depth)
    return clean


# structlog event keys that name the logging call itself, never user data.
_STRUCTURAL = frozenset({"event", "level", "timestamp", "logger", "_record", "_from_structlog"})


def redact_event(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> dict[str, Any]:
    """structlog processor: redact every field of the event (the message is scrubbed)."""
    clean: dict[str, Any] = {}
    for key, value in event_dict.items():
        if key in _STRUCTURAL:
            clean[key] = redact(value) if key == "event" else value
        elif is_secret_key(key) and value is not None:
            clean[key] = REDACTED
        else:
            clean[key] = redact(value)
    return clean
