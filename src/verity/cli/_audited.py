"""What ``verity grants`` and ``verity devices`` share: the configuration (``--config``,
``--url``), the audit log every change is written to, error reporting and formatting.

The audit log is the one ``verity serve`` writes (``open_audit``: ``audit.url``, else
beside the store), so a node's decisions and the administrative changes that explain
them are in one hash-chained log. It is opened before the store is changed, so an audit
log that cannot be opened changes nothing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from ..audit import AuditError, AuditEvent, AuditLog, Receipt
from ..config import (
    CONFIG_ENV,
    StoreConfig,
    VerityConfig,
    default_config_path,
    load_config,
)
from ..errors import VerityError
from ..store import StoreError
from ..store.factory import backend_of
from . import render
from .serve import open_audit

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(?:\d+[smhd])+")
_PART = re.compile(r"(\d+)([smhd])")

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="verity.yaml (default: $VERITY_CONFIG or ./verity.yaml).",
        show_default=False,
    ),
]  # fmt: skip
UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url", help="sqlite:///PATH or postgresql://... instead of the configuration's store.",
        show_default=False,
    ),
]  # fmt: skip
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document (for scripts).")]


def usage(message: str, param: str) -> typer.BadParameter:
    """A usage error (exit 2) about ``param``."""
    return typer.BadParameter(message, param_hint=param)


def parse_duration(text: str, *, longest: float) -> float:
    """Seconds in ``90s``, ``15m``, ``2h``, ``1d``, ``1h30m`` (``ValueError`` otherwise,
    also for nothing or more than ``longest`` seconds)."""
    cleaned = text.strip().lower()
    if not _DURATION.fullmatch(cleaned):
        raise ValueError("a duration is like 90s, 15m, 2h, 1d or 1h30m")
    seconds = float(sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(cleaned)))
    if not 0 < seconds <= longest:
        raise ValueError(f"a duration is more than 0s and at most {human(longest)}")
    return seconds


def human(seconds: float) -> str:
    """``7200`` -> ``2h``; ``5430`` -> ``1h30m30s``."""
    parts, rest = [], int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts) or "0s"


def iso(t: float | None) -> str | None:
    """UNIX seconds as ISO 8601 UTC (``None`` stays ``None``)."""
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def load(config_path: Path | None, url: str | None) -> tuple[VerityConfig, Path | None]:
    """The configuration (``--url`` replacing ``store.url``) and the folder that relative
    paths in it are relative to (``None``: no file, the working directory)."""
    if url is not None:
        try:
            backend_of(url)
        except ValueError as exc:
            raise usage(str(exc), "--url") from None
    chosen = config_path or os.environ.get(CONFIG_ENV) or default_config_path()
    config = load_config(chosen)
    if url is not None:
        config = config.model_copy(update={"store": StoreConfig.model_construct(url=url)})
    return config, None if chosen is None else Path(chosen).resolve().parent


@contextmanager
def reporting_errors(*, as_json: bool) -> Iterator[None]:
    """Every ``VerityError`` (and a store's ``ValueError``) -> a message and exit 1."""
    try:
        yield
    except VerityError as exc:
        render.print_error(exc, as_json=as_json)
        raise typer.Exit(1) from None
    except ValueError as exc:  # from the store's checks: never quotes a URL
        render.print_error(StoreError(str(exc)), as_json=as_json)
        raise typer.Exit(1) from None


class NotAuditedError(AuditError):
    """A change was made but its audit event was not recorded."""


class Recorder:
    """Appends events to the audit log, durably, within ``audit.timeout_seconds``."""

    def __init__(self, config: VerityConfig, base: Path | None) -> None:
        self.log: AuditLog = open_audit(config, base=base)
        self._timeout = config.audit.timeout_seconds

    def record(self, event: AuditEvent, *, what: str) -> Receipt:
        """Append ``event``; ``NotAuditedError`` naming ``what`` was done if it fails."""
        try:
            return self.log.append(event, timeout=self._timeout)
        except AuditError as exc:
            raise NotAuditedError(f"{what}, but its audit event was not recorded: {exc}") from None

    def close(self) -> None:
        self.log.close()


__all__ = [
    "ConfigOption",
    "JsonFlag",
    "NotAuditedError",
    "Recorder",
    "UrlOption",
    "human",
    "iso",
    "load",
    "parse_duration",
    "reporting_errors",
    "usage",
]
