"""The gateway: section: defaults, validation, key-path errors."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from verity.gateway import GatewayConfig
from verity.request_io import problems_of


def problems(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        GatewayConfig.model_validate(data)
    return {p.path: p.message for p in problems_of(caught.value)}


def test_defaults() -> None:
    config = GatewayConfig()
    assert config.routes == ()
    assert config.assertion.ttl_seconds == 60
    assert config.forward_auth.require_trusted_caller is True
    assert config.decision_cache.ttl_seconds == 1.0
    assert config.decision_cache.max_entries == 100_000
    assert config.workers == 1  # one process, no supervisor


def route(**fields: Any) -> dict[str, Any]:
    return {"name": "app", "host": "app.test", "upstream": "http://127.0.0.1:9000", **fields}


def test_a_route_is_normalised() -> None:
    config = GatewayConfig.model_validate({"routes": [route(host="App.Test.")]})
    assert config.routes[0].host == "app.test"
    assert config.routes[0].assertion_audience == "app"


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"routes": [route(host="http://x")]}, "routes[0].host"),
        ({"routes": [route(upstream="ftp://x")]}, "routes[0].upstream"),
        ({"routes": [route(upstream="http://u:p@x")]}, "routes[0].upstream"),
        ({"routes": [route(path_prefix="api")]}, "routes[0].path_prefix"),
        ({"routes": [route(max_body_bytes=-1)]}, "routes[0].max_body_bytes"),
        ({"routes": [route(), route()]}, "routes"),
        ({"routes": [route(tiemout=1)]}, "routes[0].tiemout"),
        ({"assertion": {"ttl_seconds": 1}}, "assertion.ttl_seconds"),
        ({"forward_auth": {"path": "/x/"}}, "forward_auth.path"),
        ({"decision_cache": {"ttl_seconds": 1.5}}, "decision_cache.ttl_seconds"),
        ({"decision_cache": {"ttl_seconds": -1}}, "decision_cache.ttl_seconds"),
        ({"decision_cache": {"max_entries": 0}}, "decision_cache.max_entries"),
        ({"public_url": "gateway"}, "public_url"),
        ({"realm": 'a"b'}, "realm"),
        ({"workers": 0}, "workers"),
        ({"workers": 65}, "workers"),
        ({"workers": "many"}, "workers"),
    ],
)
def test_every_error_names_its_key_path(data: dict[str, Any], path: str) -> None:
    found = problems(data)
    assert path in found, found


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (
            route(name="payroll", host="pay.test"),
            route(name="x", host="x.test", audience="payroll"),
        ),
        (
            route(name="pay", host="pay.test", audience="payroll"),
            route(name="x", host="x.test", audience="payroll"),
        ),
    ],
)
def test_a_route_cannot_share_another_routes_assertion_audience(
    first: dict[str, Any], second: dict[str, Any]
) -> None:
    """An assertion minted for one route would otherwise be accepted by the other's app."""
    message = problems({"routes": [first, second]})["routes"]
    assert repr(first["name"]) in message, message
    assert "'x'" in message, message
    assert "'payroll'" in message, message


def test_workers_up_to_the_cap() -> None:
    assert GatewayConfig.model_validate({"workers": 64}).workers == 64
