"""``verity serve``: configuration loading, --check, and the uvicorn settings."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from verity.cli.serve import app, load_serve_config, uvicorn_options
from verity.gateway.assertion import load_signing_key
from verity.identity.dev import generate_private_key, write_private_key

from .conftest import POLICY

runner = CliRunner()


def write_config(tmp_path: Path, extra: str = "") -> Path:
    (tmp_path / "policy.yaml").write_text(POLICY)
    write_private_key(tmp_path / "assertion.pem", generate_private_key("ES256"))
    config = tmp_path / "verity.yaml"
    config.write_text(
        "server: {port: 9999, trusted_proxies: [127.0.0.1/32], trusted_hops: 1}\n"
        "policy: {path: policy.yaml, reload_seconds: 0}\n"
        "identity:\n  issuers:\n    - {issuer: 'https://idp.test', audiences: [verity],\n"
        "       algorithms: [ES256], jwks_uri: 'https://idp.test/jwks'}\n"
        "gateway:\n  public_url: https://gw.test\n  assertion: {signing_key: assertion.pem}\n"
        "  routes:\n    - {name: app, host: app.test, upstream: 'http://127.0.0.1:9000'}\n" + extra
    )
    return config


def test_check_validates_and_prints_routes(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--config", str(write_config(tmp_path)), "--check"])
    assert result.exit_code == 0, result.output
    assert "app: app.test/ -> http://127.0.0.1:9000" in result.output


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    config = load_serve_config(write_config(tmp_path))
    assert config.policy.path == tmp_path / "policy.yaml"
    key = config.gateway.assertion.signing_key
    assert key == tmp_path / "assertion.pem"
    load_signing_key(key)


def test_bad_config_names_the_key_path(tmp_path: Path) -> None:
    path = write_config(tmp_path, "  max_header_count: 1\n")
    result = runner.invoke(app, ["--config", str(path), "--check"])
    assert result.exit_code == 1
    assert "gateway.max_header_count" in result.output


def test_wrong_key_type_is_a_clean_error(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    (tmp_path / "assertion.pem").unlink()
    write_private_key(tmp_path / "assertion.pem", generate_private_key("ES384"))
    result = runner.invoke(app, ["--config", str(path), "--check"])
    assert result.exit_code == 1
    assert "P-256" in result.output
    assert "Traceback" not in result.output


def test_missing_config_is_a_clean_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--config", str(tmp_path / "nope.yaml"), "--check"])
    assert result.exit_code == 1
    assert "cannot read file" in result.output


def test_uvicorn_does_not_rewrite_client_addresses(tmp_path: Path) -> None:
    options = uvicorn_options(load_serve_config(write_config(tmp_path)), access_log=False)
    assert options["proxy_headers"] is False
    assert options["port"] == 9999
    assert options["timeout_graceful_shutdown"] > 0
