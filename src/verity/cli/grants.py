"""``verity grants request|approve|deny|list|expire``: just-in-time access.

    verity grants request prod-db --for 2h --reason "INC-4211: fix the index" --principal alice
    verity grants approve 3f9c... --approver bob          # never alice herself
    verity grants deny 3f9c... --approver bob
    verity grants list --principal alice --active --json
    verity grants expire                                  # the sweep (e.g. every minute)

A grant lives in the store (``--url``, else ``store.url`` of ``--config`` /
``$VERITY_CONFIG`` / ``./verity.yaml``; a SQLite file must exist already). Once approved
it is in force from the approval for its duration; a policy rule with ``jit: NAME``
allows its principal until then, on every gateway node within 2 seconds (their grant
cache), and not a second longer (the policy compares the end with the request's time,
whether or not the sweep has run). The principal is the ``sub`` of the person's token
(``--principal``, default ``$VERITY_PRINCIPAL``).

Every request, approval, denial and expiry by ``expire`` is written to the audit log of
the configuration (the one ``verity serve`` writes): ``grant_created``,
``grant_approved``, ``grant_denied``, ``grant_expired`` (see docs/jit-access.md).

Exit codes: 0 done; 1 unknown grant, self-approval, a grant already decided, the store or
the audit log unavailable (passwords in URLs are masked); 2 usage error (bad duration,
no principal).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from ..audit import AuditEvent, EventKind, Receipt, UserRef
from ..audit.builders import grant_event
from ..audit.ocsf import UserType
from ..store import Grant, GrantStatus
from . import render
from ._audited import (
    ConfigOption,
    JsonFlag,
    NotAuditedError,
    Recorder,
    UrlOption,
    human,
    iso,
    load,
    parse_duration,
    reporting_errors,
    usage,
)
from ._grant_ledger import GrantLedger, open_ledger

app = typer.Typer(
    help="Request, approve, deny, list and expire just-in-time access grants.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals hold the store URL and its password
)

PRINCIPAL_ENV = "VERITY_PRINCIPAL"
LONGEST = 30 * 86400.0
SWEEPER = UserRef(uid="verity", type=UserType.SYSTEM)

GrantIdArg = Annotated[str, typer.Argument(metavar="ID", help="The grant id.")]
ApproverOption = Annotated[
    str, typer.Option("--approver", help="Who decides (never the requester).", show_default=False)
]


def grant_json(grant: Grant, *, now: float | None = None) -> dict[str, Any]:
    """A grant as JSON (times ISO 8601 UTC; ``active`` at ``now``)."""
    at = time.time() if now is None else now
    return {
        "id": grant.id,
        "principal": grant.principal,
        "name": grant.name,
        "reason": grant.reason,
        "duration_seconds": int(grant.duration),
        "status": grant.status.value,
        "active": grant.active_at(at),
        "requested_at": iso(grant.requested_at),
        "approver": grant.approver,
        "decided_at": iso(grant.decided_at),
        "starts_at": iso(grant.starts),
        "ends_at": iso(grant.expires),
    }


def _principal(given: str | None) -> str:
    principal = given if given is not None else os.environ.get(PRINCIPAL_ENV)
    if principal is None or not principal.strip():
        raise usage(f"name the principal (its token's sub) or set ${PRINCIPAL_ENV}", "--principal")
    return principal.strip()


def _audited(config_path: Path | None, url: str | None) -> tuple[GrantLedger, Recorder]:
    """The audit log first (nothing changes if it cannot be opened), then the store."""
    config, base = load(config_path, url)
    recorder = Recorder(config, base)
    try:
        return open_ledger(config.store.url), recorder
    except BaseException:
        recorder.close()
        raise


def _done(verb: str, grant: Grant, event: AuditEvent, receipt: Receipt, as_json: bool) -> None:
    if as_json:
        audit = {"kind": event.kind.value, "uid": event.uid, "seq": receipt.seq}
        render.print_json({"grant": grant_json(grant), "audit": audit})
        return
    console = render.stdout()
    what = (f"'{grant.name}'", "bold")
    render.line(console, (f"{verb} ", "bold green"), "grant ", what, f" for {grant.principal}")
    render.line(console, f"  id {grant.id}")
    if grant.status is GrantStatus.PENDING:
        render.line(console, f"  {human(grant.duration)} once approved: pending approval by")
        render.line(console, f"  verity grants approve {grant.id} --approver <someone else>")
    elif grant.status is GrantStatus.APPROVED:
        render.line(console, f"  in force until {iso(grant.expires)} ({human(grant.duration)})")
    render.line(console, f"  audit event {event.uid} (seq {receipt.seq})")


def _change(
    kind: EventKind,
    verb: str,
    change: Callable[[GrantLedger], Grant],
    *,
    actor: str | None,
    config_path: Path | None,
    url: str | None,
    as_json: bool,
) -> None:
    with reporting_errors(as_json=as_json):
        ledger, recorder = _audited(config_path, url)
        try:
            grant = change(ledger)
            who = UserRef(uid=actor or grant.principal)
            event = grant_event(kind, grant, actor=who)
            receipt = recorder.record(event, what=f"grant {grant.id} was {verb}")
        finally:
            ledger.close()
            recorder.close()
    _done(verb, grant, event, receipt, as_json)


@app.command("request")
def request(
    name: Annotated[str, typer.Argument(help="The grant name a policy asks for (jit: NAME).")],
    duration: Annotated[
        str,
        typer.Option("--for", help="How long once approved: 90s, 15m, 2h, 1d (at most 30d)."),
    ],
    reason: Annotated[str, typer.Option("--reason", help="Why (shown to the approver).")],
    principal: Annotated[
        str | None,
        typer.Option("--principal", help=f"Whose grant (default: ${PRINCIPAL_ENV})."),
    ] = None,
    config_path: ConfigOption = None,
    url: UrlOption = None,
    as_json: JsonFlag = False,
) -> None:
    """File a pending request for a grant."""
    try:
        seconds = parse_duration(duration, longest=LONGEST)
    except ValueError as exc:
        raise usage(str(exc), "--for") from None
    if not reason.strip():
        raise usage("say why access is needed", "--reason")
    who = _principal(principal)

    def file(ledger: GrantLedger) -> Grant:
        return ledger.store.request(who, name, duration=seconds, reason=reason.strip())

    _change(EventKind.GRANT_CREATED, "requested", file, actor=who,
            config_path=config_path, url=url, as_json=as_json)  # fmt: skip


@app.command("approve")
def approve(
    grant_id: GrantIdArg,
    approver: ApproverOption,
    config_path: ConfigOption = None,
    url: UrlOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Approve a pending grant: in force from now for its duration."""

    def decide(ledger: GrantLedger) -> Grant:
        return ledger.store.approve(grant_id, approver=approver)

    _change(EventKind.GRANT_APPROVED, "approved", decide, actor=approver,
            config_path=config_path, url=url, as_json=as_json)  # fmt: skip


@app.command("deny")
def deny(
    grant_id: GrantIdArg,
    approver: ApproverOption,
    config_path: ConfigOption = None,
    url: UrlOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Deny a pending grant."""

    def decide(ledger: GrantLedger) -> Grant:
        return ledger.store.deny(grant_id, approver=approver)

    _change(EventKind.GRANT_DENIED, "denied", decide, actor=approver,
            config_path=config_path, url=url, as_json=as_json)  # fmt: skip


@app.command("list")
def list_grants(
    principal: Annotated[
        str | None, typer.Option("--principal", help="Only this principal's grants.")
    ] = None,
    active: Annotated[bool, typer.Option("--active", help="Only grants in force now.")] = False,
    status: Annotated[
        GrantStatus | None, typer.Option("--status", help="Only grants in this status.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="At most.")] = 100,
    config_path: ConfigOption = None,
    url: UrlOption = None,
    as_json: JsonFlag = False,
) -> None:
    """List grants, newest request first."""
    now = time.time()
    with reporting_errors(as_json=as_json):
        config, _ = load(config_path, url)
        ledger = open_ledger(config.store.url)
        try:
            found = ledger.find(
                principal=principal, status=status, active_at=now if active else None, limit=limit
            )
        finally:
            ledger.close()
    if as_json:
        render.print_json({"grants": [grant_json(g, now=now) for g in found]})
        return
    _print_table(found, now)


def _state(grant: Grant, now: float) -> str:
    if grant.active_at(now):
        return f"active, {human(max(1.0, (grant.expires or now) - now))} left"
    if grant.status in (GrantStatus.APPROVED, GrantStatus.EXPIRED):
        return "ended"
    return str(grant.status.value)


def _print_table(found: list[Grant], now: float) -> None:
    console = render.stdout()
    if not found:
        render.line(console, "no grants")
        return
    table = Table(highlight=False)
    table.add_column("id", no_wrap=True)
    for column in ("principal", "name", "state", "for", "approver", "reason"):
        table.add_column(column)
    for g in found:
        cells = (g.id, g.principal, g.name, _state(g, now), human(g.duration),
                 g.approver or "-", g.reason)  # fmt: skip
        table.add_row(*(Text(cell) for cell in cells))
    console.print(table, soft_wrap=True)
    render.line(console, f"{len(found)} grant(s)")


def _record_expiries(recorder: Recorder, ended: list[Grant]) -> None:
    """One event per expired grant; every grant whose event failed is named at the end."""
    lost: list[str] = []
    problem: NotAuditedError | None = None
    for grant in ended:
        event = grant_event(EventKind.GRANT_EXPIRED, grant, actor=SWEEPER)
        try:
            recorder.record(event, what=f"grant {grant.id} was marked expired")
        except NotAuditedError as exc:
            lost.append(grant.id)
            problem = exc
    if problem is not None:
        ids = ", ".join(lost)
        raise NotAuditedError(f"{len(lost)} grant(s) were marked expired ({ids}) but not audited; "
                              f"last error: {problem}")  # fmt: skip


@app.command("expire")
def expire(
    config_path: ConfigOption = None,
    url: UrlOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Mark ended grants expired, one audit event each (a grant ends on time anyway)."""
    with reporting_errors(as_json=as_json):
        ledger, recorder = _audited(config_path, url)
        try:
            ended = ledger.sweep(now=time.time())
            _record_expiries(recorder, ended)
        finally:
            ledger.close()
            recorder.close()
    if as_json:
        render.print_json({"expired": [grant_json(g) for g in ended]})
        return
    console = render.stdout()
    for grant in ended:
        render.line(
            console, ("expired ", "yellow"), f"{grant.id} '{grant.name}' of {grant.principal}"
        )
    render.line(console, f"{len(ended)} grant(s) expired")


__all__ = ["app", "grant_json"]
