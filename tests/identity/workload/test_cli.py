"""``verity identity``: ca init, issue-svid, issue-jwt-svid, verify-svid (exit 0/1/2, --json)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography import x509
from typer.testing import CliRunner, Result

from verity.cli.identity import app, parse_duration
from verity.identity.workload import CertificateAuthority, TrustBundle, verify_jwt_svid

from .conftest import make_ca

SID = "spiffe://example.org/ns/prod/sa/web"


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "ca"
    result = run(
        "ca", "init", "--trust-domain", "example.org", "--ca-dir", str(folder), "--intermediate"
    )
    assert result.exit_code == 0, result.output
    return folder


def issue(ca_dir: Path, out: Path, *extra: str) -> Result:
    return run("issue-svid", SID, "--ca-dir", str(ca_dir), "--out", str(out), *extra)


def test_ca_init_writes_files_with_private_keys_0600(ca_dir: Path) -> None:
    for name in ("root.key", "intermediate.key", "jwt.key"):
        assert stat.S_IMODE((ca_dir / name).stat().st_mode) == 0o600
    assert (ca_dir / "bundle.pem").is_file()
    assert (ca_dir / "bundle.jwks.json").is_file()


def test_ca_init_refuses_to_overwrite(ca_dir: Path) -> None:
    before = (ca_dir / "root.key").read_bytes()
    result = run("ca", "init", "--trust-domain", "example.org", "--ca-dir", str(ca_dir), "--json")
    assert result.exit_code == 1
    assert "already exists" in json.loads(result.stdout)["error"]
    assert (ca_dir / "root.key").read_bytes() == before


@pytest.mark.parametrize(("args", "text"), [
    (("--trust-domain", "Bad.Domain"), "lower-case"),
    (("--trust-domain", "example.org", "--key-type", "rsa"), "--key-type"),
])  # fmt: skip
def test_ca_init_rejects_bad_options(tmp_path: Path, args: tuple[str, ...], text: str) -> None:
    result = run("ca", "init", "--ca-dir", str(tmp_path / "ca"), *args)
    assert result.exit_code in (1, 2)
    assert text in result.output


def test_issue_svid_writes_chain_and_key(ca_dir: Path, tmp_path: Path) -> None:
    result = issue(ca_dir, tmp_path / "out", "--ttl", "30m", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["spiffe_id"] == SID
    chain = x509.load_pem_x509_certificates((tmp_path / "out" / "svid.crt").read_bytes())
    assert len(chain) == 2  # leaf + intermediate
    lifetime = chain[0].not_valid_after_utc - chain[0].not_valid_before_utc
    assert lifetime.total_seconds() == 30 * 60 + 30
    assert stat.S_IMODE((tmp_path / "out" / "svid.key").stat().st_mode) == 0o600
    assert "PRIVATE KEY" not in result.output


def test_issue_svid_over_max_ttl_exits_1(ca_dir: Path, tmp_path: Path) -> None:
    result = issue(ca_dir, tmp_path / "out", "--ttl", "2h", "--max-ttl", "1h")
    assert result.exit_code == 1
    assert "exceeds the maximum" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args", [("--ttl", "soon"), ("--ca-dir", "/nonexistent/ca")])
def test_issue_svid_usage_errors_exit_2(
    ca_dir: Path, tmp_path: Path, args: tuple[str, ...]
) -> None:
    result = run("issue-svid", SID, "--ca-dir", str(ca_dir), "--out", str(tmp_path / "o"), *args)
    assert result.exit_code == 2


def test_verify_svid_valid_json(ca_dir: Path, tmp_path: Path) -> None:
    issue(ca_dir, tmp_path / "out")
    result = run(
        "verify-svid", str(tmp_path / "out" / "svid.crt"), "--ca-dir", str(ca_dir), "--json"
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["valid"] is True
    assert document["spiffe_id"] == SID
    assert document["trust_domain"] == "example.org"
    assert document["not_before"] < document["not_after"]


def test_verify_svid_human_output(ca_dir: Path, tmp_path: Path) -> None:
    issue(ca_dir, tmp_path / "out")
    bundle = ca_dir / "bundle.jwks.json"
    result = run("verify-svid", str(tmp_path / "out" / "svid.crt"), "--bundle", str(bundle))
    assert result.exit_code == 0, result.output
    assert SID in result.stdout
    assert "not after" in result.stdout


def test_verify_svid_unknown_root_exits_1_with_reason(ca_dir: Path, tmp_path: Path) -> None:
    stranger = make_ca(live=True)
    svid = stranger.issue_x509_svid(SID)
    (tmp_path / "foreign.crt").write_bytes(svid.chain_pem())
    result = run("verify-svid", str(tmp_path / "foreign.crt"), "--ca-dir", str(ca_dir), "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "valid": False, "reason": "unknown_root",
        "detail": "the chain does not lead to a root of the bundle",
    }  # fmt: skip


def test_verify_svid_ca_certificate_exits_1(ca_dir: Path) -> None:
    result = run("verify-svid", str(ca_dir / "intermediate.crt"), "--ca-dir", str(ca_dir))
    assert result.exit_code == 1
    assert "ca_as_leaf" in result.stderr


def test_verify_svid_garbage_is_malformed(ca_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "x.crt").write_text("hello")
    result = run("verify-svid", str(tmp_path / "x.crt"), "--ca-dir", str(ca_dir), "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["reason"] == "malformed"


@pytest.mark.parametrize("missing", ["cert", "bundle"])
def test_verify_svid_missing_files_exit_2(ca_dir: Path, tmp_path: Path, missing: str) -> None:
    issue(ca_dir, tmp_path / "out")
    cert = tmp_path / "nope.crt" if missing == "cert" else tmp_path / "out" / "svid.crt"
    bundle = tmp_path / "nope.pem" if missing == "bundle" else ca_dir / "bundle.pem"
    result = run("verify-svid", str(cert), "--bundle", str(bundle))
    assert result.exit_code == 2


def test_issue_jwt_svid_prints_a_verifiable_token(ca_dir: Path) -> None:
    result = run("issue-jwt-svid", SID, "--audience", "billing", "--ca-dir", str(ca_dir))
    assert result.exit_code == 0, result.output
    bundle = TrustBundle.load(ca_dir / "bundle.jwks.json")
    assert str(verify_jwt_svid(result.stdout.strip(), bundle, audience="billing").spiffe_id) == SID


def test_parse_duration() -> None:
    assert parse_duration("1h30m").total_seconds() == 5400
    assert parse_duration("90s").total_seconds() == 90
    for bad in ("", "1x", "h", "1h 30m", "-1h"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)


def test_loaded_ca_matches_files(ca_dir: Path) -> None:
    ca = CertificateAuthority.load(ca_dir)
    assert ca.intermediates
    assert ca.trust_domain == "example.org"
