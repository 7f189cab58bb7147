"""The ``/metrics`` endpoint: Prometheus text, only for the configured client networks."""

from __future__ import annotations

import ipaddress

from starlette.responses import JSONResponse, Response

from ..model import IPAddress
from .config import MetricsConfig
from .metrics import GatewayMetrics

_NO_STORE = {"cache-control": "no-store", "x-content-type-options": "nosniff"}


class MetricsEndpoint:
    """Answers scrapes from ``allowed_cidrs``; 403 for every other client IP."""

    def __init__(self, metrics: GatewayMetrics, config: MetricsConfig) -> None:
        self.metrics = metrics
        self.config = config
        self.networks = tuple(ipaddress.ip_network(cidr) for cidr in config.allowed_cidrs)

    def allows(self, client_ip: IPAddress | None) -> bool:
        """True when the resolved client IP is inside an allowed network (unknown: no)."""
        if client_ip is None:
            return False
        ip = client_ip
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)

    def response(self, client_ip: IPAddress | None) -> Response:
        """The exposition for an allowed client, else a 403 that reveals nothing."""
        if not self.allows(client_ip):
            body = {"error": "forbidden", "error_description": "Metrics are not served here."}
            return JSONResponse(body, 403, headers=_NO_STORE)
        payload, content_type = self.metrics.exposition()
        return Response(payload, 200, media_type=content_type, headers=_NO_STORE)
