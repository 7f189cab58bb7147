"""``metrics:`` in ``verity.yaml``: the Prometheus endpoint and who may scrape it."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, field_validator

_LOOPBACK = ["127.0.0.0/8", "::1/128"]


class MetricsConfig(BaseModel):
    """The gateway's ``/metrics`` endpoint (Prometheus text format).

    Only clients whose resolved IP (after ``server.trusted_proxies``) is inside
    ``allowed_cidrs`` are answered; everyone else gets 403. The default is loopback only.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="Serve the metrics endpoint.")
    path: str = Field(
        default="/metrics", pattern=r"^/[A-Za-z0-9._~/-]*$", description="Where it is served."
    )
    allowed_cidrs: list[str] = Field(
        default_factory=lambda: list(_LOOPBACK),
        description="Client networks allowed to scrape (default: loopback only).",
    )

    @field_validator("allowed_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=True)
        return value
