"""No secret reaches a log line: a table of attempts, through the real JSON handler."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest

from verity.observability import (
    REDACTED,
    get_logger,
    is_secret_key,
    log_security_event,
    redact,
    scrub_text,
)

JWT = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXZhbHVl"
JWE = "eyJhbGciOiJSU0EtT0FFUCJ9.ZW5jcnlwdGVka2V5.aXZpdg.Y2lwaGVydGV4dA.dGFn"
SECRET = "hunter2-Zq9xV"
OPAQUE = "opaque-AbC123xyz"  # an opaque (non-JWT) token value


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


# (description, fields passed to log_security_event, secrets that must not appear)
ATTEMPTS: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("authorization header", {"authorization": f"Bearer {OPAQUE}"}, (OPAQUE,)),
    ("Authorization, any case", {"Authorization": OPAQUE}, (OPAQUE,)),
    ("cookie", {"cookie": f"sid={SECRET}"}, (SECRET,)),
    ("set-cookie", {"set-cookie": f"verity_session={SECRET}; HttpOnly"}, (SECRET,)),
    ("token", {"token": OPAQUE}, (OPAQUE,)),
    ("access_token", {"access_token": OPAQUE}, (OPAQUE,)),
    ("refresh_token", {"refresh_token": OPAQUE}, (OPAQUE,)),
    ("password", {"password": SECRET}, (SECRET,)),
    ("secret", {"secret": SECRET}, (SECRET,)),
    ("client_secret", {"client_secret": SECRET}, (SECRET,)),
    ("assertion", {"assertion": JWT}, (JWT, JWT.split(".")[2])),
    ("x-verity-assertion", {"x_verity_assertion": OPAQUE}, (OPAQUE,)),
    ("api key", {"api_key": SECRET}, (SECRET,)),
    ("nested dict", {"request": {"headers": {"Authorization": f"Bearer {OPAQUE}"}}}, (OPAQUE,)),
    ("deeply nested", {"a": {"b": {"c": [{"password": SECRET}]}}}, (SECRET,)),
    (
        "header pairs (ASGI)",
        {"headers": [(b"authorization", f"Bearer {OPAQUE}".encode())]},
        (OPAQUE,),
    ),
    ("header pairs (str)", {"headers": [("Cookie", f"a={SECRET}")]}, (SECRET,)),
    ("JWT under a harmless key", {"note": f"got {JWT} from client"}, (JWT, JWT.split(".")[1])),
    ("JWE under a harmless key", {"note": JWE}, (JWE.split(".")[3],)),
    ("bearer under a harmless key", {"note": f"Authorization: Bearer {OPAQUE}"}, (OPAQUE,)),
    ("basic credentials", {"note": f"Basic {OPAQUE}"}, (OPAQUE,)),
    (
        "query string token",
        {"path": f"/cb?code={SECRET}&state=x&access_token={OPAQUE}"},
        (SECRET, OPAQUE),
    ),
    ("form body", {"body": f"grant_type=password&password={SECRET}"}, (SECRET,)),
    ("dict repr in text", {"note": str({"password": SECRET})}, (SECRET,)),
    ("cookie header line", {"note": f"Cookie: a=1; verity_session={SECRET}"}, (SECRET,)),
    (
        "object repr",
        {"obj": type("Creds", (), {"__repr__": lambda _s: f"Creds(token={OPAQUE})"})()},
        (OPAQUE,),
    ),
    ("list of JWTs", {"seen": [JWT, JWT]}, (JWT.split(".")[1],)),
    ("bytes value", {"raw": JWT.encode()}, (JWT.split(".")[1],)),
]


@pytest.mark.parametrize(("what", "fields", "secrets"), ATTEMPTS, ids=[a[0] for a in ATTEMPTS])
def test_secret_never_reaches_security_log(
    output: io.StringIO, what: str, fields: dict[str, Any], secrets: tuple[str, ...]
) -> None:
    log_security_event("test.attempt", client_ip="192.0.2.1", **fields)
    text = output.getvalue()
    assert text, what
    for secret in secrets:
        assert secret not in text, (what, text)
    assert REDACTED in text or "<redacted jwt>" in text


@pytest.mark.parametrize(("what", "fields", "secrets"), ATTEMPTS, ids=[a[0] for a in ATTEMPTS])
def test_secret_never_reaches_stdlib_log(
    output: io.StringIO, what: str, fields: dict[str, Any], secrets: tuple[str, ...]
) -> None:
    logging.getLogger("verity.gateway").warning("request %s", fields, extra={"x": 1})
    logging.getLogger("uvicorn.error").error("context: %r", fields)
    text = output.getvalue()
    for secret in secrets:
        assert secret not in text, (what, text)


def test_secret_in_exception_text_is_scrubbed(output: io.StringIO) -> None:
    def fail() -> None:
        raise ValueError(f"upstream said Authorization: Bearer {OPAQUE} and token={SECRET}")

    try:
        fail()
    except ValueError:
        logging.getLogger("verity.gateway").exception("failure with %s", JWT)
        get_logger("verity.test").exception("structlog failure", password=SECRET)
    text = output.getvalue()
    for secret in (OPAQUE, SECRET, JWT.split(".")[1]):
        assert secret not in text
    assert all("exception" in line for line in lines(output))


def test_uvicorn_access_line_with_token_in_query_is_scrubbed(output: io.StringIO) -> None:
    access = logging.getLogger("uvicorn.access")
    access.info('%s - "%s %s HTTP/%s" %d', "192.0.2.1:5000", "GET",
                f"/callback?code={SECRET}&id_token={JWT}", "1.1", 302)  # fmt: skip
    (line,) = lines(output)
    assert line["logger"] == "uvicorn.access"
    assert SECRET not in line["event"]
    assert JWT.split(".")[1] not in line["event"]
    assert "/callback?code=" in line["event"]


def test_security_logger_is_redacted_even_without_configure_logging(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # a library user who never called configure_logging: the stdlib record holds the
    # already-redacted event dict
    with caplog.at_level(logging.INFO, logger="verity.security"):
        log_security_event("test.unconfigured", authorization=f"Bearer {OPAQUE}", note=JWT)
    text = " ".join(str(record.msg) for record in caplog.records)
    assert "test.unconfigured" in text
    assert OPAQUE not in text
    assert JWT.split(".")[1] not in text


@pytest.mark.parametrize(
    "key",
    ["authorization", "Authorization", "proxy-authorization", "cookie", "Set-Cookie", "token",
     "id_token", "password", "db_password", "secret", "client_secret", "assertion",
     "api_key", "apiKey", "private_key", "session_id", "credentials"],
)  # fmt: skip
def test_secret_key_names(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "text",
    ["decision d1234 denied by rule engineers-app", "status code 200", "state: ready",
     "route=app reason=expired", "client 192.0.2.1"],
)  # fmt: skip
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert scrub_text(text) == text


def test_redact_keeps_structure_and_harmless_values() -> None:
    value = {"route": "app", "n": 3, "ok": True, "items": [1, "a"], "auth": {"token": "x"}}
    assert redact(value) == {
        "route": "app", "n": 3, "ok": True, "items": [1, "a"], "auth": {"token": REDACTED}
    }  # fmt: skip


def test_redact_survives_self_referencing_structures() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    assert "truncated" in json.dumps(redact(loop))
