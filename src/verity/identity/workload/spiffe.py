"""SPIFFE IDs (SPIFFE ID specification, section 2): parsing with precise errors.

``spiffe://<trust-domain>/<path>``: the scheme is exactly ``spiffe``; the trust domain
holds only lower-case letters, digits, ``.``, ``-`` and ``_``; each path segment holds
only letters, digits, ``.``, ``-`` and ``_`` and is neither empty, ``.`` nor ``..``; no
query, fragment, port, user info or percent-encoding; at most 255 bytes of trust domain
and 2048 bytes in all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InvalidSpiffeIdError

SCHEME_PREFIX = "spiffe://"
MAX_ID_BYTES = 2048
MAX_TRUST_DOMAIN_BYTES = 255
_TRUST_DOMAIN_CHARS = re.compile(r"[a-z0-9._-]+")
_SEGMENT_CHARS = re.compile(r"[A-Za-z0-9._-]+")


def _authority_problem(authority: str) -> str | None:
    if not authority:
        return "the trust domain is missing"
    if "@" in authority:
        return "user info is not allowed"
    if ":" in authority:
        return "a port is not allowed"
    if len(authority.encode()) > MAX_TRUST_DOMAIN_BYTES:
        return f"the trust domain is longer than {MAX_TRUST_DOMAIN_BYTES} bytes"
    if not _TRUST_DOMAIN_CHARS.fullmatch(authority):
        return "trust domain characters are limited to lower-case letters, digits, '.', '-' and '_'"
    return None


def _path_problem(path: str) -> str | None:
    if not path:
        return None
    if path == "/" or path.endswith("/"):
        return "the path cannot have a trailing slash"
    for segment in path[1:].split("/"):
        if not segment:
            return "the path cannot contain empty segments"
        if segment in (".", ".."):
            return "the path cannot contain '.' or '..' segments"
        if not _SEGMENT_CHARS.fullmatch(segment):
            return "path segment characters are limited to letters, digits, '.', '-' and '_'"
    return None


def trust_domain_problem(untrusted: str) -> str | None:
    """Why ``untrusted`` is not a trust domain name, or ``None`` when it is one."""
    return _authority_problem(untrusted)


def _split(untrusted: str) -> tuple[str, str]:
    if not untrusted:
        raise InvalidSpiffeIdError(untrusted, "it is empty")
    if len(untrusted.encode()) > MAX_ID_BYTES:
        raise InvalidSpiffeIdError(untrusted, f"it is longer than {MAX_ID_BYTES} bytes")
    if not untrusted.startswith(SCHEME_PREFIX):
        raise InvalidSpiffeIdError(untrusted, "the scheme must be 'spiffe://' (lower-case)")
    rest = untrusted[len(SCHEME_PREFIX) :]
    for mark, problem in (("?", "a query"), ("#", "a fragment"), ("%", "percent-encoding")):
        if mark in rest:
            raise InvalidSpiffeIdError(untrusted, f"{problem} is not allowed")
    authority, slash, path = rest.partition("/")
    return authority, slash + path


@dataclass(frozen=True, slots=True, order=True)
class SpiffeId:
    """A valid SPIFFE ID: ``trust_domain`` and ``path`` ("" or ``/seg/...``)."""

    trust_domain: str
    path: str = ""

    def __post_init__(self) -> None:
        problem = _authority_problem(self.trust_domain) or _path_problem(self.path)
        if self.path and not self.path.startswith("/"):
            problem = "the path must start with '/'"
        if problem is not None:
            raise InvalidSpiffeIdError(SCHEME_PREFIX + self.trust_domain + self.path, problem)

    @classmethod
    def parse(cls, untrusted: str) -> SpiffeId:
        """Parse ``untrusted``; raises ``InvalidSpiffeIdError`` naming the rule it breaks."""
        if not isinstance(untrusted, str):
            raise InvalidSpiffeIdError(untrusted, "it must be a string")
        authority, path = _split(untrusted)
        problem = _authority_problem(authority) or _path_problem(path)
        if problem is not None:
            raise InvalidSpiffeIdError(untrusted, problem)
        return cls(authority, path)

    @classmethod
    def for_trust_domain(cls, trust_domain: str) -> SpiffeId:
        """The trust domain's own ID, ``spiffe://<trust-domain>`` (used in CA certificates)."""
        return cls(trust_domain, "")

    @property
    def is_trust_domain(self) -> bool:
        """True for ``spiffe://td`` itself (no path): never a workload's identity."""
        return not self.path

    @property
    def trust_domain_id(self) -> SpiffeId:
        """``spiffe://<trust-domain>``."""
        return SpiffeId(self.trust_domain, "")

    def member_of(self, trust_domain: str) -> bool:
        """True when this ID belongs to ``trust_domain``."""
        return self.trust_domain == trust_domain

    def __str__(self) -> str:
        return SCHEME_PREFIX + self.trust_domain + self.path
