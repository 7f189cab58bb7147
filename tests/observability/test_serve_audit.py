"""``verity serve`` builds the audit log from ``audit:``, audits through a real socket, and
closes the log on SIGTERM with a final signed checkpoint."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway.conftest import POLICY, RecordingUpstream
from tests.gateway.servers import ThreadServer, free_port
from verity.audit import Query, generate_key, open_store, verify
from verity.cli.serve import audit_url
from verity.config import parse_config
from verity.identity.dev import generate_private_key, mint, public_jwk

ISSUER = "https://idp.test"


@pytest.mark.parametrize(
    ("section", "expected"),
    [({"store": {"url": "sqlite:///data/verity.db"}}, "sqlite:///data/verity-audit.db"),
     ({"store": {"url": "sqlite:////var/lib/verity/state"}},
      "sqlite:////var/lib/verity/state-audit.db"),
     ({"store": {"url": "postgresql://verity@db/verity"}}, "postgresql://verity@db/verity"),
     ({"audit": {"url": "sqlite:///elsewhere.db"}}, "sqlite:///elsewhere.db"),
     ({"store": {"url": "sqlite:///s.db"}, "audit": {"url": "sqlite:////abs/a.db"}},
      "sqlite:////abs/a.db")],
)  # fmt: skip
def test_audit_url_defaults_next_to_the_store(section: dict[str, object], expected: str) -> None:
    assert audit_url(parse_config(section)) == expected


def test_relative_audit_path_is_relative_to_the_config_folder() -> None:
    # not to the working directory: `verity serve` run from a repo must not drop a log there
    config = parse_config({})
    assert audit_url(config, base=Path("/etc/verity")) == "sqlite:////etc/verity/verity-audit.db"


@pytest.mark.parametrize("window", [0.0, 0.02])
def test_the_allow_commit_window_reaches_the_gateway(
    window: float, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from verity.cli.serve import build_from_config

    (tmp_path / "policy.yaml").write_text(POLICY)
    monkeypatch.chdir(tmp_path)
    config = parse_config(
        {"policy": {"path": "policy.yaml"}, "audit": {"allow_commit_window_seconds": window}}
    )
    observer = build_from_config(config).enforcer.observer
    assert observer is not None
    assert observer.allow_commit_window_seconds == window


class Served:
    def __init__(self, tmp_path: Path, upstream_url: str) -> None:
        self.key = generate_private_key("ES256")
        (tmp_path / "policy.yaml").write_text(POLICY)
        (tmp_path / "jwks.json").write_text(
            json.dumps({"keys": [public_jwk(self.key, "ES256", "k1")]})
        )
        self.public_key = generate_key(tmp_path / "audit.key")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = tmp_path / "verity-audit.db"
        config = tmp_path / "verity.yaml"
        config.write_text(
            f"server: {{port: {self.port}}}\n"
            "store: {url: 'sqlite:///verity.db'}\n"  # relative: to the config's folder
            "policy: {path: policy.yaml, reload_seconds: 0}\n"
            f"identity:\n  issuers:\n    - {{issuer: '{ISSUER}', audiences: [verity],\n"
            "       algorithms: [ES256], jwks_file: jwks.json}\n"
            "gateway:\n  public_url: https://gw.test\n"
            f"  routes:\n    - {{name: app, host: app.test, upstream: '{upstream_url}'}}\n"
            "audit: {signing_key: audit.key}\n"
        )
        self.stderr = tmp_path / "stderr.log"
        (tmp_path / "elsewhere").mkdir()
        verity = Path(sys.executable).parent / "verity"
        self.proc = subprocess.Popen(  # noqa: S603 - our own CLI
            [str(verity), "serve", "--config", str(config)],
            stdout=subprocess.DEVNULL, stderr=self.stderr.open("wb"), cwd=tmp_path / "elsewhere",
        )  # fmt: skip

    def token(self, subject: str, groups: list[str]) -> str:
        return mint(
            self.key, alg="ES256", kid="k1", issuer=ISSUER, audience="verity",
            subject=subject, claims={"groups": groups},
        )  # fmt: skip

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"verity serve exited: {self.stderr.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        pytest.fail("verity serve did not start in 20 s")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with ThreadServer(RecordingUpstream()) as upstream:
        server = Served(tmp_path, upstream.url)
        try:
            server.wait_ready()
            yield server
        finally:
            server.stop()


def test_serve_audits_every_decision_and_sigterm_writes_the_final_checkpoint(
    served: Served,
) -> None:
    good = served.token("alice", ["engineers"])
    with httpx.Client(base_url=served.url, headers={"Host": "app.test"}, timeout=10) as client:
        statuses = [
            client.get("/x", headers={"Authorization": f"Bearer {good}"}).status_code,
            client.get(
                "/x", headers={"Authorization": f"Bearer {served.token('bob', [])}"}
            ).status_code,
            client.get("/x").status_code,
            client.get("/x", headers={"Authorization": f"Bearer {good}x"}).status_code,
        ]
        metrics = client.get("/metrics")
    assert statuses == [200, 403, 401, 401]
    assert metrics.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(metrics.text)}
    allowed = [
        s
        for s in families["verity_decisions"].samples
        if s.name == "verity_decisions_total" and s.labels["effect"] == "allow"
    ]
    assert sum(s.value for s in allowed) == 1
    assert served.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
    store = open_store(f"sqlite:///{served.db}", create=False)
    try:
        report = verify(store, served.public_key)
        events = [r.event() for r in store.query(Query())]
    finally:
        store.close()
    assert report.ok
    assert report.records == 4
    assert report.signatures_checked
    assert report.unsigned_tail == 0  # the final checkpoint on shutdown covers every event
    assert [e["class_uid"] for e in events] == [6003, 6003, 6003, 3002]
    log = served.stderr.read_text()
    assert good not in log
    assert good.split(".")[1] not in log
    for line in filter(None, log.splitlines()):
        assert json.loads(line)["timestamp"]
    assert "authn.token_rejected" in log
    assert not list((served.db.parent / "elsewhere").iterdir())  # nothing in the cwd
