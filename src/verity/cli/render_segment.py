"""Output of ``verity segment``: Rich tables for people, versioned JSON for scripts."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from ..segmentation import Analysis, LoadResult, QueryResult, Verdict
from ..segmentation.ports import PortSegment, Reason
from ..segmentation.report import analysis_json, query_json
from . import render

_VERDICT_STYLE = {
    Verdict.ALLOWED: "bold green",
    Verdict.PARTIAL: "bold yellow",
    Verdict.DENIED: "bold red",
}


def print_problems(loaded: LoadResult) -> None:
    """Documents skipped under ``--keep-going``, and policies not analysed, on stderr."""
    console = render.stderr()
    for ignored in loaded.unanalysed_policies:
        render.line(
            console,
            ("warning: ", "bold yellow"),
            f"{ignored.file} document {ignored.document}: {ignored.api_version} {ignored.kind} "
            f"{ignored.name} is not analysed yet; the answer may be wrong",
        )
    for error in loaded.problems:
        for problem in error.problems:
            render.line(console, ("skipped: ", "bold yellow"), f"{error.source}: {problem}")


def _ports(segment: PortSegment) -> str:
    ports = "all" if (segment.first, segment.last) == (1, 65535) else segment.ports
    return f"{segment.protocol.value} {ports}" + (" (some pods)" if segment.partial else "")


def _reasons(reasons: frozenset[Reason]) -> str:
    return ", ".join("(not isolated)" if r.default else str(r) for r in sorted(reasons))


def _rows(segments: tuple[PortSegment, ...]) -> list[tuple[str, str, str]]:
    """One row per distinct set of reasons: ports joined, reasons once."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for segment in segments:
        key = (_reasons(segment.egress), _reasons(segment.ingress))
        grouped.setdefault(key, []).append(_ports(segment))
    return [(", ".join(ports), out, into) for (out, into), ports in grouped.items()]


def print_analysis(analysis: Analysis, loaded: LoadResult, *, as_json: bool) -> None:
    if as_json:
        render.print_json(analysis_json(analysis, loaded))
        return
    console = render.stdout()
    workloads = Table(title="Workloads", title_justify="left")
    for column in ("Workload", "Pods", "Ingress", "Egress"):
        workloads.add_column(column)
    for w in analysis.workloads:
        workloads.add_row(Text(str(w.ref)), str(w.pods), w.ingress.value, w.egress.value)
    console.print(workloads)
    table = Table(title="Allowed connections", title_justify="left")
    for column in ("From", "To", "Ports", "Egress allowed by", "Ingress allowed by"):
        table.add_column(column, overflow="fold")
    for connection in analysis.connections:
        for position, (ports, out, into) in enumerate(_rows(connection.ports)):
            first = position == 0
            table.add_row(
                Text(str(connection.source) if first else ""),
                Text(str(connection.destination) if first else ""),
                Text(ports),
                Text(out),
                Text(into),
            )
    console.print(table)
    for ignored in loaded.ignored:
        render.line(
            console,
            ("ignored: ", "dim"),
            f"{ignored.file} document {ignored.document}: {ignored.api_version} {ignored.kind} "
            f"{ignored.name}",
        )


def print_query(result: QueryResult, *, as_json: bool) -> None:
    if as_json:
        render.print_json(query_json(result))
        return
    console = render.stdout()
    render.line(
        console,
        (result.verdict.value, _VERDICT_STYLE[result.verdict]),
        f": {result.source} -> {result.destination} {result.protocol.value}/{result.port}",
    )
    for pair in result.pairs:
        render.line(
            console,
            "  ",
            (pair.verdict.value, _VERDICT_STYLE[pair.verdict]),
            f": {pair.source} -> {pair.destination}",
        )
        for decision in (pair.egress, pair.ingress):
            name = decision.direction.value
            if not decision.governed:
                render.line(console, f"    {name}: outside the cluster, not governed")
                continue
            isolating = ", ".join(decision.isolating) or "none (not isolated)"
            allowed = ", ".join(str(r) for r in decision.allowed_by) or "no rule allows this port"
            if decision.denied_by:
                allowed += "; denied by: " + ", ".join(str(r) for r in decision.denied_by)
            render.line(
                console,
                f"    {name}: ",
                (decision.verdict.value, _VERDICT_STYLE[decision.verdict]),
                f"; isolated by: {isolating}; allowed by: {allowed}",
            )
