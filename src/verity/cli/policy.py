"""``verity policy``: check, test and explain policies from files."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from ..errors import PolicyLoadError, VerityError
from ..policy import Engine, compile_policy, load_policy_file
from ..policy.testing import load_test_file, run_tests
from ..request_io import load_request_file
from . import render, render_explain

policy_app = typer.Typer(
    help="Validate, test and explain access policies.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

PolicyFile = Annotated[Path, typer.Argument(help="Policy file (YAML or JSON).", metavar="POLICY")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document (for scripts).")]


@contextmanager
def _reporting_errors(*, as_json: bool) -> Iterator[None]:
    """Print any VerityError cleanly on stderr and exit 1 (invalid input)."""
    try:
        yield
    except VerityError as exc:
        render.print_error(exc, as_json=as_json)
        raise typer.Exit(1) from None


def _engine(path: Path) -> Engine:
    return compile_policy(load_policy_file(path))


@policy_app.command("check")
def check(
    file: Annotated[Path, typer.Argument(help="Policy file to validate.", metavar="FILE")],
    as_json: JsonFlag = False,
) -> None:
    """Validate a policy (load and compile it); list every problem with its key path."""
    try:
        engine = _engine(file)
    except PolicyLoadError as exc:
        render.print_check(str(file), None, exc, as_json=as_json)
        raise typer.Exit(1) from None
    except VerityError as exc:
        render.print_error(exc, as_json=as_json)
        raise typer.Exit(1) from None
    render.print_check(str(file), engine, None, as_json=as_json)


@policy_app.command("test")
def run_policy_tests(
    policy: PolicyFile,
    tests: Annotated[Path, typer.Argument(help="Test file (YAML or JSON).", metavar="TESTS")],
    as_json: JsonFlag = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show the decision of passing cases too.")
    ] = False,
) -> None:
    """Run the test cases of TESTS against POLICY; exit 1 if any case fails."""
    with _reporting_errors(as_json=as_json):
        engine = _engine(policy)
        suite = load_test_file(tests)
    report = run_tests(engine, suite)
    render.print_report(report, policy=str(policy), as_json=as_json, verbose=verbose)
    if not report.ok:
        raise typer.Exit(1)


@policy_app.command("explain")
def explain(
    policy: PolicyFile,
    request: Annotated[
        Path,
        typer.Option(
            "--request",
            "-r",
            help="Access request file (YAML or JSON).",
            metavar="REQUEST",
        ),
    ],
    as_json: JsonFlag = False,
    all_rules: Annotated[
        bool, typer.Option("--all-rules", help="Also list rules whose resources do not apply.")
    ] = False,
) -> None:
    """Decide REQUEST under POLICY and show every criterion of every applicable rule."""
    with _reporting_errors(as_json=as_json):
        engine = _engine(policy)
        access_request = load_request_file(request)
    explanation = engine.explain(access_request, all_rules=all_rules)
    render_explain.print_explanation(explanation, policy=str(policy), as_json=as_json)
