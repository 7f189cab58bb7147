"""``verity db migrate|status`` (the Typer sub-app, invoked directly)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

from typer.testing import CliRunner, Result

from verity.cli.db import app

from .conftest import dead_url


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def test_migrate_then_status_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/v.db"
    first = invoke("migrate", "--url", url, "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout) == {
        "url": url,
        "backend": "sqlite",
        "applied": [1],
        "version": 1,
    }
    again = invoke("migrate", "--url", url)
    assert again.exit_code == 0
    assert "already up to date; schema version 1" in again.stdout
    status = invoke("status", "--url", url, "--json")
    body = json.loads(status.stdout)
    assert status.exit_code == 0
    assert body["ok"]
    assert body["pending"] == []
    assert [m["version"] for m in body["applied"]] == [1]
    # migrate also brought the embedded IdP's tables up to date; status reports them
    assert body["idp"]["ok"]
    assert body["idp"]["pending"] == []
    assert [m["version"] for m in body["idp"]["applied"]] == [1, 2]
    human = invoke("status", "--url", url)
    assert "applied    1  initial" in human.stdout
    assert "(sqlite, embedded IdP tables)" in human.stdout
    assert "up to date" in human.stdout


def test_status_on_postgres_lists_pending_then_applied(postgres_dsn: str, pg_schema: str) -> None:
    url = f"{postgres_dsn}?options={quote(f'-csearch_path={pg_schema}')}"
    pending = invoke("status", "--url", url, "--json")
    assert pending.exit_code == 0, pending.output
    assert json.loads(pending.stdout)["pending"] == [{"version": 1, "name": "initial"}]
    assert len(json.loads(pending.stdout)["idp"]["pending"]) == 2
    assert invoke("migrate", "--url", url).exit_code == 0
    after = json.loads(invoke("status", "--url", url, "--json").stdout)
    assert after["pending"] == []
    assert after["idp"]["pending"] == []


def test_status_exits_1_when_the_idp_tables_drifted(tmp_path: Path) -> None:
    import sqlite3

    url = f"sqlite:///{tmp_path}/v.db"
    invoke("migrate", "--url", url)
    with sqlite3.connect(tmp_path / "v.db") as conn:
        conn.execute("update verity_idp_schema_migrations set checksum = 'edited'")
    result = invoke("status", "--url", url, "--json")
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body["ok"]  # the store's own track is intact
    assert not body["idp"]["ok"]


def test_status_exits_1_on_drift(tmp_path: Path) -> None:
    import sqlite3

    url = f"sqlite:///{tmp_path}/v.db"
    invoke("migrate", "--url", url)
    with sqlite3.connect(tmp_path / "v.db") as conn:
        conn.execute("update verity_schema_migrations set checksum = 'edited'")
    result = invoke("status", "--url", url)
    assert result.exit_code == 1
    assert "was changed after it ran" in result.stdout


def test_errors_exit_1_without_printing_the_password() -> None:
    for command in ("migrate", "status"):
        for flags in ((), ("--json",)):
            result = invoke(command, "--url", dead_url("postgresql"), *flags)
            assert result.exit_code == 1
            assert "s3cret-pw" not in result.output
            assert "Traceback" not in result.output


def test_a_missing_sqlite_file_is_an_error_for_status(tmp_path: Path) -> None:
    result = invoke("status", "--url", f"sqlite:///{tmp_path}/absent.db", "--json")
    assert result.exit_code == 1
    assert "does not exist" in json.loads(result.stderr)["error"]["message"]
    assert not (tmp_path / "absent.db").exists()


def test_a_malformed_url_is_an_error(tmp_path: Path) -> None:
    result = invoke("migrate", "--url", "sqlite://host/x.db")
    assert result.exit_code == 1
    assert "sqlite:///PATH" in result.stderr


def test_the_url_defaults_to_the_configuration(tmp_path: Path) -> None:
    config = tmp_path / "verity.yaml"
    config.write_text(f"store: {{url: 'sqlite:///{tmp_path}/from-config.db'}}\n")
    result = CliRunner().invoke(app, ["migrate"], env={"VERITY_CONFIG": str(config)})
    assert result.exit_code == 0, result.output
    assert (tmp_path / "from-config.db").exists()
