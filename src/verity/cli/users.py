"""``verity users add|list|disable|enable|reset-mfa|set-password``: the embedded IdP's users.

The database is ``--url``, else ``store.url`` of ``verity.yaml`` (``sqlite:///PATH`` or
``postgresql://...``; the provider's tables are migrated on first use). Passwords are never
command-line arguments: they are read with a hidden prompt, or one line from standard
input with ``--password-stdin``. ``add --mfa`` and ``reset-mfa --enroll`` print the
``otpauth://`` URI once; it is not stored anywhere else and never logged.
Exit codes: 0 success, 1 failure (unknown user, e-mail taken, weak password).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from ..config import load_config
from ..errors import VerityError
from ..identity.idp import User, UserStore, open_user_store
from ..identity.idp.errors import IdpError, UnknownUserError
from ..identity.idp.passwords import hash_password
from ..identity.idp.totp import new_secret, provisioning_uri
from . import render

app = typer.Typer(
    help="Manage the embedded identity provider's local users.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals hold passwords and TOTP secrets
)

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="sqlite:///PATH or postgresql://... (default: store.url).",
        show_default=False,
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
StdinFlag = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input.")
]
EmailArg = Annotated[str, typer.Argument(help="The user's e-mail address.")]


@contextmanager
def _users(url: str | None, *, as_json: bool = False) -> Iterator[UserStore]:
    try:
        with open_user_store(url if url is not None else load_config().store.url) as store:
            yield store
    except VerityError as exc:
        render.print_error(exc, as_json=as_json)
        raise typer.Exit(1) from None
    except ValueError as exc:  # messages never contain the password
        render.print_error(IdpError(str(exc)), as_json=as_json)
        raise typer.Exit(1) from None


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    value: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


def _find(store: UserStore, email: str) -> User:
    user = store.by_email(email)
    if user is None:
        raise UnknownUserError(email)
    return user


def _json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "display_name": user.display_name,
        "groups": list(user.groups),
        "roles": list(user.roles),
        "mfa": user.mfa,
        "disabled": user.disabled,
        "created": datetime.fromtimestamp(user.created, UTC).isoformat(timespec="seconds"),
        "updated": datetime.fromtimestamp(user.updated, UTC).isoformat(timespec="seconds"),
    }


@app.command("add")
def add(
    email: EmailArg,
    name: Annotated[str, typer.Option("--name", help="Display name.")] = "",
    group: Annotated[list[str] | None, typer.Option("--group", help="A group (repeat).")] = None,
    role: Annotated[list[str] | None, typer.Option("--role", help="A role (repeat).")] = None,
    mfa: Annotated[bool, typer.Option("--mfa", help="Enrol TOTP; prints the URI once.")] = False,
    password_stdin: StdinFlag = False,
    url: UrlOption = None,
) -> None:
    """Add a user (the password is prompted for, or read from stdin)."""
    with _users(url) as store:
        password_hash = hash_password(_password(password_stdin))
        secret = new_secret() if mfa else None
        user = store.add(
            email,
            password_hash=password_hash,
            display_name=name,
            groups=tuple(group or ()),
            roles=tuple(role or ()),
            totp_secret=secret,
        )
    render.line(render.stdout(), ("added ", "green"), f"{user.email} (id {user.id})")
    if secret is not None:
        _print_enrolment(secret, user.email)


def _print_enrolment(secret: str, email: str) -> None:
    typer.echo("Scan this URI into an authenticator app now; it is not shown again:")
    typer.echo(provisioning_uri(secret, email=email))


@app.command("list")
def list_users(url: UrlOption = None, as_json: JsonFlag = False) -> None:
    """List users (never secrets)."""
    with _users(url, as_json=as_json) as store:
        users = store.list()
    if as_json:
        render.print_json({"users": [_json(user) for user in users]})
        return
    console = render.stdout()
    for user in users:
        flags = ("mfa " if user.mfa else "") + ("disabled" if user.disabled else "")
        groups = ",".join(user.groups) or "-"
        roles = ",".join(user.roles) or "-"
        render.line(console, (user.email, "bold"), f"  groups={groups} roles={roles} {flags}")


def _set_disabled(email: str, url: str | None, *, disabled: bool) -> None:
    with _users(url) as store:
        user = store.set_disabled(_find(store, email).id, disabled)
    render.line(render.stdout(), ("disabled " if disabled else "enabled ", "green"), user.email)


@app.command("disable")
def disable(email: EmailArg, url: UrlOption = None) -> None:
    """Disable a user: no new logins, no token refresh, userinfo refused."""
    _set_disabled(email, url, disabled=True)


@app.command("enable")
def enable(email: EmailArg, url: UrlOption = None) -> None:
    """Enable a disabled user."""
    _set_disabled(email, url, disabled=False)


@app.command("reset-mfa")
def reset_mfa(
    email: EmailArg,
    enroll: Annotated[bool, typer.Option("--enroll", help="Enrol a new secret now.")] = False,
    url: UrlOption = None,
) -> None:
    """Remove the user's TOTP secret (or replace it with ``--enroll``)."""
    secret = new_secret() if enroll else None
    with _users(url) as store:
        user = store.set_totp(_find(store, email).id, secret)
    render.line(render.stdout(), ("reset MFA of ", "green"), user.email)
    if secret is not None:
        _print_enrolment(secret, user.email)


@app.command("set-password")
def set_password(email: EmailArg, password_stdin: StdinFlag = False, url: UrlOption = None) -> None:
    """Set a user's password (prompted for, or read from stdin)."""
    with _users(url) as store:
        user = _find(store, email)
        store.set_password(user.id, hash_password(_password(password_stdin)))
    render.line(render.stdout(), ("password set for ", "green"), user.email)


__all__ = ["app"]
