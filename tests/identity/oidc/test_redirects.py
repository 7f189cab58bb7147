"""Open redirect: one regression test per way a browser can be sent elsewhere."""

from __future__ import annotations

import pytest

from verity.identity.oidc import safe_return_url

from .conftest import RP

ALLOWED = ("app.example.com", "*.corp.example")


def check(untrusted: str) -> str:
    return safe_return_url(untrusted, allowed_hosts=ALLOWED, default="/")


@pytest.mark.parametrize(
    "attack",
    [
        "//evil.com",
        "//evil.com/path",
        "https://evil.com",
        "http://evil.com/app.example.com",
        "/\\evil.com",
        "\\\\evil.com",
        "/%2Fevil.com",
        "%2F%2Fevil.com",
        "/%5Cevil.com",
        "/%252F%252Fevil.com",
        "https%3A%2F%2Fevil.com",
        "/\t/evil.com",
        "/%09/evil.com",
        "/\n/evil.com",
        "https://app.example.com@evil.com",
        "https://evil.com\\@app.example.com",
        "https://evil.com#@app.example.com",
        "https://app.example.com.evil.com",
        "https://corp.example.evil.com",
        "https://evilcorp.example",
        "javascript:alert(1)",
        "data:text/html,hi",
        "ftp://app.example.com/x",
        "///evil.com",
        " //evil.com",
        "https://app.example.com:99999/",
    ],
)
def test_open_redirect_attempt_is_refused(attack: str) -> None:
    assert check(attack) == "/"


@pytest.mark.parametrize(
    "fine",
    [
        "/",
        "/app?x=1&y=%2F",
        "/docs/a%20b",
        "https://app.example.com/x?y=1",
        "https://APP.example.com/",
        "https://a.corp.example/",
        "https://deep.a.corp.example:8443/z",
    ],
)
def test_relative_paths_and_configured_hosts_are_kept(fine: str) -> None:
    assert check(fine) == fine


def test_overlong_return_url_is_refused() -> None:
    assert check("/" + "a" * 5000) == "/"


@pytest.mark.parametrize(
    "attack", ["//evil.com", "https://evil.com", "/\\evil.com", "/%2F%2Fevil.com"]
)
def test_open_redirect_after_login_goes_to_default(rp: RP, attack: str) -> None:
    done = rp.login(rd=attack)
    assert done.status_code == 302
    assert done.headers["location"] == "/"
    assert rp.principal() is not None
