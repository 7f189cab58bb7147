"""The policy's ``authenticate`` outcome in the middleware (FastAPI, over a real socket):
with ``allow_anonymous`` the policy decides, and a caller who is not signed in gets 401
only when signing in could change the decision; a network deny stays a 403.

No ``from __future__ import annotations``: FastAPI must see the ``Annotated`` dependencies.
"""

from collections.abc import Iterator
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI

from tests.gateway.servers import ThreadServer
from verity.integrations.fastapi import Verity, require
from verity.model import Principal
from verity.policy import compile_policy, load_policy

from .apps_support import auth, token, verifier

POLICY = """
rules:
  - name: loopback-blocked
    resources: [{paths: ["/blocked"]}]
    deny: {ip: [127.0.0.0/8]}
  - name: finance-reports
    allow: {roles: [finance]}
"""


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    app = FastAPI()
    Verity(app, verifier=verifier(), engine=compile_policy(load_policy(POLICY)))
    anyone = require(allow_anonymous=True)

    @app.get("/{name}")
    def page(name: str, who: Annotated[Principal, Depends(anyone)]) -> dict[str, str]:
        return {"who": who.id}

    server = ThreadServer(app)
    with server:
        yield server.url


def _get(url: str, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=5) as client:
        return client.get(path, headers=headers or {})


def test_unauthenticated_request_denied_by_a_rule_is_401_authentication_required(
    url: str,
) -> None:
    response = _get(url, "/reports")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"] == "missing_token"


def test_unauthenticated_request_denied_for_its_network_is_403_not_401(url: str) -> None:
    response = _get(url, "/blocked")
    assert response.status_code == 403
    assert response.json()["error"] == "access_denied"
    assert "www-authenticate" not in response.headers


def test_signed_in_request_denied_by_a_rule_is_403_with_the_rule_reason(url: str) -> None:
    response = _get(url, "/reports", auth(token("bob", roles=("sales",))))
    assert response.status_code == 403
    assert response.json()["reason"] == (
        "This is open to people with the role finance (you have: sales)."
    )
    assert _get(url, "/reports", auth(token("fin", roles=("finance",)))).status_code == 200
