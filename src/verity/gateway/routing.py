"""Route lookup: exact host (or ``*``), then the longest path prefix on a segment boundary.

``/api`` matches ``/api`` and ``/api/v1`` but not ``/apix``; a prefix ending in ``/``
matches everything below it. Lookups use the decoded path (``verity.gateway.target``:
ambiguous targets were already refused) without ``;`` parameters, so the route whose
``path_matching`` decides about them is the one their path belongs to; a route with
``case: insensitive`` matches its prefix in any case.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..model import normalize_host
from .settings import RouteConfig
from .target import routing_path


def _covers(route: RouteConfig, path: str) -> bool:
    prefix = route.path_prefix
    if route.path_matching.case == "insensitive":
        prefix, path = prefix.lower(), path.lower()
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
        """The route for ``host`` (any port is ignored) and decoded ``path``, if any."""
        key = routing_path(path)
        for route in self._by_host.get(normalize_host(host), ()):
            if _covers(route, key):
                return route
        for route in self._any:
            if _covers(route, key):
                return route
        return None
