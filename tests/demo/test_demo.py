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

from verity.audit import Query, open_store, verify
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
    assert "This needs a sign-in with a second factor (MFA)" in docs.text


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


def test_denied_people_are_told_what_would_change_the_answer(demo: tuple[str, Path]) -> None:
    base, folder = demo
    for email in ("contractor@demo.test", "engineer@demo.test"):
        person = sign_in(base, folder, email)
        page = person.get("/admin/settings").text
        assert "This is open to people with the role admin" in page, email
        assert "role engineer" not in page  # engineers are refused /admin too
        assert "/admin/**" not in page  # no engine words for the person
        api = person.get("/admin/settings", headers={"Accept": "application/json"}).json()
        assert api["reason"].startswith("This is open to people with the role admin")
        assert api["hint"] == "ask your administrator for the role admin if your work needs it"


def test_a_deny_page_says_who_links_home_and_sign_out_and_how_to_step_up(
    demo: tuple[str, Path],
) -> None:
    base, folder = demo
    page = sign_in(base, folder, "contractor@demo.test").get("/docs/handbook").text
    assert "Signed in as <strong>contractor@demo.test</strong>" in page
    assert '<a href="/">Home</a>' in page
    assert '<a href="/verity/logout">Sign out</a>' in page
    assert '<a href="/verity/login?rd=%2Fdocs%2Fhandbook">sign in again</a>' in page
    assert "verity users reset-mfa contractor@demo.test --enroll" in page  # no TOTP yet


def test_sign_in_form_names_the_app_and_sign_out_says_why(demo: tuple[str, Path]) -> None:
    base, folder = demo
    engineer = sign_in(base, folder, "engineer@demo.test")
    form = engineer.get("/verity/logout").text
    csrf = re.search(r"name='csrf' value='([^']+)'", form).group(1)  # type: ignore[union-attr]
    after = engineer.post(
        "/verity/logout", data={"csrf": csrf}, headers={"Origin": base}, follow_redirects=True
    )
    assert "You signed out. Sign in again to continue." in after.text
    assert "continue to <strong>the Verity demo app</strong>" in after.text
    assert "verity-gateway" not in after.text.split("<form")[0]  # not the client id


def test_a_session_that_no_longer_authenticates_lands_on_sign_in_with_a_notice(
    demo: tuple[str, Path],
) -> None:
    base, _ = demo
    stale = {"Cookie": "verity_session=revoked-or-expired", "Accept": "text/html"}
    response = httpx.get(f"{base}/reports", headers=stale, follow_redirects=True)
    assert "Your session has ended" in response.text


def test_favicon_is_not_an_audited_decision(demo: tuple[str, Path]) -> None:
    base, folder = demo
    assert httpx.get(f"{base}/favicon.ico").headers["content-type"] == "image/x-icon"
    time.sleep(0.3)
    store = open_store(f"sqlite:///{folder / 'audit.db'}", create=False)
    try:
        bodies = [record.body for record in store.query(Query())]
    finally:
        store.close()
    assert not any(b"/favicon.ico" in body for body in bodies)


def test_a_busy_port_says_so_and_suggests_port_before_printing_any_login(
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "verity.cli", "demo", "--dir", str(tmp_path / "d"),
                   "--port", str(port), "--app-port", str(free_port())]  # fmt: skip
        result = subprocess.run(  # noqa: S603
            command, check=False, capture_output=True, text=True, timeout=120
        )
    assert result.returncode == 1
    assert f"127.0.0.1:{port}" in result.stderr
    assert "--port" in result.stderr
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert "@demo.test" not in output  # the logins are not printed for a demo that cannot run
