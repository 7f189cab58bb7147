"""The canonical request target (sans-I/O): one path, computed once, or a refusal.

The policy, the audit event and the upstream request must all see the same path. So the
gateway decodes the path of a request target exactly once, here, and refuses (400,
audited with reason ``ambiguous_target``) every target whose meaning could differ between
Verity and an upstream, instead of guessing how the upstream will read it:

- an encoded ``/``, ``\\``, ``%`` or ``.`` (``%2f``, ``%5c``, ``%25``, ``%2e``): double
  encodings such as ``%252f`` and ``%25%32%65`` are caught by the ``%25``;
- a ``\\``, ``#``, ``//``, or a malformed ``%`` escape;
- a dot segment (``.`` or ``..``) or a segment ending in ``.`` or a space (Windows and
  IIS strip those: ``/admin./settings`` is ``/admin/settings`` there);
- control characters (NUL included) and invalid UTF-8 after decoding;
- characters that Unicode compatibility normalisation (NFKC) changes, such as the
  full-width letter a (U+FF41) in ``/%EF%BD%81dmin`` (some stacks fold it to ``a``).

Then the route's ``path_matching`` (``PathMatching``) applies: ``;`` path parameters are
refused by default (``parameters: strip`` removes them, as Tomcat and Spring do), and
``case: insensitive`` lower-cases the path (for upstreams that route case-insensitively,
such as Express by default). The result is the canonical path; the proxy sends it
upstream re-encoded (``upstream_path``), so the upstream routes on the decided string.

Method overrides (``X-HTTP-Method-Override``, ``X-Method-Override``, ``X-HTTP-Method``,
also spelled with ``_``; ``?_method=``, also as PHP reads ``?.method=``) make many
frameworks run another method than the one on the request line: a request carrying one
is refused unless the route sets ``method_override: decide``, and then the policy
decides the overriding method.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote_plus, unquote_to_bytes

from .errors import BadRequestError
from .headers import RawHeaders, header_values, valid_method
from .settings import PathMatching, RouteConfig

AMBIGUOUS = "The request target is ambiguous."
_BAD_RAW = re.compile(r"[\\#\x00-\x20\x7f]|//|%(?![0-9A-Fa-f]{2})|%(?:2[fFeE5]|5[cC])")
_PLAIN = re.compile(r"/[A-Za-z0-9/_~!$&'()*+,;=:@.-]*")  # nothing to decode or refuse
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SEGMENT_END = re.compile(r"[. ](?:/|$)")  # ".", "..", "name." or "name " as a segment
_PARAMETER = re.compile(r";[^/]*")
_PHP_NAME = re.compile(r"[. ]")  # what PHP turns into "_" in a parameter name
_AUTHORITY_END = re.compile(r"[/?#]")  # where an absolute-form target's authority ends
METHOD_OVERRIDE_HEADERS = (b"x-http-method-override", b"x-method-override", b"x-http-method")


class AmbiguousTargetError(BadRequestError):
    """A request target whose meaning could differ between Verity and an upstream."""

    reason_code = "ambiguous_target"

    def __init__(self, public_message: str = AMBIGUOUS) -> None:
        super().__init__(400, public_message)


def split_target(untrusted_target: str) -> tuple[str, str]:
    """(path, query) of a request target in origin form (``/p?q``) or absolute form."""
    target = untrusted_target
    if not target.startswith("/") and target[:8].lower().startswith(("http://", "https://")):
        rest = target.split("//", 1)[1]
        # the authority ends at the first "/", "?" or "#" (RFC 3986 3.2): "http://h?q" has
        # the empty path, read as "/", and the query "q"
        end = _AUTHORITY_END.search(rest)
        target = rest[end.start() :] if end else ""
        if not target.startswith("/"):
            target = "/" + target
    path, _, query = target.partition("?")
    if not path.startswith("/"):
        raise BadRequestError(400, "Malformed request target.")
    return path, query


def decode_path(untrusted_path: str) -> str:
    """The path percent-decoded once, or ``AmbiguousTargetError`` (see the module doc).

    ``untrusted_path`` is the path as sent (percent-encoded; raw non-ASCII bytes as
    latin-1 characters), without the query."""
    if _PLAIN.fullmatch(untrusted_path) and "//" not in untrusted_path:
        text = untrusted_path  # the usual case: nothing to decode
    elif not untrusted_path.startswith("/") or _BAD_RAW.search(untrusted_path):
        raise AmbiguousTargetError
    else:
        try:
            text = unquote_to_bytes(untrusted_path.encode("latin-1")).decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            raise AmbiguousTargetError from None
        if _CONTROL.search(text):
            raise AmbiguousTargetError
        if not text.isascii() and not unicodedata.is_normalized("NFKC", text):
            raise AmbiguousTargetError
    if ("." in text or " " in text) and _SEGMENT_END.search(text):
        raise AmbiguousTargetError
    return text


def routing_path(decoded: str) -> str:
    """The path routes are matched on: ``;`` parameters removed (so that a route's
    ``path_matching`` decides about them, not a broader route's)."""
    return _PARAMETER.sub("", decoded) if ";" in decoded else decoded


def apply_matching(decoded: str, matching: PathMatching) -> str:
    """The canonical path of ``decoded`` under a route's ``path_matching``."""
    path = decoded
    if ";" in path:
        if matching.parameters == "refuse":
            raise AmbiguousTargetError("Path parameters (;) are not accepted here.")
        path = _PARAMETER.sub("", path)
        if "//" in path or _SEGMENT_END.search(path):  # "/a/..;x/b", "/a/;x/b"
            raise AmbiguousTargetError
    if matching.case == "insensitive":
        path = path.lower()
    return path


def canonical_path(route: RouteConfig, decoded: str) -> str:
    """The path the policy, the audit event and the upstream see for ``route``."""
    return apply_matching(decoded, route.path_matching)


def _query_overrides(query: str) -> list[str]:
    """The values of every query parameter a framework may read as ``_method``: PHP
    (Symfony, Laravel) strips leading spaces from a name and turns ``.`` and spaces into
    ``_``, so ``.method`` and ``+.method`` are ``_method`` there."""
    if "method" not in query.lower() and "%" not in query:
        return []
    found = []
    for pair in re.split("[&;]", query):
        name, _, value = pair.partition("=")
        if _PHP_NAME.sub("_", unquote_plus(name).strip()).lower() == "_method":
            found.append(unquote_plus(value))
    return found


def _header_overrides(headers: RawHeaders) -> list[str]:
    """Every method override header's value; a name spelled with ``_`` counts too (CGI,
    WSGI and PHP servers read ``X_HTTP_Method_Override`` as ``X-HTTP-Method-Override``)."""
    found = [v for name in METHOD_OVERRIDE_HEADERS for v in header_values(headers, name)]
    for name, value in headers:
        if b"_" in name and name.replace(b"_", b"-").lower() in METHOD_OVERRIDE_HEADERS:
            found.append(value.decode("latin-1"))
    return found


def decided_method(route: RouteConfig, method: str, headers: RawHeaders, query: str) -> str:
    """The method the policy decides: ``method``, or with ``method_override: decide`` the
    one override the request carries. Any override is refused by default."""
    overrides = _header_overrides(headers) + _query_overrides(query)
    if not overrides:
        return method
    if route.method_override != "decide":
        raise AmbiguousTargetError("Method overrides are not accepted here.")
    methods = {valid_method(value) for value in overrides}
    if len(methods) != 1:
        raise AmbiguousTargetError("Conflicting method overrides.")
    return methods.pop()
