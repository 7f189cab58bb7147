"""``verity db migrate|status``: the store's schema migrations.

The database is ``--url``, else ``store.url`` of ``verity.yaml`` (or ``$VERITY_CONFIG``).
Exit codes: 0 success; 1 the database is unreachable, a migration failed, or (status)
the schema has drifted from this version of Verity. Passwords are never printed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from .._urls import mask_url
from ..config import load_config
from ..errors import VerityError
from ..store import MigrationStatus, StoreError, apply_migrations, migration_status
from ..store.factory import backend_of
from . import render

app = typer.Typer(
    help="Apply and inspect the store's schema migrations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals hold the URL and its password
)

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="sqlite:///PATH or postgresql://... (default: store.url from verity.yaml).",
        show_default=False,
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document (for scripts).")]


@contextmanager
def _reporting_errors(*, as_json: bool) -> Iterator[None]:
    try:
        yield
    except VerityError as exc:
        render.print_error(exc, as_json=as_json)
        raise typer.Exit(1) from None
    except ValueError as exc:  # a malformed URL: the message never quotes it
        render.print_error(StoreError(str(exc)), as_json=as_json)
        raise typer.Exit(1) from None


def _url(url: str | None) -> str:
    return url if url is not None else load_config().store.url


def _safe(url: str) -> str:
    try:
        return mask_url(url)
    except ValueError:
        return "<invalid url>"


@app.command("migrate")
def migrate(url: UrlOption = None, as_json: JsonFlag = False) -> None:
    """Apply pending migrations (idempotent; safe while other nodes start)."""
    with _reporting_errors(as_json=as_json):
        target = _url(url)
        applied = apply_migrations(target)
        status = migration_status(target)
    current = max((m.version for m in status.applied), default=0)
    if as_json:
        render.print_json(
            {
                "url": _safe(target),
                "backend": backend_of(target),
                "applied": applied,
                "version": current,
            }
        )
        return
    console = render.stdout()
    done = ", ".join(str(v) for v in applied)
    what = f"applied migration(s) {done}" if applied else "already up to date"
    render.line(console, (f"{_safe(target)}: ", "bold"), f"{what}; schema version {current}")


def _status_json(url: str, status: MigrationStatus) -> dict[str, Any]:
    return {
        "url": _safe(url),
        "backend": status.backend,
        "ok": status.ok,
        "applied": [
            {"version": m.version, "name": m.name, "applied_at": _iso(m.applied_at)}
            for m in status.applied
        ],
        "pending": [{"version": m.version, "name": m.name} for m in status.pending],
        "problems": list(status.problems),
    }


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


@app.command("status")
def status(url: UrlOption = None, as_json: JsonFlag = False) -> None:
    """List applied and pending migrations of the store and of the embedded IdP's tables;
    exit 1 if either schema has drifted."""
    with _reporting_errors(as_json=as_json):
        target = _url(url)
        result = migration_status(target)
        idp = migration_status(target, track="idp")
    if as_json:
        render.print_json({**_status_json(target, result), "idp": _status_json(target, idp)})
    else:
        _print_status(target, result)
        _print_status(target, idp, title="embedded IdP tables")
    if not (result.ok and idp.ok):
        raise typer.Exit(1)


def _print_status(url: str, result: MigrationStatus, *, title: str = "") -> None:
    console = render.stdout()
    what = f"({result.backend}" + (f", {title})" if title else ")")
    render.line(console, (f"{_safe(url)} ", "bold"), what)
    for m in result.applied:
        render.line(
            console, ("  applied ", "green"), f"{m.version:>4}  {m.name}  {_iso(m.applied_at)}"
        )
    for p in result.pending:
        render.line(console, ("  pending ", "yellow"), f"{p.version:>4}  {p.name}")
    for problem in result.problems:
        render.line(console, ("  problem ", "bold red"), problem)
    if result.ok and not result.pending:
        render.line(console, "up to date")


__all__ = ["app"]
