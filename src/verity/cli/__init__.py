"""The ``verity`` command line: ``verity policy check|test|explain``, ``verity db
migrate|status``, ``verity token mint|verify``, ``verity serve``, ``verity audit
verify|tail|query|export|keygen``, ``verity users``, ``verity identity ca init|issue-svid|
issue-jwt-svid|verify-svid``, ``verity revoke session|subject|token|jti|list``,
``verity grants request|approve|deny|list|expire``, ``verity devices register|report|list``,
``verity segment analyze|query``,
``verity version``.

Exit codes: 0 success, 1 invalid input or failed tests, 2 usage error. Human output is
rendered with Rich; ``--json`` prints one machine-readable document. Errors go to stderr
and never as a Python traceback: every ``VerityError`` is printed as the problems it
carries.
"""

from __future__ import annotations

from importlib import metadata
from typing import Annotated

import typer

from . import render
from .audit import app as audit_app
from .db import app as db_app
from .demo import app as demo_app
from .devices import app as devices_app
from .grants import app as grants_app
from .identity import app as identity_app
from .policy import policy_app
from .revoke import app as revoke_app
from .segment import app as segment_app
from .serve import app as serve_app
from .token import app as token_app
from .users import app as users_app

app = typer.Typer(
    name="verity",
    help="Verity: a zero-trust access platform.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals may hold tokens or secrets
)
app.add_typer(policy_app, name="policy")
app.add_typer(db_app, name="db")
app.add_typer(token_app, name="token")
app.add_typer(serve_app, name="serve")
app.add_typer(audit_app, name="audit")
app.add_typer(users_app, name="users")
app.add_typer(identity_app, name="identity")
app.add_typer(demo_app, name="demo")
app.add_typer(revoke_app, name="revoke")
app.add_typer(grants_app, name="grants")
app.add_typer(devices_app, name="devices")
app.add_typer(segment_app, name="segment")


def package_version() -> str:
    """The installed version of the ``verity`` distribution."""
    try:
        return metadata.version("verity")
    except metadata.PackageNotFoundError:
        return "0+unknown"


@app.command("version")
def version(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print the Verity version."""
    if as_json:
        render.print_json({"name": "verity", "version": package_version()})
    else:
        render.stdout().print(f"verity {package_version()}")


def main() -> None:
    """Console-script entry point (``verity``)."""
    app()


__all__ = ["app", "main"]
