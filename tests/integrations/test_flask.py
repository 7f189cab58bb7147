"""Flask: the ``require`` decorator and ``Verity`` extension on the example invoices app."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask, g, request
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from verity.gateway import AssertionSigner
from verity.gateway.assertion import AssertionFacts
from verity.identity.dev import generate_private_key, mint
from verity.integrations.flask import AssertionSource, Verity, require
from verity.model import AccessRequest, Decision, Principal

from .apps_support import (
    AUDIENCE,
    ENGINE,
    GATEWAY,
    ISSUER,
    auth,
    example,
    token,
    verifier,
)


@pytest.fixture
def client() -> FlaskClient:
    return example("flask_app").create_app(verifier=verifier(), engine=ENGINE).test_client()


def test_owner_reads_own_invoice(client: FlaskClient) -> None:
    response = client.get("/invoices/inv-1", headers=auth(token("alice")))
    assert response.status_code == 200
    assert response.json is not None
    assert response.json["viewer"] == "alice"
    assert response.json["decision_id"].startswith("d")


def test_non_owner_is_403_with_reason_hint_and_decision_id(client: FlaskClient) -> None:
    response = client.get("/invoices/inv-2", headers=auth(token("alice")))
    assert response.status_code == 403
    body = response.json
    assert body is not None
    assert body["error"] == "access_denied"
    # alice cannot become the owner: the reason is what would let her read it (finance)
    assert body["hint"] == "ask your administrator for the role finance if your work needs it"
    assert "inv-2" not in str(body)
    assert "bob" not in str(body)
    assert body["decision_id"].startswith("d")


def test_finance_approves_but_not_its_own(client: FlaskClient) -> None:
    carol = auth(token("carol", roles=("finance",)))
    assert client.post("/invoices/inv-1/approve", headers=carol).status_code == 200
    own = client.post("/invoices/inv-2/approve", headers=auth(token("bob", roles=("finance",))))
    assert own.status_code == 403
    assert own.json is not None
    assert own.json["reason"] == "you cannot approve an invoice you submitted"


def test_missing_token_is_401(client: FlaskClient) -> None:
    response = client.get("/invoices/inv-1")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json == {
        "error": "missing_token",
        "error_description": "Authentication is required.",
    }


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"Authorization": "Token abc"}, "malformed"),
        (auth("e30.e30.sig"), "malformed"),
        (auth(token(now=time.time() - 3600)), "expired"),
        (auth(token(audience="another-api")), "bad_audience"),
        (auth(token(issuer="https://evil.test")), "bad_issuer"),
    ],
    ids=["not-bearer", "garbage", "expired", "wrong-audience", "wrong-issuer"],
)
def test_bad_tokens_are_401_with_distinct_reasons(
    client: FlaskClient, headers: dict[str, str], reason: str
) -> None:
    response = client.get("/invoices/inv-1", headers=headers)
    assert response.status_code == 401
    assert response.json is not None
    assert response.json["reason"] == reason
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')


def test_algorithm_comes_from_configuration_not_the_token(client: FlaskClient) -> None:
    hs = mint(b"x" * 32, alg="HS256", kid="k1", issuer=ISSUER, audience=AUDIENCE,  # type: ignore[arg-type]
              subject="alice")  # fmt: skip
    response = client.get("/invoices/inv-1", headers=auth(hs))
    assert response.status_code == 401
    assert response.json is not None
    assert response.json["reason"] == "disallowed_algorithm"


def test_spoofed_x_verity_user_is_ignored(client: FlaskClient) -> None:
    assert client.get("/invoices/inv-2", headers={"X-Verity-User": "bob"}).status_code == 401
    mixed = {**auth(token("alice")), "X-Verity-User": "bob", "Remote-User": "bob"}
    assert client.get("/invoices/inv-2", headers=mixed).status_code == 403


def small_app(engine: Any = ENGINE, **options: Any) -> tuple[Flask, list[str]]:
    app = Flask(__name__)
    Verity(app, engine=engine, **({"verifier": verifier()} | options))
    ran: list[str] = []

    def load(invoice_id: str | None) -> Any:
        return app.config["LOADER"](invoice_id)

    @app.get("/invoices/<invoice_id>")
    @require(action="read", resource_type="invoice", resource_id_arg="invoice_id",
             attributes=load)  # fmt: skip
    def read(invoice_id: str) -> dict[str, str]:
        ran.append(invoice_id)
        return {"who": g.verity_principal.id}

    @app.delete("/invoices/<invoice_id>")
    @require(action="read", resource_type="invoice", resource_id_arg="invoice_id",
             attributes=load)  # fmt: skip
    def delete(invoice_id: str) -> dict[str, str]:
        ran.append(f"delete {invoice_id}")
        return {"deleted": invoice_id}

    @app.get("/whoami")
    @require(action="list", resource_type="invoice")
    def whoami() -> dict[str, Any]:
        return {"who": g.verity_principal.id, "x-verity-user": request.headers.get("X-Verity-User"),
                "x-forwarded-user": request.headers.get("X-Forwarded-User")}  # fmt: skip

    @app.get("/files/<path:name>")
    @require(allow_anonymous=True)
    def files(name: str) -> dict[str, str]:
        ran.append(name)
        return {"name": name}

    app.config["LOADER"] = lambda _invoice_id: {"owner": "alice"}
    return app, ran


class Exploding:
    def decide(self, request: AccessRequest) -> Decision:
        raise RuntimeError("engine down")


def test_fail_closed_when_the_engine_raises() -> None:
    app, ran = small_app(engine=Exploding())
    response = app.test_client().get("/invoices/1", headers=auth(token("alice")))
    assert response.status_code == 403
    assert response.json is not None
    assert response.json["code"] == "internal_error"
    assert b"engine down" not in response.data
    assert ran == []


def test_fail_closed_when_the_attribute_loader_raises() -> None:
    app, ran = small_app()

    def broken(_invoice_id: str | None) -> dict[str, Any]:
        raise LookupError("database down")

    app.config["LOADER"] = broken
    response = app.test_client().get("/invoices/1", headers=auth(token("alice")))
    assert response.status_code == 403
    assert response.json is not None
    assert response.json["code"] == "internal_error"
    assert ran == []


def test_missing_extension_fails_closed() -> None:
    app = Flask(__name__)

    @app.get("/x")
    @require()
    def handler() -> str:
        return "handler ran"

    response = app.test_client().get("/x", headers=auth(token()))
    assert response.status_code == 403
    assert b"handler ran" not in response.data


def test_dot_segment_path_confusion_is_rejected() -> None:
    app, ran = small_app()
    response = app.test_client().get("/files/%2e%2e/admin")
    assert response.status_code == 400
    assert ran == []


def test_gateway_assertion_is_accepted_only_with_a_valid_signature() -> None:
    key, other = generate_private_key("ES256"), generate_private_key("ES256")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(other, ec.EllipticCurvePrivateKey)
    signer, forger = AssertionSigner(key, issuer=GATEWAY), AssertionSigner(other, issuer=GATEWAY)
    forger.kid = signer.kid
    source = AssertionSource(issuer=GATEWAY, audience="invoices", jwks=signer.jwks())
    app, _ = small_app(assertion=source, verifier=None)
    client = app.test_client()
    facts = AssertionFacts(
        audience="invoices", decision_id="gw-1", method="GET", path="/invoices/1"
    )
    alice = Principal("alice", groups={"employees"})
    good = client.get("/invoices/1", headers={"X-Verity-Assertion": signer.sign(alice, facts)})
    assert good.status_code == 200
    assert good.json == {"who": "alice"}
    bad = client.get("/invoices/1", headers={"X-Verity-Assertion": forger.sign(alice, facts)})
    assert bad.status_code == 401
    assert client.get("/invoices/1", headers={"X-Verity-User": "alice"}).status_code == 401


@pytest.fixture
def served() -> Iterator[str]:
    app = example("flask_app").create_app(verifier=verifier(), engine=ENGINE)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


def test_example_app_over_a_real_socket(served: str) -> None:
    with httpx.Client(base_url=served, timeout=5) as http:
        assert http.get("/health").status_code == 200
        assert http.get("/invoices/inv-1").status_code == 401
        assert http.get("/invoices/inv-1", headers=auth(token("alice"))).status_code == 200
        assert http.get("/invoices/inv-2", headers=auth(token("alice"))).status_code == 403


def _gateway_app() -> tuple[Flask, AssertionSigner, list[str]]:
    key = generate_private_key("ES256")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    signer = AssertionSigner(key, issuer=GATEWAY)
    source = AssertionSource(issuer=GATEWAY, audience="invoices", jwks=signer.jwks())
    app, ran = small_app(assertion=source, verifier=None)
    return app, signer, ran


def _minted(signer: AssertionSigner, method: str = "GET", path: str = "/invoices/1") -> str:
    facts = AssertionFacts(audience="invoices", decision_id="gw-1", method=method, path=path)
    return signer.sign(Principal("alice", groups={"employees"}), facts)


def test_an_assertion_minted_for_get_cannot_delete_the_same_invoice() -> None:
    app, signer, ran = _gateway_app()
    client = app.test_client()
    response = client.delete("/invoices/1", headers={"X-Verity-Assertion": _minted(signer)})
    assert response.status_code == 401
    assert ran == []


def test_a_captured_assertion_replayed_concurrently_over_a_threaded_server_is_accepted_once() -> (
    None
):
    app, signer, ran = _gateway_app()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    captured = {"X-Verity-Assertion": _minted(signer)}
    url = f"http://127.0.0.1:{server.server_port}/invoices/1"
    try:
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda _: httpx.get(url, headers=captured, timeout=5).status_code,
                                     range(16)))  # fmt: skip
    finally:
        server.shutdown()
        thread.join(10)
    assert sorted(statuses) == [200] + [401] * 15
    assert ran == ["1"]


def test_a_forged_x_verity_user_next_to_a_valid_token_does_not_reach_the_view() -> None:
    app, _ = small_app()
    forged = {**auth(token("alice")), "X-Verity-User": "root", "X-Forwarded-User": "root"}
    response = app.test_client().get("/whoami", headers=forged)
    assert response.status_code == 200
    assert response.json == {"who": "alice", "x-verity-user": None, "x-forwarded-user": None}


def test_stacked_checks_of_one_request_share_its_single_use_assertion() -> None:
    app, signer, _ = _gateway_app()

    @app.get("/stacked/<invoice_id>")
    @require(action="list", resource_type="invoice")
    @require(action="read", resource_type="invoice", resource_id_arg="invoice_id",
             attributes=lambda _i: {"owner": "alice"})  # fmt: skip
    def stacked(invoice_id: str) -> dict[str, str]:
        return {"who": g.verity_principal.id}

    headers = {"X-Verity-Assertion": _minted(signer, path="/stacked/1")}
    response = app.test_client().get("/stacked/1", headers=headers)
    assert response.status_code == 200, response.json
    assert response.json == {"who": "alice"}
