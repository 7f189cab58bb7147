"""``verity token mint|verify``: exit codes 0/1/2, --json shapes, --dev guard, --help."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from verity.cli.token import app

from .idp_server import IdP

ISS = "https://idp.example"
AUD = "api"


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=stdin)


@pytest.fixture
def minted(tmp_path: Path) -> tuple[str, Path]:
    key, jwks = tmp_path / "dev.pem", tmp_path / "jwks.json"
    result = run("mint", "--dev", "--generate-key", "--key", str(key), "--issuer", ISS,
                 "--audience", AUD, "--subject", "alice", "--claim", "groups=[\"eng\"]",
                 "--claim", "team=blue", "--jwks-out", str(jwks))  # fmt: skip
    assert result.exit_code == 0, result.output
    return result.stdout.strip(), jwks


def test_mint_refuses_without_dev(tmp_path: Path) -> None:
    result = run("mint", "--key", str(tmp_path / "k.pem"), "--generate-key",
                 "--issuer", ISS, "--audience", AUD)  # fmt: skip
    assert result.exit_code == 2
    assert "--dev" in result.stderr
    assert not (tmp_path / "k.pem").exists()


def test_mint_generates_a_private_key_file(minted: tuple[str, Path], tmp_path: Path) -> None:
    key = tmp_path / "dev.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    jwks = json.loads(minted[1].read_text())
    assert jwks["keys"][0]["alg"] == "ES256"
    assert "d" not in jwks["keys"][0]


def test_verify_valid_token(minted: tuple[str, Path]) -> None:
    token, jwks = minted
    result = run("verify", token, "--issuer", ISS, "--audience", AUD, "--jwks", str(jwks), "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["valid"] is True
    assert document["subject"] == "alice"
    assert document["claims"]["groups"] == ["eng"]
    assert document["claims"]["team"] == "blue"
    assert document["header"]["alg"] == "ES256"
    human = run("verify", token, "--issuer", ISS, "--audience", AUD, "--jwks", str(jwks))
    assert human.exit_code == 0
    assert "valid" in human.stdout
    assert "alice" in human.stdout


def test_verify_reads_the_token_from_stdin(minted: tuple[str, Path]) -> None:
    token, jwks = minted
    result = run("verify", "-", "--issuer", ISS, "--audience", AUD, "--jwks", str(jwks),
                 stdin=token + "\n")  # fmt: skip
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--audience", "other"], "bad_audience"),
        (["--audience", AUD, "--typ", "at+jwt"], "wrong_typ"),
        (["--audience", AUD, "--require", "jti"], "missing_claim"),
    ],
)
def test_verify_prints_the_exact_rejection(
    minted: tuple[str, Path], args: list[str], reason: str
) -> None:
    token, jwks = minted
    result = run("verify", token, "--issuer", ISS, "--jwks", str(jwks), "--json", *args)
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    assert document["valid"] is False
    assert document["reason"] == reason
    assert token not in result.output


def test_verify_disallowed_algorithm(minted: tuple[str, Path]) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from verity.identity.dev import public_jwk

    token, jwks = minted
    document = json.loads(jwks.read_text())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    document["keys"].append(public_jwk(rsa_key, "RS256", "rsa"))
    jwks.write_text(json.dumps(document))
    result = run("verify", token, "--issuer", ISS, "--audience", AUD, "--jwks", str(jwks),
                 "--alg", "RS256", "--json")  # fmt: skip
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)["reason"] == "disallowed_algorithm"


def test_verify_expired_token(tmp_path: Path) -> None:
    key, jwks = tmp_path / "k.pem", tmp_path / "jwks.json"
    result = run("mint", "--dev", "--generate-key", "--alg", "EdDSA", "--key", str(key),
                 "--issuer", ISS, "--audience", AUD, "--claim", "exp=1000", "--jwks-out", str(jwks))  # fmt: skip
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    verdict = run("verify", token, "--issuer", ISS, "--audience", AUD, "--jwks", str(jwks))
    assert verdict.exit_code == 1
    assert "rejected (expired)" in verdict.stdout


def test_verify_with_a_pem_public_key(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    from verity.identity.dev import load_private_key

    key = tmp_path / "k.pem"
    result = run("mint", "--dev", "--generate-key", "--alg", "RS256", "--key", str(key),
                 "--issuer", ISS, "--audience", AUD)  # fmt: skip
    public = tmp_path / "pub.pem"
    public.write_bytes(load_private_key(key).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip
    verdict = run("verify", result.stdout.strip(), "--issuer", ISS, "--audience", AUD,
                  "--jwks", str(public))  # fmt: skip
    assert verdict.exit_code == 0, verdict.output


@pytest.fixture
def idp() -> Iterator[IdP]:
    server = IdP()
    yield server
    server.stop()


def test_verify_against_a_jwks_url_and_discovery(tmp_path: Path, idp: IdP) -> None:
    key, jwks = tmp_path / "k.pem", tmp_path / "jwks.json"
    minted = run("mint", "--dev", "--generate-key", "--key", str(key), "--issuer", idp.issuer,
                 "--audience", AUD, "--jwks-out", str(jwks), "--json")  # fmt: skip
    token = json.loads(minted.stdout)["token"]
    idp.jwks = json.loads(jwks.read_text())
    by_url = run(
        "verify", token, "--issuer", idp.issuer, "--audience", AUD, "--jwks", f"{idp.issuer}/jwks"
    )
    assert by_url.exit_code == 0, by_url.output
    by_discovery = run("verify", token, "--issuer", idp.issuer, "--audience", AUD)
    assert by_discovery.exit_code == 0, by_discovery.output
    idp.stop()
    down = run("verify", token, "--issuer", idp.issuer, "--audience", AUD, "--json")
    assert down.exit_code == 1
    assert json.loads(down.stdout)["reason"] == "keys_unavailable"


@pytest.mark.parametrize(
    "args",
    [
        ["verify", "t", "--audience", AUD],  # no --issuer
        ["verify", "t", "--issuer", "http://idp.example", "--audience", AUD],  # not https
        ["verify", "t", "--issuer", ISS, "--audience", AUD, "--jwks", "/nonexistent.json"],
        ["verify", "t", "--issuer", ISS, "--audience", AUD, "--alg", "none"],
        ["mint", "--dev", "--key", "/nonexistent.pem", "--issuer", ISS, "--audience", AUD],
        ["mint", "--dev", "--key", "k", "--issuer", ISS, "--audience", AUD, "--ttl", "0"],
    ],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    assert run(*args).exit_code == 2


def test_bad_claim_syntax_is_a_usage_error(tmp_path: Path) -> None:
    result = run("mint", "--dev", "--generate-key", "--key", str(tmp_path / "k.pem"),
                 "--issuer", ISS, "--audience", AUD, "--claim", "novalue")  # fmt: skip
    assert result.exit_code == 2
    assert "NAME=VALUE" in result.stderr


@pytest.mark.parametrize("command", [[], ["mint"], ["verify"]])
def test_help_everywhere(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.exit_code == 0
    assert "Usage" in result.stdout
