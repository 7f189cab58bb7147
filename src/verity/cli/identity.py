"""``verity identity``: the workload CA and SVIDs (``ca init``, ``issue-svid``,
``issue-jwt-svid``, ``verify-svid``).

Exit codes: 0 success (``verify-svid``: the SVID is valid), 1 rejected or refused (the
reason is printed), 2 usage error (missing file, bad option). Keys are written 0600 and
are never printed.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from ..identity.workload import (
    CertificateAuthority,
    SvidRejectedError,
    TrustBundle,
    WorkloadConfig,
    issue_jwt_svid,
    load_chain_pem,
    verify_x509_svid,
)
from ..identity.workload.errors import WorkloadIdentityError
from . import render

app = typer.Typer(
    help="Workload identity: certificate authority, X.509-/JWT-SVIDs (SPIFFE).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals hold private keys
)
ca_app = typer.Typer(help="The built-in certificate authority.", no_args_is_help=True)
app.add_typer(ca_app, name="ca")

_DEFAULTS = WorkloadConfig()
_DURATION = re.compile(r"(\d+)([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document (for scripts).")]
CaDir = Annotated[Path, typer.Option("--ca-dir", help="The CA folder.")]


def _usage(message: str) -> NoReturn:
    render.line(render.stderr(), ("usage error: ", "bold red"), message)
    raise typer.Exit(2)


def _fail(message: str, *, as_json: bool, document: dict[str, Any] | None = None) -> NoReturn:
    if as_json:
        render.print_json(document or {"ok": False, "error": message})
    else:
        render.line(render.stderr(), ("error: ", "bold red"), message)
    raise typer.Exit(1)


def parse_duration(text: str) -> dt.timedelta:
    """``90s``, ``30m``, ``1h``, ``1h30m``, ``2d`` -> timedelta; ``ValueError`` otherwise."""
    parts = _DURATION.findall(text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise ValueError(f"{text!r} is not a duration like 90s, 30m, 1h or 1h30m")
    return dt.timedelta(seconds=sum(int(n) * _UNIT[u] for n, u in parts))


def _duration(text: str, option: str) -> dt.timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        _usage(f"{option}: {exc}")


def _load_ca(ca_dir: Path, max_ttl: str | None) -> CertificateAuthority:
    update: dict[str, Any] = {}
    if max_ttl is not None:
        update["max_ttl_seconds"] = int(_duration(max_ttl, "--max-ttl").total_seconds())
    config = WorkloadConfig(ca_dir=ca_dir, **update)
    try:
        return CertificateAuthority.load(ca_dir, config=config)
    except WorkloadIdentityError as exc:
        _usage(str(exc))


@ca_app.command("init")
def ca_init(
    trust_domain: Annotated[str, typer.Option("--trust-domain", help="e.g. prod.example")],
    ca_dir: CaDir = _DEFAULTS.ca_dir,
    key_type: Annotated[str, typer.Option("--key-type", help="ec-p256 or ed25519.")] = "ec-p256",
    intermediate: Annotated[bool, typer.Option(help="Sign SVIDs with an intermediate.")] = False,
    days: Annotated[int, typer.Option(min=1, max=3650, help="CA lifetime.")] = 365,
    as_json: JsonFlag = False,
) -> None:
    """Create a CA (root key 0600) and its trust bundle (bundle.pem, bundle.jwks.json)."""
    if key_type not in ("ec-p256", "ed25519"):
        _usage("--key-type must be ec-p256 or ed25519")
    try:
        ca = CertificateAuthority.create(
            trust_domain=trust_domain, key_type=key_type,  # type: ignore[arg-type]
            intermediate=intermediate, ca_ttl=dt.timedelta(days=days),
        )  # fmt: skip
        written = ca.save(ca_dir)
    except WorkloadIdentityError as exc:
        _fail(str(exc), as_json=as_json)
    document = {"ok": True, "trust_domain": ca.trust_domain, "files": [str(p) for p in written]}
    if as_json:
        render.print_json(document)
        return
    render.stdout().print(f"CA for spiffe://{ca.trust_domain} created in {ca_dir}")
    for path in written:
        render.line(render.stdout(), "  ", str(path))


@app.command("issue-svid")
def issue_svid(
    spiffe_id: Annotated[str, typer.Argument(help="spiffe://trust-domain/path")],
    out: Annotated[Path, typer.Option("--out", help="Folder for svid.crt, svid.key, bundle.pem")],
    ttl: Annotated[str, typer.Option(help="Lifetime, e.g. 1h.")] = "1h",
    max_ttl: Annotated[str | None, typer.Option(help="Override the maximum lifetime.")] = None,
    ca_dir: CaDir = _DEFAULTS.ca_dir,
    as_json: JsonFlag = False,
) -> None:
    """Issue an X.509-SVID: writes the chain (svid.crt) and its key (svid.key, 0600)."""
    ca = _load_ca(ca_dir, max_ttl)
    lifetime = _duration(ttl, "--ttl")
    try:
        svid = ca.issue_x509_svid(spiffe_id, ttl=lifetime)
    except WorkloadIdentityError as exc:
        _fail(str(exc), as_json=as_json)
    cert_path, key_path = svid.write(out, bundle_pem=TrustBundle.of_authority(ca).to_pem())
    document = {
        "ok": True, "spiffe_id": str(svid.spiffe_id), "certificate": str(cert_path),
        "key": str(key_path), "not_after": svid.not_after.isoformat(),
        "serial": format(svid.certificate.serial_number, "x"),
    }  # fmt: skip
    if as_json:
        render.print_json(document)
        return
    render.line(
        render.stdout(), f"issued {svid.spiffe_id} until {svid.not_after:%Y-%m-%d %H:%M:%S} UTC"
    )
    render.line(render.stdout(), f"  {cert_path}\n  {key_path}")


@app.command("issue-jwt-svid")
def issue_jwt(
    spiffe_id: Annotated[str, typer.Argument(help="spiffe://trust-domain/path")],
    audience: Annotated[list[str], typer.Option("--audience", help="Repeatable.")],
    ttl: Annotated[str, typer.Option(help="Lifetime, e.g. 5m.")] = "5m",
    ca_dir: CaDir = _DEFAULTS.ca_dir,
) -> None:
    """Issue a JWT-SVID (ES256) and print it on standard output."""
    ca = _load_ca(ca_dir, None)
    seconds = _duration(ttl, "--ttl").total_seconds()
    try:
        token = issue_jwt_svid(ca, spiffe_id, audience=audience, ttl=seconds)
    except WorkloadIdentityError as exc:
        _fail(str(exc), as_json=False)
    typer.echo(token)


def _bundle(bundle: Path | None, ca_dir: Path, trust_domain: str | None) -> TrustBundle:
    path = bundle or ca_dir / "bundle.pem"
    if not path.is_file():
        _usage(f"no trust bundle at {path} (use --bundle FILE)")
    try:
        return TrustBundle.load(path, trust_domain=trust_domain)
    except WorkloadIdentityError as exc:
        _usage(str(exc))


@app.command("verify-svid")
def verify_svid(
    cert: Annotated[Path, typer.Argument(help="PEM chain, leaf first.")],
    bundle: Annotated[Path | None, typer.Option(help="PEM or SPIFFE JWKS bundle.")] = None,
    trust_domain: Annotated[str | None, typer.Option(help="The bundle's trust domain.")] = None,
    ca_dir: CaDir = _DEFAULTS.ca_dir,
    as_json: JsonFlag = False,
) -> None:
    """Verify an X.509-SVID; print its SPIFFE ID and validity, or why it is rejected."""
    if not cert.is_file():
        _usage(f"{cert}: no such file")
    trusted = _bundle(bundle, ca_dir, trust_domain)
    try:
        verified = verify_x509_svid(load_chain_pem(cert.read_bytes()), trusted)
    except SvidRejectedError as exc:
        document = {"valid": False, "reason": exc.reason.value, "detail": exc.detail}
        _fail(f"rejected ({exc.reason.value}): {exc.detail}", as_json=as_json, document=document)
    document = {
        "valid": True, "spiffe_id": str(verified.spiffe_id),
        "trust_domain": verified.spiffe_id.trust_domain,
        "not_before": verified.not_before.isoformat(), "not_after": verified.not_after.isoformat(),
    }  # fmt: skip
    if as_json:
        render.print_json(document)
        return
    render.line(render.stdout(), ("valid ", "bold green"), str(verified.spiffe_id))
    render.line(render.stdout(), f"  not before {verified.not_before:%Y-%m-%d %H:%M:%S} UTC")
    render.line(render.stdout(), f"  not after  {verified.not_after:%Y-%m-%d %H:%M:%S} UTC")
