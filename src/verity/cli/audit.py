"""``verity audit``: verify, tail, query and export the tamper-evident audit log.

Exit codes: ``verify`` exits 0 when the log is intact and 1 when it is not (naming the
first bad record); every command exits 2 when it cannot run (no such log, unreadable
key, bad option). ``--json`` output goes to stdout, progress and errors to stderr.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from ..audit import (
    AuditStore,
    Query,
    StoredRecord,
    VerifyReport,
    generate_key,
    load_public_key,
    open_store,
    public_key_path,
    verify,
)
from ..audit.export import export_jsonl, follow, iter_records, jsonl_line, last_records
from ..audit.keys import key_id
from ..audit.syslog import SyslogForwarder
from ..audit.text import parse_since, summary
from ..config import load_config
from ..errors import VerityError
from . import render

app = typer.Typer(
    help="Verify, read and export the tamper-evident audit log.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

Db = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="VERITY_AUDIT_DB",
        help="sqlite:///PATH or postgresql://... (default: audit.url, else store.url).",
    ),
]
Schema = Annotated[
    str | None, typer.Option("--schema", envvar="VERITY_AUDIT_SCHEMA", help="PostgreSQL schema.")
]
Json = Annotated[bool, typer.Option("--json", help="Machine-readable output (JSON).")]
User = Annotated[
    str | None,
    typer.Option("--user", help="Only events about this person: user id or e-mail address."),
]
Effect = Annotated[
    str | None, typer.Option("--decision", help="Only decisions with this effect (allow|deny).")
]
Since = Annotated[str | None, typer.Option("--since", help="30s, 15m, 1h, 2d or ISO 8601 time.")]


@contextmanager
def _opened(db: str | None, schema: str | None, *, as_json: bool) -> Iterator[AuditStore]:
    """Open the log read-only; any VerityError -> message on stderr and exit 2."""
    try:
        if db is None:
            config = load_config()
            db, schema = config.audit.url or config.store.url, schema or config.audit.pg_schema
        store = open_store(db, schema=schema, create=False)
    except VerityError as exc:
        render.print_error(exc, as_json=as_json)
        raise typer.Exit(2) from None
    try:
        yield store
    except VerityError as exc:
        render.print_error(exc, as_json=as_json)
        raise typer.Exit(2) from None
    finally:
        store.close()


def _query(
    user: str | None, effect: str | None, since: str | None, *, limit: int | None = None
) -> Query:
    if effect is not None and effect not in ("allow", "deny"):
        raise typer.BadParameter("use allow or deny", param_hint="--decision")
    try:
        since_ms = parse_since(since) if since else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None
    kind = "decision" if effect else None
    if user is not None and "@" in user:  # an e-mail address, or an id that looks like one
        return Query(person=user, outcome=effect, kind=kind, since_ms=since_ms, limit=limit)
    return Query(user=user, outcome=effect, kind=kind, since_ms=since_ms, limit=limit)


def _print_report(report: VerifyReport, *, as_json: bool) -> None:
    if as_json:
        render.print_json(report.to_json())
        return
    console = render.stdout()
    if report.finding is not None:
        bad = report.finding
        render.line(console, ("TAMPERED", "bold red"), f": first bad record is seq {bad.seq}")
        render.line(console, f"  {bad.kind.value}: {bad.reason}")
        return
    render.line(
        console,
        ("INTACT", "bold green"),
        f": {report.records:,} records, {report.checkpoints:,} checkpoints (last at seq "
        f"{report.last_checkpoint_seq:,}), {report.unsigned_tail:,} after the last "
        f"checkpoint, verified in {report.seconds:.2f} s",
    )
    if not report.signatures_checked:
        render.line(console, ("warning", "yellow"), ": no --public-key, signatures not checked")


@app.command("verify")
def verify_command(
    db: Db = None,
    schema: Schema = None,
    public_key: Annotated[
        Path | None,
        typer.Option("--public-key", envvar="VERITY_AUDIT_PUBLIC_KEY", help="Ed25519 PEM."),
    ] = None,
    as_json: Json = False,
) -> None:
    """Verify the hash chain and the signed checkpoints; exit 1 if the log was tampered."""
    with _opened(db, schema, as_json=as_json) as store:
        key = load_public_key(public_key) if public_key else None
        total = store.count()
        columns = (TextColumn("verify"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=render.stderr(), transient=True) as progress:
            task = progress.add_task("verify", total=total)
            report = verify(store, key, progress=lambda seq: progress.update(task, completed=seq))
    _print_report(report, as_json=as_json)
    if not report.ok:
        raise typer.Exit(1)


def _print_records(records: Iterable[StoredRecord], *, as_json: bool) -> int:
    """JSON lines (``--json``) or one human line per record; returns the count."""
    count = 0
    console = render.stdout()
    for record in records:
        count += 1
        if as_json:
            sys.stdout.write(jsonl_line(record).decode("utf-8"))
            sys.stdout.flush()
            continue
        when, seq, kind, outcome, who, decision_id, message = summary(record)
        style = "red" if outcome in ("deny", "failure") else "green"
        parts = (
            (when, "dim"), f" #{seq} ", (kind, "cyan"), " ", (outcome, style), " ",
            (who, "bold"), " ", (decision_id, "magenta"), " ", message,
        )  # fmt: skip
        console.print(Text.assemble(*parts), soft_wrap=True)
    return count


@app.command("tail")
def tail_command(
    db: Db = None,
    schema: Schema = None,
    lines: Annotated[int, typer.Option("-n", "--lines", min=0, help="How many.")] = 10,
    follow_: Annotated[bool, typer.Option("--follow", "-f", help="Wait for new events.")] = False,
    as_json: Json = False,
    poll: Annotated[float, typer.Option("--poll", hidden=True, min=0.01)] = 0.5,
    follow_for: Annotated[float | None, typer.Option("--follow-for", hidden=True)] = None,
) -> None:
    """Print the last events (with --follow, then new ones as they arrive)."""
    with _opened(db, schema, as_json=as_json) as store:
        recent = last_records(store, lines)
        _print_records(recent, as_json=as_json)
        if not follow_:
            return
        head = store.head()
        after = recent[-1].seq if recent else (head.seq if head else 0)
        deadline = None if follow_for is None else time.monotonic() + follow_for
        stop = (lambda: False) if deadline is None else (lambda: time.monotonic() > deadline)
        try:
            _print_records(
                follow(store, after_seq=after, poll_seconds=poll, stop=stop), as_json=as_json
            )
        except KeyboardInterrupt:
            return


@app.command("query")
def query_command(
    db: Db = None,
    schema: Schema = None,
    user: User = None,
    effect: Effect = None,
    since: Since = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="At most N.")] = None,
    as_json: Json = False,
) -> None:
    """Find events, e.g. --user alice --decision deny --since 1h."""
    query = _query(user, effect, since, limit=limit)
    with _opened(db, schema, as_json=as_json) as store:
        count = _print_records(iter_records(store, query), as_json=as_json)
    if not as_json:
        render.line(render.stderr(), ("", ""), f"{count} event(s)")


@app.command("export")
def export_command(
    db: Db = None,
    schema: Schema = None,
    format_: Annotated[str, typer.Option("--format", help="jsonl or syslog.")] = "jsonl",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File (jsonl).")] = None,
    chain: Annotated[bool, typer.Option("--chain", help="jsonl: exact bytes + hashes.")] = False,
    host: Annotated[str, typer.Option("--syslog-host", help="Syslog receiver.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--syslog-port", min=1, max=65535)] = 514,
    protocol: Annotated[str, typer.Option("--protocol", help="udp or tcp (syslog).")] = "udp",
    user: User = None,
    effect: Effect = None,
    since: Since = None,
) -> None:
    """Export events as OCSF JSON lines (file or stdout) or forward them to syslog."""
    if format_ not in ("jsonl", "syslog"):
        raise typer.BadParameter("use jsonl or syslog", param_hint="--format")
    if protocol not in ("udp", "tcp"):
        raise typer.BadParameter("use udp or tcp", param_hint="--protocol")
    query = _query(user, effect, since)
    with _opened(db, schema, as_json=False) as store:
        if format_ == "syslog":
            with SyslogForwarder(host, port, protocol="tcp" if protocol == "tcp" else "udp") as out:
                count = out.send_all(iter_records(store, query))
        elif output is None:
            count = export_jsonl(store, sys.stdout.buffer, query=query, chain=chain)
        else:
            with output.open("wb") as handle:
                count = export_jsonl(store, handle, query=query, chain=chain)
    render.line(render.stderr(), f"exported {count} event(s)")


@app.command("keygen")
def keygen_command(
    path: Annotated[Path, typer.Argument(help="Private key file to create (mode 0600).")],
) -> None:
    """Create an Ed25519 checkpoint key and PATH.pub for verifiers."""
    try:
        public = generate_key(path)
    except VerityError as exc:
        render.print_error(exc, as_json=False)
        raise typer.Exit(2) from None
    render.line(render.stdout(), f"private key {path} (0600), public key {public_key_path(path)}")
    render.line(render.stdout(), f"key id {key_id(public)}")
