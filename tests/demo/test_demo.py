"""``verity demo`` (``make run``) end to end: a real process on 127.0.0.1, browser sign-in
through the embedded IdP, allow and deny with reasons, and an intact audit log."""

from __future__ import annotations

import html
import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from verity.audit import open_store, verify
from verity.audit.keys import load_public_key


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    folder = tmp_path_factory.mktemp("demo")
    port, app_port = free_port(), free_port()
    command = [sys.executable, "-m", "verity.cli", "demo", "--dir", str(folder),
               "--port", str(port), "--app-port", str(app_port)]  # fmt: skip
    log = (folder / "demo.log").open("w")  # a file, not a pipe nobody reads
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail(f"verity demo did not start: {(folder / 'demo.log').read_text()[-2000:]}")
    try:
        yield base, folder
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def sign_in(base: str, folder: Path, email: str) -> httpx.Client:
    password = json.loads((folder / "demo-secrets.json").read_text())["passwords"][email]
    client = httpx.Client(base_url=base, headers={"Accept": "text/html"}, timeout=10)
    page = client.get("/", follow_redirects=True)  # -> /verity/login -> the IdP's form
    action = html.unescape(re.search(r'<form[^>]*action="([^"]+)"', page.text).group(1))  # type: ignore[union-attr]
    fields = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page.text))
    fields.update({"email": email, "password": password})
    done = client.post(action, data=fields, follow_redirects=True)
    assert done.status_code == 200, done.text[:500]
    assert f"Hello, {email}" in done.text
    return client


def test_an_unauthenticated_browser_is_sent_to_sign_in_and_an_api_gets_401(
    demo: tuple[str, Path],
) -> None:
    base, _ = demo
    browser = httpx.get(f"{base}/reports", headers={"Accept": "text/html"})
    assert browser.status_code == 302
    assert browser.headers["location"].startswith("/verity/login?rd=")
    api = httpx.get(f"{base}/reports")
    assert api.status_code == 401
    assert api.json()["error"] == "unauthenticated"


def test_roles_decide_and_denies_say_why(demo: tuple[str, Path]) -> None:
    base, folder = demo
    engineer = sign_in(base, folder, "engineer@demo.test")
    assert engineer.get("/reports").status_code == 200
    denied = engineer.get("/admin/settings")
    assert denied.status_code == 403
    assert "Decision id" in denied.text
    admin = sign_in(base, folder, "admin@demo.test")
    assert admin.get("/admin/settings").status_code == 200
    contractor = sign_in(base, folder, "contractor@demo.test")
    docs = contractor.get("/docs/handbook")
    assert docs.status_code == 403
    assert "multi-factor authentication is required" in docs.text


def test_spoofed_identity_headers_and_session_cookies_never_reach_the_app(
    demo: tuple[str, Path],
) -> None:
    base, folder = demo
    engineer = sign_in(base, folder, "engineer@demo.test")
    page = engineer.get("/", headers={"X-Verity-User": "admin@demo.test"})
    assert "Hello, engineer@demo.test" in page.text


def test_every_decision_is_in_an_intact_audit_log(demo: tuple[str, Path]) -> None:
    base, folder = demo
    httpx.get(f"{base}/reports")  # at least one decision
    time.sleep(0.5)
    store = open_store(f"sqlite:///{folder / 'audit.db'}", create=False)
    try:
        report = verify(store, load_public_key(folder / "audit.key.pub"))
    finally:
        store.close()
    assert report.ok, report
    assert report.records > 0
