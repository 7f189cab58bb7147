"""Structured JSON logs (structlog), and ``log_security_event`` done right.

    configure_logging(level="info")                 # once, at process start
    log_security_event("authn.token_rejected", client_ip=subject.client.ip,
                       principal_id=None, decision_id=None, reason="expired")

Every line is one JSON object: ``timestamp`` (UTC, ISO 8601), ``level``, ``logger``,
``event`` and the fields. Security events always carry ``client_ip``, ``principal_id``
and ``decision_id`` (``null`` when unknown) so a SIEM can rely on the shape. The client
IP is whatever the caller resolved through the configured trusted proxies: this module
never looks at a request or its headers. Standard-library loggers (uvicorn, httpx,
``verity.*``) go through the same renderer, and every event, theirs included, passes the
redaction processor (``verity.observability.redact``) last, right before rendering.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog
from structlog.types import Processor

from .redact import redact_event

SECURITY_LOGGER = "verity.security"
_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
_RESERVED = frozenset({"event", "level", "timestamp", "logger", "security"})
_UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access")


def _shared() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
    ]


def json_formatter() -> logging.Formatter:
    """The stdlib formatter that renders structlog and foreign records as redacted JSON."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_event,
            _ordered,
            structlog.processors.JSONRenderer(sort_keys=False, default=repr),
        ],
    )


_FIRST = ("timestamp", "level", "event", "logger")


def _ordered(_logger: object, _method: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    """``timestamp``, ``level``, ``event``, ``logger`` first: lines read well by eye too."""
    head = {key: event_dict[key] for key in _FIRST if key in event_dict}
    return head | {k: v for k, v in event_dict.items() if k not in head}


class _VerityHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler ``configure_logging`` installed (replaced on reconfiguration)."""


def configure_logging(*, level: str | int = "info", stream: TextIO | None = None) -> None:
    """Route structlog and the standard library (uvicorn included) to one JSON handler.

    Idempotent: calling it again replaces the handler it installed before (tests pass a
    ``StringIO`` as ``stream``). Other handlers on the root logger are removed, so no
    record can bypass the redaction processor through a plain-text handler.
    """
    numeric = _LEVELS[level.lower()] if isinstance(level, str) else level
    handler = _VerityHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(json_formatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in _UVICORN:
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
        uvicorn_logger.setLevel(logging.NOTSET)  # the root's level applies
    structlog.configure(
        processors=_chain(),
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def _chain() -> list[Processor]:
    return [
        *_shared(),
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redact_event,  # here too: safe even where configure_logging was never called
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ]


@functools.cache
def get_logger(name: str = "verity") -> Any:
    """A structlog logger writing through the stdlib logger ``name``, redacted whatever
    the global structlog configuration (its own processor chain, not the default one)."""
    return structlog.wrap_logger(
        logging.getLogger(name),
        processors=_chain(),
        wrapper_class=structlog.stdlib.BoundLogger,
    )


def log_security_event(
    event: str,
    *,
    client_ip: object | None = None,
    principal_id: str | None = None,
    decision_id: str | None = None,
    level: str = "info",
    **fields: object,
) -> None:
    """Log one security event (a stable dotted ``event`` name, e.g. ``access.denied``).

    ``client_ip`` is the address the enforcement point resolved (never re-derived here);
    ``fields`` are redacted like everything else (pass stable codes, not credentials).
    A field named like a reserved key (``event``, ``level``...) is kept as ``field_<name>``.
    """
    safe = {(f"field_{k}" if k in _RESERVED else k): v for k, v in fields.items()}
    get_logger(SECURITY_LOGGER).log(
        _LEVELS.get(level.lower(), logging.INFO),
        event,
        security=True,
        client_ip=None if client_ip is None else str(client_ip),
        principal_id=principal_id,
        decision_id=decision_id,
        **safe,
    )
