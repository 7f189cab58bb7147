"""Where the browser may go after login: relative paths and configured hosts only.

``safe_return_url`` is the single gate against open redirects. It rejects anything a
browser could read as another origin: ``//evil``, ``/\\evil``, ``https://evil``,
``https://good@evil``, control characters (browsers drop tabs and newlines, turning
``/\\t/evil`` into ``//evil``) and percent-encoded spellings of all of these.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

MAX_RETURN_URL = 2048
_DECODE_ROUNDS = 4


def _decoded_forms(untrusted: str) -> list[str]:
    """``untrusted`` and its successive percent-decodings, until stable."""
    forms = [untrusted]
    for _ in range(_DECODE_ROUNDS):
        decoded = unquote(forms[-1])
        if decoded == forms[-1]:
            break
        forms.append(decoded)
    return forms


def _suspicious(text: str, *, raw: bool) -> bool:
    """Backslashes and control characters (and, unencoded, spaces): never sent back."""
    lowest = 0x21 if raw else 0x20
    return "\\" in text or any(ord(ch) < lowest or ord(ch) == 0x7F for ch in text)


def host_allowed(host: str, allowed_hosts: Iterable[str]) -> bool:
    """Whether ``host`` (lower-case) equals an allowed host or matches a ``*.domain`` entry."""
    for allowed in allowed_hosts:
        if allowed.startswith("*."):
            if host.endswith(allowed[1:]) and len(host) > len(allowed) - 1:
                return True
        elif host == allowed:
            return True
    return False


def _relative_ok(forms: list[str]) -> bool:
    return all(f.startswith("/") and not f.startswith("//") for f in forms)


def _absolute_ok(untrusted: str, allowed_hosts: Iterable[str]) -> bool:
    try:
        parts = urlsplit(untrusted)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not host or "@" in parts.netloc:
        return False
    return host_allowed(host.rstrip("."), allowed_hosts)


def safe_return_url(
    untrusted: str | None, *, allowed_hosts: Iterable[str] = (), default: str = "/"
) -> str:
    """``untrusted`` if it is a safe place to send the browser, else ``default``.

    Safe: a path starting with exactly one ``/``, or an ``http(s)`` URL whose host is in
    ``allowed_hosts`` (exact, or ``*.example.com`` for subdomains), with no user info.
    Every percent-decoding of the value must pass the same checks.
    """
    if not untrusted or len(untrusted) > MAX_RETURN_URL:
        return default
    forms = _decoded_forms(untrusted)
    if any(_suspicious(form, raw=i == 0) for i, form in enumerate(forms)):
        return default
    if untrusted.startswith("/"):
        return untrusted if _relative_ok(forms) else default
    hosts = tuple(allowed_hosts)
    if all(_absolute_ok(form, hosts) for form in forms):
        return untrusted
    return default
