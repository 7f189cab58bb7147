"""``verity token``: verify a bearer token, or mint one for development (``--dev`` only).

Exit codes of ``verify``: 0 valid, 1 rejected (the reason is printed), 2 usage error.
The verdict goes to standard output (one JSON document with ``--json``).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import urlsplit

import typer
from jwt.exceptions import PyJWTError
from pydantic import ValidationError

from ..identity import IssuerConfig, KeySet, TokenError, TokenVerifier, VerifiedToken
from ..identity.dev import (
    PrivateKey,
    default_algorithm,
    generate_private_key,
    load_private_key,
    mint,
    public_jwk,
    write_private_key,
)
from ..identity.errors import IdentityError, KeyBindingError
from ..identity.keys import key_from_pem
from ..identity.verifier import load_jwks_file
from . import render

app = typer.Typer(
    help="Verify bearer tokens; mint development tokens.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals hold tokens and keys
)

DEFAULT_ALGORITHMS = ["RS256", "ES256", "ES384", "ES512", "EdDSA"]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document (for scripts).")]


def _usage(message: str) -> NoReturn:
    render.line(render.stderr(), ("usage error: ", "bold red"), message)
    raise typer.Exit(2)


STDIN = "-"


def _read_token(argument: str) -> str:
    return sys.stdin.read().strip() if argument == STDIN else argument.strip()


def _config(
    issuer: str, audiences: list[str], jwks: str | None, algorithms: list[str], **extra: Any
) -> tuple[IssuerConfig, KeySet | None]:
    is_url = jwks is not None and urlsplit(jwks).scheme in ("http", "https")
    try:
        config = IssuerConfig.model_validate(
            {
                "issuer": issuer,
                "audiences": audiences,
                "algorithms": algorithms,
                "jwks_uri": jwks if is_url else None,
                "token_cache_size": 0,
                **extra,
            }
        )
    except ValidationError as exc:
        _usage("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    if jwks is None or is_url:
        return config, None
    path = Path(jwks)
    try:
        data = path.read_bytes()
        if data.lstrip().startswith(b"-----BEGIN"):
            return config, KeySet([key_from_pem(data, config.algorithms)])
        return config, load_jwks_file(path, config.algorithms)
    except (OSError, KeyBindingError) as exc:
        _usage(f"--jwks {jwks}: {exc}")


def _valid_json(token: VerifiedToken) -> dict[str, Any]:
    return {
        "valid": True,
        "issuer": token.issuer,
        "subject": token.subject,
        "audience": list(token.audience),
        "algorithm": token.algorithm,
        "key_id": token.key_id,
        "expires_at": token.expires_at,
        "token_sha256": token.token_hash,
        "header": _thaw(token.header),
        "claims": _thaw(token.claims),
    }


def _thaw(value: Any) -> Any:
    """Read-only claims (mapping proxies, tuples) as plain JSON data."""
    if isinstance(value, Mapping):
        return {str(k): _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_thaw(v) for v in value]
    return value


def _rejected_json(error: TokenError) -> dict[str, Any]:
    return {
        "valid": False,
        "reason": error.reason.value,
        "error": type(error).__name__,
        "public_message": error.public_message,
        "detail": error.detail,
        "token_sha256": error.token_hash,
    }


def _print_valid(token: VerifiedToken) -> None:
    console = render.stdout()
    left = token.expires_at - time.time()
    render.line(console, ("valid", "bold green"), f": {token.algorithm} token from {token.issuer}")
    render.line(console, "subject:    ", str(token.subject))
    render.line(console, "key id:     ", str(token.key_id))
    render.line(console, "expires at: ", f"{token.expires_at:.0f} (in {left:.0f}s)")
    render.line(console, "claims:     ", json.dumps(_thaw(token.claims), indent=2))


def _print_rejected(error: TokenError) -> None:
    console = render.stdout()
    render.line(
        console, ("rejected", "bold red"), f" ({error.reason.value}): ", error.public_message
    )
    render.line(console, "detail: ", error.detail)


@app.command("verify")
def verify(
    token: Annotated[
        str, typer.Argument(help="The token, or - to read it from standard input.", metavar="TOKEN")
    ],
    issuer: Annotated[str, typer.Option("--issuer", help="Expected `iss`.", metavar="URL")],
    audience: Annotated[
        list[str], typer.Option("--audience", help="Accepted `aud` (repeatable).", metavar="AUD")
    ],
    jwks: Annotated[
        str | None,
        typer.Option(
            "--jwks",
            help="JWKS file, PEM public key, or JWKS URL (default: OIDC discovery at --issuer).",
            metavar="FILE|URL",
        ),
    ] = None,
    alg: Annotated[
        list[str] | None,
        typer.Option(
            "--alg",
            help="Allowed algorithm (repeatable; default RS256 ES256 ES384 ES512 EdDSA).",
            metavar="ALG",
        ),
    ] = None,
    typ: Annotated[
        str | None, typer.Option("--typ", help="Required `typ` header.", metavar="TYP")
    ] = None,
    leeway: Annotated[
        float, typer.Option("--leeway", help="Clock skew allowed.", metavar="SECONDS")
    ] = 30,
    require: Annotated[
        list[str] | None,
        typer.Option("--require", help="Also require this claim (repeatable).", metavar="CLAIM"),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Verify TOKEN; print its claims, or the exact reason it is rejected (exit 1)."""
    config, keys = _config(
        issuer,
        audience,
        jwks,
        alg or DEFAULT_ALGORITHMS,
        expected_typ=typ,
        leeway_seconds=leeway,
        required_claims=tuple(require or ()),
    )
    try:
        verified = TokenVerifier(config, keys=keys).verify(_read_token(token))
    except TokenError as error:
        if as_json:
            render.print_json(_rejected_json(error))
        else:
            _print_rejected(error)
        raise typer.Exit(1) from None
    if as_json:
        render.print_json(_valid_json(verified))
    else:
        _print_valid(verified)


def _claim_pairs(pairs: list[str]) -> dict[str, Any]:
    claims: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            _usage(f"--claim {pair!r}: expected NAME=VALUE")
        try:
            claims[name] = json.loads(raw)
        except ValueError:
            claims[name] = raw
    return claims


def _signing_key(path: Path, *, generate: bool, alg: str | None) -> PrivateKey:
    if not path.exists() and generate:
        key = generate_private_key(alg or "ES256")
        write_private_key(path, key)
        return key
    return load_private_key(path)


@app.command("mint")
def mint_token(
    issuer: Annotated[str, typer.Option("--issuer", help="`iss` of the token.", metavar="URL")],
    audience: Annotated[
        list[str], typer.Option("--audience", help="`aud` (repeatable).", metavar="AUD")
    ],
    key: Annotated[Path, typer.Option("--key", help="PEM private key file.", metavar="FILE")],
    dev: Annotated[
        bool, typer.Option("--dev", help="Required: confirms this is for development only.")
    ] = False,
    generate_key: Annotated[
        bool, typer.Option("--generate-key", help="Create --key (mode 0600) if it is missing.")
    ] = False,
    subject: Annotated[
        str, typer.Option("--subject", help="`sub` of the token.", metavar="SUB")
    ] = "dev-user",
    alg: Annotated[
        str | None, typer.Option("--alg", help="Algorithm (default: by key type).", metavar="ALG")
    ] = None,
    kid: Annotated[
        str | None,
        typer.Option("--kid", help="Key id (default: RFC 7638 thumbprint).", metavar="KID"),
    ] = None,
    ttl: Annotated[
        int, typer.Option("--ttl", help="Lifetime.", min=1, max=86400, metavar="SECONDS")
    ] = 300,
    claim: Annotated[
        list[str] | None,
        typer.Option(
            "--claim",
            help="Extra claim NAME=VALUE (repeatable; VALUE read as JSON if it parses).",
            metavar="NAME=VALUE",
        ),
    ] = None,
    typ: Annotated[str, typer.Option("--typ", help="`typ` header.", metavar="TYP")] = "JWT",
    jwks_out: Annotated[
        Path | None, typer.Option("--jwks-out", help="Write the public JWKS here.", metavar="FILE")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Mint a signed token with a local key (development only: refuses without --dev)."""
    if not dev:
        _usage("minting is for development only; pass --dev to confirm")
    try:
        private = _signing_key(key, generate=generate_key, alg=alg)
        algorithm = alg or default_algorithm(private)
        jwk = public_jwk(private, algorithm, kid)
        token = mint(
            private,
            alg=algorithm,
            kid=jwk["kid"],
            issuer=issuer,
            audience=audience[0] if len(audience) == 1 else audience,
            subject=subject,
            ttl=ttl,
            claims=_claim_pairs(claim or []),
            typ=typ,
        )
    except (IdentityError, PyJWTError, OSError, KeyError, ValueError, TypeError) as exc:
        _usage(f"cannot mint: {exc}")
    if jwks_out is not None:
        jwks_out.write_text(json.dumps({"keys": [jwk]}, indent=2) + "\n")
    if as_json:
        render.print_json({"token": token, "algorithm": algorithm, "key_id": jwk["kid"]})
    else:
        typer.echo(token)
