"""Logging fixtures: JSON logs into a buffer, the previous logging setup restored after."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
import structlog

from verity.observability import configure_logging

_NAMES = ("", "uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    """``configure_logging`` into a ``StringIO``; root and uvicorn loggers restored after."""
    saved = [
        (logger, list(logger.handlers), logger.level, logger.propagate)
        for logger in (logging.getLogger(name) for name in _NAMES)
    ]
    stream = io.StringIO()
    configure_logging(level="debug", stream=stream)
    yield stream
    for logger, handlers, level, propagate in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
    structlog.reset_defaults()
