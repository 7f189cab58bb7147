"""Parsing of the small value languages inside a policy: durations, versions, day sets,
hour ranges, CIDRs, region codes, globs. Each parser raises ``ValueError`` with a message
fit to show an operator."""

from __future__ import annotations

import functools
import ipaddress
import re
import zoneinfo
from collections.abc import Iterable

from .ast import WEEKDAYS, Network

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)?\s*$")
_UNIT = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_VERSION = re.compile(r"^\d+(\.\d+){0,5}$")
_HOUR = re.compile(r"^([01]?\d|2[0-4]):([0-5]\d)$")
_REGION = re.compile(r"^[A-Z]{2}$")
_SPIFFE = re.compile(r"^spiffe://[a-z0-9._-]+(/[A-Za-z0-9._*-]+)*$")
_METHOD = re.compile(r"^[A-Z][A-Z-]*$")


def duration(value: object) -> int:
    """``90``, ``"30s"``, ``"15m"``, ``"1h"``, ``"7d"`` -> seconds (positive)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 15m, 1h or 7d")
    if isinstance(value, int):
        seconds = value
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration (use e.g. 30s, 15m, 1h, 7d)")
        seconds = int(match.group(1)) * _UNIT[match.group(2)]
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


def version_text(value: object) -> str:
    text = str(value).strip()
    if isinstance(value, bool) or not _VERSION.match(text):
        raise ValueError(f"{value!r} is not a version (use dotted numbers such as 14.2)")
    return text


@functools.lru_cache(maxsize=4096)
def version_tuple(untrusted: str) -> tuple[int, ...] | None:
    """``"14.2.1"`` -> ``(14, 2, 1)``; trailing zeros dropped so 14.0 == 14.

    A suffix after the numbers (``"10.0.19045-beta"``) is ignored; a string that does not
    start with a number gives ``None`` (an unknown version never satisfies a minimum).
    """
    match = re.match(r"^\s*v?(\d+(?:\.\d+){0,5})", untrusted)
    if not match:
        return None
    parts = [int(p) for p in match.group(1).split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def days(value: object) -> frozenset[int]:
    """``mon-fri``, ``"sat,sun"``, ``[mon, wed]``, ``any`` -> weekday numbers (Monday = 0)."""
    items = value if isinstance(value, list) else str(value).split(",")
    result: set[int] = set()
    for item in items:
        text = str(item).strip().lower()
        if text in ("any", "*", "all", "every"):
            return frozenset(range(7))
        first, _, last = text.partition("-")
        if first not in WEEKDAYS or (last and last not in WEEKDAYS):
            raise ValueError(f"{item!r} is not a day or day range (use mon..sun, e.g. mon-fri)")
        start = WEEKDAYS.index(first)
        stop = WEEKDAYS.index(last) if last else start
        span = (stop - start) % 7
        result.update((start + i) % 7 for i in range(span + 1))
    if not result:
        raise ValueError("no days given")
    return frozenset(result)


def hours(value: object) -> tuple[int, int]:
    """``"08:00-18:00"`` -> minutes (480, 1080); ``"22:00-06:00"`` wraps past midnight."""
    text = str(value).replace(" ", "")
    first, sep, last = text.partition("-")
    if not sep:
        raise ValueError(f"{value!r} is not an hour range (use HH:MM-HH:MM)")
    start, end = _minute(first), _minute(last)
    if start == end:
        raise ValueError(f"{value!r} is an empty hour range")
    if start >= 1440:
        raise ValueError("an hour range cannot start at 24:00")
    return start, end


def _minute(text: str) -> int:
    match = _HOUR.match(text)
    if not match or (match.group(1) == "24" and match.group(2) != "00"):
        raise ValueError(f"{text!r} is not a time of day (use HH:MM, 00:00 to 24:00)")
    return int(match.group(1)) * 60 + int(match.group(2))


def timezone(value: object) -> str:
    name = str(value).strip()
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone (e.g. Europe/Berlin, UTC)") from None
    return name


def network(value: object) -> tuple[Network, str | None]:
    """An address or CIDR range, normalized, and a warning when the spelling was unusual.

    Host bits set (``192.168.1.1/24``) mean the enclosing network (``192.168.1.0/24``),
    as in other policy engines and firewalls. An IPv4-mapped IPv6 range
    (``::ffff:10.0.0.0/104``) means the IPv4 range it maps (``10.0.0.0/8``): client
    addresses are compared in the same form (``::ffff:10.1.2.3`` is ``10.1.2.3``).
    """
    text = str(value).strip()
    if isinstance(value, bool) or not text:
        raise ValueError(f"{value!r} is not an IP address or CIDR")
    # Large policies repeat the same few ranges in every rule: parse each spelling once.
    found = _NETWORKS.get(text)
    if found is None:
        found = _network(value, text)
        if len(_NETWORKS) < _MAX_NETWORKS:
            _NETWORKS[text] = found
    return found


_NETWORKS: dict[str, tuple[Network, str | None]] = {}
_MAX_NETWORKS = 4096


def _network(value: object, text: str) -> tuple[Network, str | None]:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IP address or CIDR: {exc}") from None
    notes = []
    if net.network_address != ipaddress.ip_interface(text).ip:
        notes.append("host bits are set")
    mapped = _ipv4_mapped(net)
    if mapped is not None:
        net = mapped
        notes.append("an IPv4-mapped IPv6 range matches IPv4 clients")
    if not notes:
        return net, None
    return net, f"{text!r} means {net} ({'; '.join(notes)}): write {str(net)!r}"


def _ipv4_mapped(net: Network) -> Network | None:
    """The IPv4 network an IPv4-mapped IPv6 network (``::ffff:0:0/96`` and inside) maps."""
    if not isinstance(net, ipaddress.IPv6Network) or net.prefixlen < 96:
        return None
    if net.network_address.ipv4_mapped is None:
        return None
    return ipaddress.IPv4Network((net.network_address.ipv4_mapped, net.prefixlen - 96))


def claim_path(value: object) -> tuple[str, ...]:
    """``"a.b"`` -> ``("a", "b")``; a backslash escapes the next character, so
    ``"https://example\\.com/roles"`` is the one claim ``https://example.com/roles``."""
    if not isinstance(value, str) or not value:
        raise ValueError("a claim path is a non-empty string")
    segments: list[str] = []
    current: list[str] = []
    chars = iter(value)
    for char in chars:
        if char == "\\":
            escaped = next(chars, None)
            if escaped is None:
                raise ValueError(f"{value!r}: a claim path cannot end with a backslash")
            current.append(escaped)
        elif char == ".":
            segments.append("".join(current))
            current = []
        else:
            current.append(char)
    segments.append("".join(current))
    if not all(segments):
        raise ValueError(f"{value!r}: empty segment in claim path")
    return tuple(segments)


def claim_path_text(segments: tuple[str, ...]) -> str:
    """The spelling of a claim path that ``claim_path`` reads back (dots escaped)."""
    return ".".join(s.replace("\\", "\\\\").replace(".", "\\.") for s in segments)


def split_claim_warning(text: str, segments: tuple[str, ...]) -> str | None:
    """A warning for a dotted path that looks like one namespaced claim name (a URL, as
    OIDC providers name custom claims): split at its dots it can never match."""
    if len(segments) < 2 or not ("://" in text or any("/" in s for s in segments)):
        return None
    whole = ".".join(segments)
    return (
        f"claim path {text!r} is split at '.' into {list(segments)}, which a namespaced "
        f"claim such as {whole!r} can never match; write "
        f"'{claim_path_text((whole,))}' (dots escaped) or use the list form "
        f"{{claim: {whole!r}, values: ...}}"
    )


def region(value: object) -> str:
    text = str(value).strip().upper()
    if isinstance(value, bool) or not _REGION.match(text):
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 region code (e.g. DE)")
    return text


def spiffe_pattern(value: object) -> str:
    text = str(value).strip()
    if not _SPIFFE.match(text) or "//" in text[len("spiffe://") :]:
        raise ValueError(
            f"{value!r} is not a SPIFFE ID pattern (spiffe://trust-domain/path, "
            "'*' for one segment, '**' for any)"
        )
    return text


def method(value: object) -> str:
    text = str(value).strip().upper()
    if not _METHOD.match(text):
        raise ValueError(f"{value!r} is not an HTTP method")
    return text


def methods_matched(names: Iterable[str]) -> frozenset[str]:
    """The methods a ``methods:`` list matches. ``GET`` covers ``HEAD``: servers answer
    HEAD with their GET handler (RFC 9110 9.3.2), so a rule about GET, allow or deny,
    cannot be sidestepped with HEAD. ``HEAD`` alone does not cover ``GET``."""
    found = frozenset(names)
    return found | {"HEAD"} if "GET" in found else found


def path_glob(value: object) -> str:
    text = str(value).strip()
    if not text.startswith("/"):
        raise ValueError(f"{value!r}: a path pattern must start with '/'")
    if "***" in text:
        raise ValueError(f"{value!r}: use '*' (one segment) or '**' (any depth)")
    return text


def host_pattern(value: object) -> str:
    text = str(value).strip().lower().rstrip(".")
    body = text[2:] if text.startswith("*.") else text
    if not body or "*" in body or not re.match(r"^[a-z0-9.-]+(:\d+)?$|^\[[0-9a-f:.]+\]$", body):
        raise ValueError(f"{value!r} is not a host name (wildcards only as '*.example.com')")
    return text


def glob_regex(pattern: str, separator: str = "/") -> re.Pattern[str]:
    """Compile a glob where ``*`` stays within one segment and ``**`` crosses segments.

    A trailing ``/**`` also matches the bare prefix (``/docs/**`` matches ``/docs``).
    """
    sep = re.escape(separator)
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith(f"{separator}**", i) and i + 3 == len(pattern):
            out.append(f"(?:{sep}.*)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append(f"[^{sep}]*")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)
