"""A sign-in app whose store is down answers 503 with a sentence, never its internals."""

from __future__ import annotations

import logging

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from verity.identity.unavailable import EXCEPTION_HANDLERS
from verity.store.errors import StoreUnavailableError

SECRET_URL = "postgresql://verity:hunter2@db.internal:5432/verity"


async def broken(request: Request) -> Response:
    raise StoreUnavailableError(SECRET_URL, "connection refused")


def client() -> TestClient:
    app = Starlette(routes=[Route("/logout", broken, methods=["POST"])],
                    exception_handlers=EXCEPTION_HANDLERS)  # fmt: skip
    return TestClient(app, raise_server_exceptions=False)


def test_a_browser_gets_a_503_page_with_retry_after_and_no_internals() -> None:
    response = client().post("/logout", headers={"Accept": "text/html"})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.headers["cache-control"] == "no-store"
    assert "temporarily unavailable" in response.text.lower()
    assert "Nothing was changed" in response.text
    for leak in ("hunter2", "db.internal", "connection refused", "postgresql"):
        assert leak not in response.text


def test_an_api_client_gets_an_oauth_style_json_error() -> None:
    response = client().post("/logout", headers={"Accept": "application/json"})
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    assert "hunter2" not in response.text


def test_the_operator_log_names_the_masked_store_and_the_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="verity.identity"):
        client().post("/logout")
    text = caplog.text
    assert "connection refused" in text
    assert "db.internal" in text
    assert "hunter2" not in text
