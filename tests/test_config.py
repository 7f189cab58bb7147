"""verity.yaml loading: defaults, key-path errors, relative paths, masked secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from verity.config import dump_config, load_config, mask_url, parse_config
from verity.errors import ConfigError


def test_defaults_are_safe_and_local() -> None:
    config = parse_config({})
    assert config.server.host == "127.0.0.1"
    assert config.server.trusted_proxies == []
    assert config.store.url.startswith("sqlite:///")


@pytest.mark.parametrize(
    ("data", "path", "fragment"),
    [
        ({"server": {"port": 70000}}, "server.port", "less than or equal"),
        ({"server": {"prot": 1}}, "server.prot", "Extra inputs"),
        ({"serverr": {}}, "serverr", "Extra inputs"),
        ({"server": {"trusted_proxies": ["10.0.0.1/8"]}}, "server.trusted_proxies", "host bits"),
        ({"store": {"url": "mysql://x"}}, "store.url", "sqlite:///PATH"),
        ({"store": {"redis_url": "http://x"}}, "store.redis_url", "redis://"),
    ],
)
def test_every_error_names_its_key_path(data: dict[str, object], path: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, source="verity.yaml")
    found = {p.path: p.message for p in caught.value.problems}
    assert path in found, found
    assert fragment in found[path]
    assert "verity.yaml" in str(caught.value)


def test_load_resolves_policy_path_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "verity.yaml").write_text(
        "policy: {path: policies/main.yaml}\nserver: {port: 9000}\n"
    )
    config = load_config(tmp_path / "verity.yaml")
    assert config.policy.path == tmp_path / "policies" / "main.yaml"
    assert config.server.port == 9000


def test_relative_sqlite_store_and_audit_urls_are_relative_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VERITY_STORE_URL", raising=False)
    (tmp_path / "verity.yaml").write_text(
        "store: {url: 'sqlite:///state/verity.db'}\naudit: {url: 'sqlite:///audit.db'}\n"
    )
    monkeypatch.chdir("/")  # any working directory: the same files
    config = load_config(tmp_path / "verity.yaml")
    assert config.store.url == f"sqlite:///{tmp_path}/state/verity.db"
    assert config.audit.url == f"sqlite:///{tmp_path}/audit.db"


def test_absolute_and_server_store_urls_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VERITY_STORE_URL", raising=False)
    (tmp_path / "verity.yaml").write_text(
        "store: {url: 'sqlite:////var/lib/verity.db'}\n"
        "audit: {url: 'postgresql://verity@db/verity'}\n"
    )
    config = load_config(tmp_path / "verity.yaml")
    assert config.store.url == "sqlite:////var/lib/verity.db"
    assert config.audit.url == "postgresql://verity@db/verity"


def test_a_store_url_from_the_environment_stays_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VERITY_STORE_URL", "sqlite:///here.db")
    (tmp_path / "verity.yaml").write_text("server: {port: 9000}\n")
    assert load_config(tmp_path / "verity.yaml").store.url == "sqlite:///here.db"


def test_env_var_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "other.yaml").write_text("server: {port: 9100}\n")
    monkeypatch.setenv("VERITY_CONFIG", str(tmp_path / "other.yaml"))
    assert load_config().server.port == 9100


def test_without_a_file_defaults_apply(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VERITY_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    assert load_config().server.port == 8080


def test_yaml_errors_are_config_errors(tmp_path: Path) -> None:
    (tmp_path / "v.yaml").write_text("server: {port: 1}\nserver: {port: 2}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "v.yaml")
    assert "duplicate key 'server'" in str(caught.value)


def test_secrets_never_appear_in_dumps_or_reprs() -> None:
    config = parse_config(
        {
            "store": {
                "url": "postgresql://app:s3cret@db:5432/verity",
                "redis_url": "redis://:hunter2@cache:6379/0",
            }
        }
    )
    dumped = dump_config(config)
    assert dumped["store"]["url"] == "postgresql://app:***@db:5432/verity"
    assert "hunter2" not in str(dumped)
    assert "s3cret" not in repr(config)
    assert "hunter2" not in repr(config.store)
    assert config.store.url.endswith("s3cret@db:5432/verity")  # the real value stays usable


def test_mask_url_leaves_urls_without_password_alone() -> None:
    assert mask_url("sqlite:///verity.db") == "sqlite:///verity.db"
    assert mask_url("postgresql://app@db/verity") == "postgresql://app@db/verity"


def test_issuer_jwks_file_is_resolved_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "verity.yaml").write_text(
        "identity:\n  issuers:\n    - issuer: https://idp.example\n      audiences: [api]\n"
        "      algorithms: [ES256]\n      jwks_file: keys/jwks.json\n"
    )
    config = load_config(tmp_path / "verity.yaml")
    assert config.identity.issuers[0].jwks_file == tmp_path / "keys" / "jwks.json"


def test_route_companion_key_file_is_resolved_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "verity.yaml").write_text(
        "gateway:\n  routes:\n    - {name: app, host: app.test, upstream: 'http://u.test',\n"
        "       assertion_companion_key_file: keys/app.key}\n"
        "    - {name: other, host: other.test, upstream: 'http://u.test'}\n"
    )
    config = load_config(tmp_path / "verity.yaml")
    app, other = config.gateway.routes
    assert app.assertion_companion_key_file == tmp_path / "keys" / "app.key"
    assert other.assertion_companion_key_file is None


def test_identity_errors_name_their_key_path() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {"identity": {"issuers": [{"issuer": "https://idp.example", "algorithms": ["none"]}]}}
        )
    assert any(p.path.startswith("identity.issuers[0]") for p in caught.value.problems)


def test_audit_section_paths_and_secrets(tmp_path: Path) -> None:
    (tmp_path / "verity.yaml").write_text(
        "audit: {url: 'postgresql://app:pw@db/verity', signing_key: keys/audit.key}\n"
    )
    config = load_config(tmp_path / "verity.yaml")
    assert config.audit.signing_key == tmp_path / "keys" / "audit.key"
    assert "pw@" not in repr(config.audit)
    assert dump_config(config)["audit"]["url"] == "postgresql://app:***@db/verity"
    with pytest.raises(ConfigError):
        parse_config({"audit": {"url": "mysql://x"}})


def test_audit_allow_commit_window_defaults_to_50_ms_and_is_bounded() -> None:
    assert parse_config({}).audit.allow_commit_window_seconds == 0.05
    assert (
        parse_config(
            {"audit": {"allow_commit_window_seconds": 0}}
        ).audit.allow_commit_window_seconds
        == 0
    )
    for bad in (-0.01, 1.5, "soon"):
        with pytest.raises(ConfigError, match="allow_commit_window_seconds"):
            parse_config({"audit": {"allow_commit_window_seconds": bad}})


def test_workload_ca_paths_are_resolved_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "verity.yaml").write_text(
        "identity: {workload: {ca_dir: ca, bundle_path: ca/bundle.pem}}\n"
    )
    config = load_config(tmp_path / "verity.yaml")
    assert config.identity.workload.ca_dir == tmp_path / "ca"
    assert config.identity.workload.bundle_path == tmp_path / "ca" / "bundle.pem"


def test_secret_urls_can_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "verity.yaml").write_text("store: {url: 'sqlite:///x.db'}\n")
    monkeypatch.setenv("VERITY_STORE_URL", "postgresql://app:pw@db/verity")
    monkeypatch.setenv("VERITY_REDIS_URL", "redis://cache:6379/0")
    config = load_config(tmp_path / "verity.yaml")
    assert config.store.url == "postgresql://app:pw@db/verity"
    assert config.store.redis_url == "redis://cache:6379/0"
    monkeypatch.setenv("VERITY_STORE_URL", "mysql://nope")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "verity.yaml")
    assert "store.url" in {p.path for p in caught.value.problems}


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://app:s3cret@db:5432/verity", "postgresql://app:***@db:5432/verity"),
        ("postgresql://app@db/verity?password=s3cret&options=-csearch_path%3Dv",
         "postgresql://app@db/verity?password=***&options=-csearch_path%3Dv"),
        ("postgresql://app@db/verity?sslpassword=k3y", "postgresql://app@db/verity?sslpassword=***"),
        ("redis://db:6379/0?password=s3cret", "redis://db:6379/0?password=***"),
        ("redis://:s3cret@db:6379/0", "redis://:***@db:6379/0"),
        ("postgresql://app:s3cret@[::1]:5432/verity", "postgresql://app:***@[::1]:5432/verity"),
    ],
)  # fmt: skip
def test_mask_url_hides_every_password(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert "s3cret" not in mask_url(url)
    assert "k3y" not in mask_url(url)


def test_the_demo_config_is_found_only_when_there_is_no_verity_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from verity.config import default_config_path

    monkeypatch.chdir(tmp_path)
    assert default_config_path() is None
    (tmp_path / ".verity-demo").mkdir()
    (tmp_path / ".verity-demo" / "verity.yaml").write_text("server: {port: 8090}\n")
    assert default_config_path() == ".verity-demo/verity.yaml"
    monkeypatch.delenv("VERITY_CONFIG", raising=False)
    assert load_config().server.port == 8090
    (tmp_path / "verity.yaml").write_text("server: {port: 8070}\n")
    assert load_config().server.port == 8070  # an operator's own file always wins
