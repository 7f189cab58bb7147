"""A policy file in force, reloadable without ever being half-loaded.

``LivePolicy`` holds the compiled engine of the last good version of a file. ``reload()``
reads, validates and compiles the new version completely before swapping one reference,
so a request sees either the old engine or the new one; a bad new file leaves the old
policy in force and the result says why. This module reads files: it belongs to the edge
(gateway, CLI), not to the pure engine.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

from .. import invalidation
from ..errors import PolicyLoadError, Problem
from ..model import AccessRequest, Decision
from .engine import Engine


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """What a reload did: ``changed`` (a new version is in force) or ``problems`` (kept the old)."""

    changed: bool
    version: str
    problems: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


class LivePolicy:
    """The engine compiled from ``path``, swapped atomically on successful reloads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._digest = ""
        self._engine = self._load()

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def version(self) -> str:
        return self._engine.version

    def decide(self, request: AccessRequest) -> Decision:
        return self._engine.decide(request)

    def _load(self) -> Engine:
        from . import compile_policy, load_policy_file  # noqa: PLC0415 - avoid an import cycle

        data = _read(self.path)
        engine = compile_policy(load_policy_file(self.path))
        self._digest = _digest(data, _table_files(engine))
        return engine

    def reload(self, *, force: bool = False) -> ReloadResult:
        """Load the file again; unchanged bytes are skipped unless ``force``."""
        with self._lock:
            try:
                current = _digest(_read(self.path), _table_files(self._engine))
                if not force and current == self._digest:
                    return ReloadResult(changed=False, version=self.version)
                engine = self._load()
            except PolicyLoadError as exc:
                return ReloadResult(changed=False, version=self.version, problems=exc.problems)
            changed = engine.version != self._engine.version
            self._engine = engine
        invalidation.bump()  # a new engine is in force: decisions cached so far go
        return ReloadResult(changed=changed, version=engine.version)


def _table_files(engine: Engine) -> list[Path]:
    return [Path(name) for table in engine.policy.tables for name in table.files]


def _digest(data: bytes, files: list[Path]) -> str:
    """The policy file's content and its permission tables' files (a changed table file
    is a changed policy; a missing one fails the reload, keeping the old version)."""
    digest = hashlib.sha256(data)
    for path in files:
        digest.update(hashlib.sha256(_read(path)).digest())
    return digest.hexdigest()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise PolicyLoadError(str(path), [Problem("", f"cannot read file: {exc}")]) from None
