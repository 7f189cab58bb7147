"""Route lookup: exact host (or ``*``), then the longest path prefix on a segment boundary.

``/api`` matches ``/api`` and ``/api/v1`` but not ``/apix``; a prefix ending in ``/``
matches everything below it. Lookups use the normalised path, the one the policy sees,
so ``/public/../admin`` is routed as ``/admin``.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..model import normalize_host
from .settings import RouteConfig


def _covers(prefix: str, path: str) -> bool:
    if prefix in ("/", path):
        return True
    if prefix.endswith("/"):
        return path.startswith(prefix)
    return path.startswith(prefix + "/")


class RouteTable:
    """Every configured route, indexed by host; each host's routes by prefix length."""

    def __init__(self, routes: Iterable[RouteConfig]) -> None:
        self.routes = tuple(routes)
        by_host: dict[str, list[RouteConfig]] = {}
        for route in self.routes:
            by_host.setdefault(route.host, []).append(route)
        self._by_host = {
            host: sorted(found, key=lambda r: len(r.path_prefix), reverse=True)
            for host, found in by_host.items()
        }
        self._any = self._by_host.pop("*", [])

    def match(self, host: str, path: str) -> RouteConfig | None:
        """The route for ``host`` (any port is ignored) and normalised ``path``, if any."""
        for route in self._by_host.get(normalize_host(host), ()):
            if _covers(route.path_prefix, path):
                return route
        for route in self._any:
            if _covers(route.path_prefix, path):
                return route
        return None
