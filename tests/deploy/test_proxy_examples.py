"""The nginx and Traefik examples clear every identity header and keep each forward-auth
dialect on its own endpoint and headers (issue 10, "Enforcement integrity")."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from verity.gateway import ForwardAuthConfig
from verity.gateway.headers import UPSTREAM_CLEARED_HEADERS, is_identity_header

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
VERITY_SETS = {"x-verity-user", "x-verity-email", "x-verity-groups", "x-verity-assertion",
               "x-verity-decision-id", "x-verity-request"}  # fmt: skip


def nginx_location(path: Path, location: str) -> str:
    """The body of ``location <location> {`` (no nested blocks in these examples)."""
    text = path.read_text()
    start = text.index(f"location {location} {{")
    return text[start : text.index("}", start)]


def set_headers(block: str) -> dict[str, str]:
    """``proxy_set_header`` name (lower-case) -> value in one nginx block."""
    found = re.findall(r"^\s*proxy_set_header\s+(\S+)\s+(.+?);", block, re.MULTILINE)
    return {name.lower(): value for name, value in found}


def traefik() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "traefik/dynamic.yml").read_text())
    return data


def test_the_cleared_set_covers_every_identity_name_the_proxy_strips() -> None:
    assert all(is_identity_header(name) for name in UPSTREAM_CLEARED_HEADERS - {"forwarded"})
    for name in ("x-remote-user", "x-user", "x-webauth-user", "x-forwarded-access-token",
                 "x-verity-roles", "forwarded"):  # fmt: skip
        assert name in UPSTREAM_CLEARED_HEADERS


@pytest.mark.parametrize("example", ["nginx/verity-forward-auth.conf", "compose/nginx.conf"])
def test_nginx_examples_clear_every_identity_header_an_upstream_could_read(example: str) -> None:
    headers = set_headers(nginx_location(DEPLOY / example, "/"))
    missing = sorted(UPSTREAM_CLEARED_HEADERS - headers.keys())
    assert missing == []
    for name in UPSTREAM_CLEARED_HEADERS:  # cleared, or set from Verity's own answer
        assert headers[name] == '""' or (name in VERITY_SETS and headers[name].startswith("$"))


def test_nginx_forward_auth_example_sends_the_raw_target_to_the_nginx_endpoint() -> None:
    conf = DEPLOY / "nginx/verity-forward-auth.conf"
    for location in ("= /_verity/auth", "@verity_refused"):
        headers = set_headers(nginx_location(conf, location))
        assert headers["x-original-uri"] == "$request_uri"  # what proxy_pass forwards
        assert headers["x-original-method"] == "$request_method"
        for other in ("x-forwarded-uri", "x-forwarded-method", "x-original-url"):
            assert headers[other] == '""', other  # the other dialect's headers: removed
    assert f"proxy_pass http://verity{ForwardAuthConfig().path};" in conf.read_text()
    assert "error_page 401 403 500 = @verity_refused;" in conf.read_text()


def test_traefik_example_clears_every_identity_header_an_upstream_could_read() -> None:
    middlewares = traefik()["http"]["middlewares"]
    cleared = {n.lower() for n, v in
               middlewares["verity-strip-identity"]["headers"]["customRequestHeaders"].items()
               if v == ""}  # fmt: skip
    replaced = {n.lower() for n in middlewares["verity-auth"]["forwardAuth"]
                ["authResponseHeaders"]}  # fmt: skip
    assert sorted(UPSTREAM_CLEARED_HEADERS - cleared - replaced) == []
    assert replaced == VERITY_SETS
    router = traefik()["http"]["routers"]["app"]
    assert router["middlewares"] == ["verity-strip-identity", "verity-auth",
                                     "verity-strip-credentials"]  # fmt: skip


def test_traefik_example_binds_the_check_to_traefiks_own_headers() -> None:
    middlewares = traefik()["http"]["middlewares"]
    auth = middlewares["verity-auth"]["forwardAuth"]
    assert auth["address"].endswith(ForwardAuthConfig().traefik_path)
    assert auth["trustForwardHeader"] is False
    copied = {n.lower() for n in auth["authRequestHeaders"]}  # only these reach Verity
    assert not copied & {"x-original-uri", "x-original-method", "x-original-url"}
    assert {"x-http-method-override", "x-method-override", "x-http-method"} <= copied
    stripped = middlewares["verity-strip-identity"]["headers"]["customRequestHeaders"]
    assert {"X-Original-URI", "X-Original-Method", "X-Original-URL"} <= stripped.keys()
