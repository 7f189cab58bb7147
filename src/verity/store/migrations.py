"""Numbered schema migrations and the status of a database against them.

Each backend keeps a list of :class:`Migration` (versions 1, 2, 3 ... never renumbered,
never edited once released) and records the applied ones, with a checksum of their
statements, in the ``verity_schema_migrations`` table.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from .errors import MigrationError


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema change: its version, a short name, and its SQL statements."""

    version: int
    name: str
    statements: tuple[str, ...]

    @property
    def checksum(self) -> str:
        """SHA-256 (hex) of the statements, to detect a migration edited after release."""
        digest = hashlib.sha256()
        for statement in self.statements:
            digest.update(statement.strip().encode())
            digest.update(b"\0")
        return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class AppliedMigration:
    """A row of ``verity_schema_migrations``."""

    version: int
    name: str
    checksum: str
    applied_at: float


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    """What is applied, what is pending, and what does not match this code."""

    backend: str
    applied: tuple[AppliedMigration, ...]
    pending: tuple[Migration, ...]
    problems: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """No drift: every applied migration is known to this code and unchanged."""
        return not self.problems


def check_sequence(migrations: tuple[Migration, ...]) -> None:
    """Refuse a migration list that is not numbered 1..n (a programming error)."""
    for index, migration in enumerate(migrations, start=1):
        if migration.version != index:
            raise MigrationError(migration.version, f"expected version {index}")


def compare(
    backend: str, migrations: tuple[Migration, ...], applied: list[AppliedMigration]
) -> MigrationStatus:
    """The status of a database whose applied migrations are ``applied``."""
    known = {m.version: m for m in migrations}
    problems: list[str] = []
    for row in applied:
        migration = known.get(row.version)
        if migration is None:
            problems.append(f"migration {row.version} ({row.name}) is newer than this Verity")
        elif migration.checksum != row.checksum:
            problems.append(f"migration {row.version} ({row.name}) was changed after it ran")
    done = {row.version for row in applied}
    pending = tuple(m for m in migrations if m.version not in done)
    return MigrationStatus(backend, tuple(applied), pending, tuple(problems))
