"""``verity segment analyze|query``: what Kubernetes NetworkPolicies actually allow.

    verity segment analyze deploy/ policies.yaml [--json] [--keep-going]
    verity segment query deploy/ --from default/gateway --to default/api-service --port 8080

PATHS are YAML/JSON files or directories (read recursively). Exit codes: ``analyze`` 0 done,
2 bad input; ``query`` 0 allowed (for every pod pair, or for some: ``partial``), 1 denied,
2 bad input. Under ``--keep-going`` a malformed document is reported on stderr and skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import VerityError
from ..segmentation import LoadResult, Protocol, analyze, compile_cluster, load_manifests, query
from . import render, render_segment

app = typer.Typer(
    help="Analyse Kubernetes NetworkPolicies: who can reach whom, on which ports.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

Paths = Annotated[
    list[Path], typer.Argument(help="Manifest files or directories.", metavar="PATHS...")
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document (for scripts).")]
KeepGoing = Annotated[
    bool, typer.Option("--keep-going", help="Skip malformed documents (reported on stderr).")
]
BAD_INPUT = 2


def _load(paths: list[Path], *, keep_going: bool, as_json: bool) -> LoadResult:
    missing = [p for p in paths if not p.exists()]
    if missing:
        render.line(
            render.stderr(), ("error: ", "bold red"), f"no such file or directory: {missing[0]}"
        )
        raise typer.Exit(BAD_INPUT)
    try:
        loaded = load_manifests(paths, keep_going=keep_going)
    except VerityError as exc:
        render.print_error(exc, as_json=as_json)
        raise typer.Exit(BAD_INPUT) from None
    render_segment.print_problems(loaded)
    return loaded


@app.command("analyze")
def analyze_command(paths: Paths, as_json: JsonFlag = False, keep_going: KeepGoing = False) -> None:
    """List every allowed connection between workloads and IP ranges, with ports and rules."""
    loaded = _load(paths, keep_going=keep_going, as_json=as_json)
    render_segment.print_analysis(analyze(loaded.cluster), loaded, as_json=as_json)


@app.command("query")
def query_command(
    paths: Paths,
    source: Annotated[str, typer.Option("--from", help="NS/WORKLOAD[Kind], IP or CIDR.")],
    destination: Annotated[str, typer.Option("--to", help="NS/WORKLOAD[Kind], IP or CIDR.")],
    port: Annotated[int, typer.Option("--port", help="Destination port number.")],
    protocol: Annotated[str, typer.Option("--protocol", help="TCP, UDP or SCTP.")] = "TCP",
    as_json: JsonFlag = False,
    keep_going: KeepGoing = False,
) -> None:
    """Decide one connection: allowed (exit 0) or denied (exit 1), with every deciding rule."""
    try:
        proto = Protocol(protocol.upper())
    except ValueError:
        render.line(render.stderr(), ("error: ", "bold red"), f"unknown protocol {protocol!r}")
        raise typer.Exit(BAD_INPUT) from None
    loaded = _load(paths, keep_going=keep_going, as_json=as_json)
    try:
        result = query(compile_cluster(loaded.cluster), source, destination, port, proto)
    except VerityError as exc:
        render.print_error(exc, as_json=as_json)
        raise typer.Exit(BAD_INPUT) from None
    render_segment.print_query(result, as_json=as_json)
    if not result.allowed:
        raise typer.Exit(1)
