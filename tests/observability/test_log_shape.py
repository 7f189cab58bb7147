"""The JSON shape of security events and of standard-library records."""

from __future__ import annotations

import io
import ipaddress
import json
import logging
from datetime import datetime
from typing import Any

from verity.observability import configure_logging, log_security_event


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_security_event_shape(output: io.StringIO) -> None:
    log_security_event(
        "access.denied", client_ip=ipaddress.ip_address("2001:db8::7"),
        principal_id="alice", decision_id="d42", route="app", reasons=["no_match"],
    )  # fmt: skip
    (line,) = lines(output)
    assert list(line)[:4] == ["timestamp", "level", "event", "logger"]
    assert line["event"] == "access.denied"
    assert line["level"] == "info"
    assert line["logger"] == "verity.security"
    assert line["security"] is True
    assert line["client_ip"] == "2001:db8::7"
    assert (line["principal_id"], line["decision_id"]) == ("alice", "d42")
    assert line["route"] == "app"
    assert line["reasons"] == ["no_match"]
    stamp = datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
    assert stamp.utcoffset() is not None
    assert stamp.utcoffset().total_seconds() == 0


def test_security_event_always_has_the_correlation_keys(output: io.StringIO) -> None:
    log_security_event("authn.token_rejected", level="warning", reason="expired")
    (line,) = lines(output)
    assert line["level"] == "warning"
    assert {"client_ip", "principal_id", "decision_id"} <= set(line)
    assert line["client_ip"] is None
    assert line["principal_id"] is None


def test_reserved_field_names_cannot_forge_the_event(output: io.StringIO) -> None:
    log_security_event("access.denied", level="info", **{"timestamp": "1970", "logger": "x"})
    (line,) = lines(output)
    assert line["event"] == "access.denied"
    assert line["logger"] == "verity.security"
    assert line["field_timestamp"] == "1970"
    assert line["timestamp"] != "1970"


def test_client_ip_is_what_the_caller_resolved_never_a_header(output: io.StringIO) -> None:
    # headers passed along as a field do not change client_ip (nothing is re-derived)
    log_security_event(
        "access.denied", client_ip="203.0.113.9",
        headers={"x-forwarded-for": "10.9.9.9", "x-real-ip": "10.8.8.8"},
    )  # fmt: skip
    (line,) = lines(output)
    assert line["client_ip"] == "203.0.113.9"


def test_stdlib_and_uvicorn_records_are_json_too(output: io.StringIO) -> None:
    configure_logging(level="info", stream=output)
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
    logging.getLogger("verity.gateway").warning("upstream %s for route %s", 502, "app")
    logging.getLogger("verity.gateway").debug("below the level: dropped")
    first, second = lines(output)
    assert first["logger"] == "uvicorn.error"
    assert first["event"] == "Started server process [42]"
    assert second["level"] == "warning"
    assert second["event"] == "upstream 502 for route app"


def test_reconfiguring_replaces_the_handler(output: io.StringIO) -> None:
    other = io.StringIO()
    configure_logging(stream=other)
    log_security_event("test.once")
    assert output.getvalue() == ""
    assert len(lines(other)) == 1
    assert len(logging.getLogger().handlers) == 1
