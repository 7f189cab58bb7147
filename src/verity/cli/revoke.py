"""``verity revoke session|subject|token|jti VALUE`` and ``verity revoke list``.

    verity revoke subject alice --reason "laptop stolen"      # her tokens and sessions
    verity revoke jti 3f9c... --for 2h
    verity revoke token - < token.txt                           # the raw token on stdin
    verity revoke session 9a41...                               # a session's store id
    verity revoke list --json

A revocation is stored in the shared store (``--url``, else ``store.url`` and
``store.redis_url`` of ``--config`` / ``$VERITY_CONFIG`` / ``./verity.yaml``, a relative
SQLite path being relative to that file's folder, as for ``verity serve``) and every
gateway node obeys it: at once over PostgreSQL NOTIFY or Redis pub/sub, at the latest at
its next poll of the store (2 s on SQLite, 30 s otherwise), and on every (re)start.

    session  a browser session, by its store id (64 hex digits, as in the audit log); the
             session is also deleted from the store
    subject  every bearer token of this ``sub`` issued at or before now, and the browser
             sessions of this principal created at or before now (deleted from the store);
             tokens and sessions issued later are accepted again
    token    one bearer token: ``-`` reads the raw token (a JWS ``header.payload.signature``)
             from standard input and stores the SHA-256 of its signing input
             ``header.payload`` (so every signature form of the token is refused; the token
             is never printed or logged), and, when its payload has a ``jti``, a ``jti``
             revocation too (the payload is decoded without verifying the token, only to
             read ``jti``); or give that SHA-256 as 64 hex digits
    jti      the tokens with this JWT ID

``--for`` (``90s``, ``15m``, ``1h``, ``2d``, ``1h30m``) is how long the revocation lasts;
the default is the longest lifetime a revoked credential can have: 24 hours (the longest
access or ID token the embedded IdP may issue, and the assumed longest of an external
issuer) or ``login.session_lifetime_seconds`` of the configuration if that is longer.

Exit codes: 0 revoked (or listed); 1 the store is unreachable or the configuration is
invalid (passwords in URLs are masked); 2 usage error (unknown kind, bad duration, bad value).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
from rich.table import Table
from rich.text import Text

from .._urls import mask_url
from ..config import StoreConfig, VerityConfig, load_config
from ..errors import VerityError
from ..identity.core import signing_input_hash
from ..identity.revocation_sync import record_revocation
from ..store import (
    Revocation,
    RevocationKind,
    StoreError,
    Stores,
    StoreUnavailableError,
    open_stores,
)
from ..store.factory import backend_of, sqlite_path
from . import render

app = typer.Typer(
    help="Revoke sessions, subjects, tokens and JWT IDs on every gateway node.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals hold the URL, its password, or a token
)

DEFAULT_SECONDS = 24 * 3600.0
MAX_SECONDS = 366 * 86400.0
MAX_VALUE = 512  # as the store accepts
MAX_REASON = 256
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(?:\d+[smhdw])+")
_PART = re.compile(r"(\d+)([smhdw])")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def _value_arg(text: str) -> Any:
    return typer.Argument(metavar="VALUE", help=text, show_default=False)


SessionArg = Annotated[str, _value_arg("The session's store id (64 hex digits; audit log).")]
SubjectArg = Annotated[str, _value_arg("The subject: `sub` of tokens, principal id of sessions.")]
JtiArg = Annotated[str, _value_arg("The JWT ID (`jti` claim).")]
ReasonOption = Annotated[
    str, typer.Option("--reason", help="Why (stored with it; at most 256 characters).")
]
ForOption = Annotated[
    str | None,
    typer.Option(
        "--for",
        help="How long it lasts: 90s, 15m, 1h, 2d, 1h30m (default: 24h, or the session "
        "lifetime if longer).",
        show_default=False,
    ),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="verity.yaml (default: $VERITY_CONFIG or ./verity.yaml).",
        show_default=False,
    ),
]  # fmt: skip
UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url", help="sqlite:///PATH or postgresql://... instead of the configuration's store.",
        show_default=False,
    ),
]  # fmt: skip
RedisOption = Annotated[
    str | None,
    typer.Option(
        "--redis-url", help="redis://... for pub/sub fan-out (with --url).", show_default=False
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document (for scripts).")]


def parse_duration(text: str) -> float:
    """Seconds in ``90s``, ``15m``, ``1h``, ``2d``, ``1w``, ``1h30m`` (``ValueError`` else)."""
    cleaned = text.strip().lower()
    if not _DURATION.fullmatch(cleaned):
        raise ValueError("a duration is like 90s, 15m, 1h, 2d or 1h30m")
    seconds = float(sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(cleaned)))
    if not 0 < seconds <= MAX_SECONDS:
        raise ValueError("a duration is more than 0s and at most 366d")
    return seconds


def default_seconds(config: VerityConfig | None) -> float:
    """24 hours, or the configured session lifetime when that is longer."""
    if config is None:
        return DEFAULT_SECONDS
    return max(DEFAULT_SECONDS, config.login.session_lifetime_seconds)


def _safe(url: str) -> str:
    try:
        return mask_url(url)
    except ValueError:
        return "<invalid url>"


def _usage(message: str, param: str) -> typer.BadParameter:
    return typer.BadParameter(message, param_hint=param)


def _check_url(url: str, redis_url: str | None) -> None:
    try:
        backend_of(url)
    except ValueError as exc:
        raise _usage(str(exc), "--url") from None
    try:
        scheme = urlsplit(redis_url).scheme if redis_url is not None else "redis"
    except ValueError:
        scheme = ""
    if scheme not in ("redis", "rediss"):
        raise _usage("a Redis URL is redis://HOST:PORT/DB or rediss://...", "--redis-url")


def _settings(
    config_path: Path | None, url: str | None, redis_url: str | None
) -> tuple[StoreConfig, VerityConfig | None]:
    if url is not None and config_path is not None:
        raise _usage("give either --url or --config", "--url")
    if url is None:
        if redis_url is not None:
            raise _usage("--redis-url goes with --url", "--redis-url")
        config = load_config(config_path)  # relative SQLite paths: to the file's folder
        return config.store, config
    _check_url(url, redis_url)
    return StoreConfig.model_construct(url=url, redis_url=redis_url), None


def _open(settings: StoreConfig) -> tuple[Stores, str | None]:
    """The stores; when Redis is down the database alone (nodes still hear it through
    PostgreSQL NOTIFY or their next poll): (stores, warning or None)."""
    if backend_of(settings.url) == "sqlite" and not sqlite_path(settings.url).exists():
        raise StoreUnavailableError(
            settings.url, "the database file does not exist (is this the gateway's store?)"
        )
    try:
        return open_stores(settings), None
    except StoreUnavailableError as exc:
        if settings.redis_url is None or exc.url == _safe(settings.url):
            raise
    durable = StoreConfig.model_construct(url=settings.url, redis_url=None)
    warning = "Redis is unreachable: stored in the database only; nodes learn of it by "
    warning += "PostgreSQL NOTIFY or their next poll"
    return open_stores(durable), warning


@contextmanager
def _reporting_errors(*, as_json: bool) -> Iterator[None]:
    try:
        yield
    except VerityError as exc:
        render.print_error(exc, as_json=as_json)
        raise typer.Exit(1) from None
    except ValueError as exc:  # from the store's checks: never quotes a URL or a token
        render.print_error(StoreError(str(exc)), as_json=as_json)
        raise typer.Exit(1) from None


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def revocation_json(revocation: Revocation) -> dict[str, Any]:
    """A revocation as JSON (``SESSION``/``TOKEN`` values are hashes already)."""
    return {
        "kind": revocation.kind.value,
        "value": revocation.value,
        "revoked_at": _iso(revocation.revoked_at),
        "expires": _iso(revocation.expires),
        "reason": revocation.reason,
        "id": revocation.id,
    }


def _read_token() -> str:
    """The raw token from standard input (a ``Bearer `` prefix is dropped); never shown."""
    text = sys.stdin.read().strip()
    scheme, _, rest = text.partition(" ")
    if rest and scheme.lower() == "bearer":
        text = rest.strip()
    if not text or any(ch.isspace() for ch in text) or not text.isascii():
        raise _usage("standard input holds no single ASCII token", "VALUE")
    return text


def _unverified_payload(token: str) -> dict[str, Any]:
    """The JSON payload of a compact JWS, decoded WITHOUT verifying the token: used only
    to read ``jti``. Raises ``typer.BadParameter`` (never quoting the token)."""
    segments = token.split(".")
    if len(segments) != 3 or not all(_B64URL.fullmatch(part) for part in segments):
        raise _usage("standard input holds no JWT (header.payload.signature)", "VALUE")
    try:
        raw = base64.urlsafe_b64decode(segments[1] + "=" * (-len(segments[1]) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError):
        raise _usage("the token's payload is not base64url-encoded JSON", "VALUE") from None
    if not isinstance(payload, dict):
        raise _usage("the token's payload is not a JSON object", "VALUE")
    return payload


def _token_jti(token: str) -> tuple[str | None, str | None]:
    """(the token's ``jti`` to revoke too, or a warning why it is not revoked)."""
    jti = _unverified_payload(token).get("jti")
    if jti is None:
        return None, None
    if not isinstance(jti, str) or not jti.strip() or len(jti) > MAX_VALUE:
        reason = f"the token's jti is not a string of 1 to {MAX_VALUE} characters"
        return None, reason + ": revoked by its signing input only"
    return jti, None


def _value(kind: RevocationKind, value: str) -> tuple[str, str | None, str | None]:
    """(the value to store, the ``jti`` to revoke as well, a warning)."""
    if kind is RevocationKind.TOKEN:
        if value == "-":
            token = _read_token()
            jti, warning = _token_jti(token)
            return signing_input_hash(token), jti, warning
        if not _HEX64.fullmatch(value):
            raise _usage(
                "give '-' and the token on standard input (never as an argument), or the "
                "SHA-256 of its signing input (header.payload) as 64 lower-case hex digits",
                "VALUE",
            )
        return value, None, None
    if kind is RevocationKind.SESSION and not _HEX64.fullmatch(value):
        raise _usage("a session is named by its store id: 64 lower-case hex digits", "VALUE")
    if not value.strip() or len(value) > MAX_VALUE:
        raise _usage(f"give 1 to {MAX_VALUE} characters", "VALUE")
    return value, None, None


def _revoke(
    kind: RevocationKind,
    value: str,
    *,
    reason: str,
    duration: str | None,
    config_path: Path | None,
    url: str | None,
    redis_url: str | None,
    as_json: bool,
) -> None:
    if len(reason) > MAX_REASON:
        raise _usage(f"at most {MAX_REASON} characters", "--reason")
    seconds = None
    if duration is not None:
        try:
            seconds = parse_duration(duration)
        except ValueError as exc:
            raise _usage(str(exc), "--for") from None
    stored, jti, jti_warning = _value(kind, value)
    with _reporting_errors(as_json=as_json):
        settings, config = _settings(config_path, url, redis_url)
        lasts = seconds if seconds is not None else default_seconds(config)
        stores, warning = _open(settings)
        with stores:
            expires = time.time() + lasts
            revocation, ended = record_revocation(
                stores.revocations, kind, stored, expires=expires, reason=reason,
                sessions=stores.sessions,
            )  # fmt: skip
            by_jti = None
            if jti is not None:  # the same token, by its JWT ID as well
                by_jti, _ = record_revocation(
                    stores.revocations, RevocationKind.JTI, jti, expires=expires, reason=reason
                )
    for note in (warning, jti_warning):
        if note is not None:
            render.line(render.stderr(), ("warning: ", "bold yellow"), note)
    if as_json:
        document: dict[str, Any] = {"revoked": revocation_json(revocation)}
        if kind is RevocationKind.TOKEN:
            document["jti_revoked"] = None if by_jti is None else revocation_json(by_jti)
        document |= {"sessions_ended": ended, "store": _safe(settings.url)}
        render.print_json(document)
        return
    _print_revoked(revocation, ended, lasts)
    if by_jti is not None:
        render.line(
            render.stdout(), ("also revoked ", "bold green"), "jti ", (by_jti.value, "bold"),
            " (read from the token's payload, which was not verified)",
        )  # fmt: skip


def _print_revoked(revocation: Revocation, ended: int, lasts: float) -> None:
    console = render.stdout()
    until = f" until {_iso(revocation.expires)} ({_human(lasts)})"
    what = (revocation.value, "bold")
    render.line(console, ("revoked ", "bold green"), f"{revocation.kind.value} ", what, until)
    if revocation.reason:
        render.line(console, "  reason: ", revocation.reason)
    if revocation.kind in (RevocationKind.SESSION, RevocationKind.SUBJECT):
        render.line(console, f"  {ended} stored session(s) ended")
    render.line(console, "  every gateway node refuses it within seconds (see docs/cli.md)")


def _human(seconds: float) -> str:
    parts, rest = [], int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts) or "0s"


@app.command("session")
def session(
    value: SessionArg,
    reason: ReasonOption = "",
    duration: ForOption = None,
    config_path: ConfigOption = None,
    url: UrlOption = None,
    redis_url: RedisOption = None,
    as_json: JsonFlag = False,
) -> None:
    """End a browser session (by its store id) on every node."""
    _revoke(RevocationKind.SESSION, value, reason=reason, duration=duration,
            config_path=config_path, url=url, redis_url=redis_url, as_json=as_json)  # fmt: skip


@app.command("subject")
def subject(
    value: SubjectArg,
    reason: ReasonOption = "",
    duration: ForOption = None,
    config_path: ConfigOption = None,
    url: UrlOption = None,
    redis_url: RedisOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Revoke a subject's tokens and sessions issued until now, on every node."""
    _revoke(RevocationKind.SUBJECT, value, reason=reason, duration=duration,
            config_path=config_path, url=url, redis_url=redis_url, as_json=as_json)  # fmt: skip


@app.command("token")
def token(
    value: Annotated[
        str,
        typer.Argument(
            metavar="VALUE",
            help="'-' (the raw token on standard input) or the SHA-256 (hex) of its signing "
            "input header.payload.",
        ),
    ],
    reason: ReasonOption = "",
    duration: ForOption = None,
    config_path: ConfigOption = None,
    url: UrlOption = None,
    redis_url: RedisOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Revoke one bearer token, whatever its signature, on every node (only the SHA-256 of
    header.payload is stored; with '-', also the token's jti if it has one)."""
    _revoke(RevocationKind.TOKEN, value, reason=reason, duration=duration,
            config_path=config_path, url=url, redis_url=redis_url, as_json=as_json)  # fmt: skip


@app.command("jti")
def jti(
    value: JtiArg,
    reason: ReasonOption = "",
    duration: ForOption = None,
    config_path: ConfigOption = None,
    url: UrlOption = None,
    redis_url: RedisOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Revoke the tokens with this JWT ID on every node."""
    _revoke(RevocationKind.JTI, value, reason=reason, duration=duration,
            config_path=config_path, url=url, redis_url=redis_url, as_json=as_json)  # fmt: skip


@app.command("list")
def list_revocations(
    config_path: ConfigOption = None,
    url: UrlOption = None,
    as_json: JsonFlag = False,
) -> None:
    """List the revocations in force, oldest first."""
    with _reporting_errors(as_json=as_json):
        settings, _ = _settings(config_path, url, None)
        durable = StoreConfig.model_construct(url=settings.url, redis_url=None)
        stores, _warning = _open(durable)
        with stores:
            active = stores.revocations.active()
    if as_json:
        render.print_json({"revocations": [revocation_json(r) for r in active]})
        return
    console = render.stdout()
    if not active:
        render.line(console, "no revocations in force")
        return
    table = Table("kind", "value", "revoked at", "expires", "reason", highlight=False)
    for r in active:
        cells = (r.kind.value, r.value, _iso(r.revoked_at), _iso(r.expires), r.reason or "-")
        table.add_row(*(Text(cell) for cell in cells))
    console.print(table, soft_wrap=True)
    render.line(console, f"{len(active)} revocation(s) in force")


__all__ = ["app", "default_seconds", "parse_duration", "revocation_json"]
