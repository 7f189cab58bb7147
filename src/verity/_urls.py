"""``mask_url``: a connection URL with its password masked, for logs and messages.

A leaf module (standard library only), so that the stores and the audit backends can
mask URLs without importing ``verity.config`` (which imports the gateway, which imports
the audit log: the cycle this module breaks). ``verity.config`` re-exports it.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_SECRET_PARAMS = frozenset({"password", "sslpassword", "passfile", "sslkey"})


def mask_url(url: str) -> str:
    """``postgresql://app:s3cret@db/verity`` -> ``postgresql://app:***@db/verity``; a
    password in the query (``?password=...``, libpq's ``sslpassword``, Redis's
    ``password``) is masked too. IPv6 hosts keep their brackets."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user = parts.username or ""
        host = parts.netloc.rsplit("@", 1)[1]  # as written: brackets and port kept
        netloc = f"{user}:***@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(name.lower() in _SECRET_PARAMS for name, _ in pairs):
            masked = [(n, "***" if n.lower() in _SECRET_PARAMS else v) for n, v in pairs]
            query = urlencode(masked, safe="*/:,-")
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
