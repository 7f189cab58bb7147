"""The request an identity assertion is bound to: one hash of method and canonical path.

The gateway signs ``req`` = ``request_binding(method, path)`` into every assertion, over
the method it decided and the canonical path the policy saw (the path the upstream
receives, re-encoded). An upstream recomputes it from the request it is serving, so an
assertion captured from ``GET /invoices/inv-1`` does not authenticate
``DELETE /invoices/inv-1`` or ``GET /invoices/inv-2``. The query string is not bound
(the policy does not see it either). A hash, not the path itself: the same claim can
later travel in a small per-request companion value next to a reused assertion.
"""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import urlsplit

from .model import normalize_path

BINDING_CLAIM = "req"


def canonical_request_path(raw_target: str) -> str:
    """The canonical path of a request target as received (origin- or absolute-form,
    percent-encoded, query ignored): decoded once, dot segments and ``//`` resolved."""
    target = raw_target.strip()
    if target.lower().startswith(("http://", "https://")):
        target = urlsplit(target).path or "/"
    return normalize_path(target or "/")


def request_binding(method: str, canonical_path: str) -> str:
    """base64url(SHA-256(``METHOD`` SP canonical path)) without padding.

    A method is an HTTP token (no space), so the encoding is unambiguous."""
    message = f"{method.upper()} {canonical_path}".encode("utf-8", "surrogateescape")
    digest = hashlib.sha256(message).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


__all__ = ["BINDING_CLAIM", "canonical_request_path", "request_binding"]
