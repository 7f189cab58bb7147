"""``verity.observability``: structured security logs and Prometheus metrics.

- ``configure_logging`` / ``log_security_event``: one JSON object per line (structlog),
  stdlib and uvicorn logs included, every field redacted (``redact``) before rendering.
- ``GatewayMetrics``: the gateway's metrics in a registry of its own; ``MetricsEndpoint``
  serves them to the networks of ``MetricsConfig.allowed_cidrs`` only.
- ``GatewayObserver``: what the gateway's decision path calls to audit each decision
  (``verity.audit``), count it and log security events. See docs/observability.md.
"""

from __future__ import annotations

from .config import MetricsConfig as MetricsConfig
from .endpoint import MetricsEndpoint as MetricsEndpoint
from .metrics import AuditCollector as AuditCollector
from .metrics import CacheSnapshot as CacheSnapshot
from .metrics import GatewayMetrics as GatewayMetrics
from .metrics import JwksCollector as JwksCollector
from .metrics import status_class as status_class
from .recorder import GatewayObserver as GatewayObserver
from .redact import REDACTED as REDACTED
from .redact import REDACTED_JWT as REDACTED_JWT
from .redact import is_secret_key as is_secret_key
from .redact import redact as redact
from .redact import redact_event as redact_event
from .redact import scrub_text as scrub_text
from .seclog import configure_logging as configure_logging
from .seclog import get_logger as get_logger
from .seclog import json_formatter as json_formatter
from .seclog import log_security_event as log_security_event

__all__ = [
    "REDACTED",
    "REDACTED_JWT",
    "AuditCollector",
    "CacheSnapshot",
    "GatewayMetrics",
    "GatewayObserver",
    "JwksCollector",
    "MetricsConfig",
    "MetricsEndpoint",
    "configure_logging",
    "get_logger",
    "is_secret_key",
    "json_formatter",
    "log_security_event",
    "redact",
    "redact_event",
    "scrub_text",
    "status_class",
]
