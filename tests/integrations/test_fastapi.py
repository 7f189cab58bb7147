"""FastAPI: the ``require`` dependency against the example invoices app (real FastAPI).

No ``from __future__ import annotations``: FastAPI must see the ``Annotated`` dependencies
of the small apps below, which close over local variables.
"""

import logging
import time
from typing import Annotated, Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import Depends, FastAPI, Header, Request
from fastapi.testclient import TestClient

from verity.gateway import AssertionSigner
from verity.gateway.assertion import AssertionFacts
from verity.identity.dev import generate_private_key
from verity.integrations.fastapi import AssertionSource, Verity, require
from verity.model import AccessRequest, Decision, Principal

from .apps_support import ENGINE, GATEWAY, auth, example, token, verifier


@pytest.fixture
def client() -> TestClient:
    app = example("fastapi_app").create_app(verifier=verifier(), engine=ENGINE)
    return TestClient(app)


def test_owner_reads_own_invoice(client: TestClient) -> None:
    response = client.get("/invoices/inv-1", headers=auth(token("alice")))
    assert response.status_code == 200
    body = response.json()
    assert body["viewer"] == "alice"
    assert body["decision_id"]


def test_owner_relation_uses_loaded_attributes(client: TestClient) -> None:
    response = client.get("/invoices/inv-2", headers=auth(token("alice")))
    assert response.status_code == 403
    body = response.json()
    assert body["error"] == "access_denied"
    assert body["decision_id"].startswith("d")
    # alice cannot become the owner: the reason is what would let her read it (finance)
    assert body["hint"] == "ask your administrator for the role finance if your work needs it"
    assert "inv-2" not in str(body)
    assert "bob" not in str(body)
    assert body["reason"]
    assert client.get("/invoices/inv-2", headers=auth(token("bob"))).status_code == 200


def test_finance_approves_but_not_its_own(client: TestClient) -> None:
    carol = auth(token("carol", roles=("finance",)))
    approved = client.post("/invoices/inv-1/approve", headers=carol)
    assert approved.status_code == 200
    assert approved.json()["approved_by"] == "carol"
    alice = client.post("/invoices/inv-1/approve", headers=auth(token("alice")))
    assert alice.status_code == 403
    bob = auth(token("bob", roles=("finance",)))
    own = client.post("/invoices/inv-2/approve", headers=bob)
    assert own.status_code == 403
    assert own.json()["reason"] == "you cannot approve an invoice you submitted"


def test_missing_token_is_401_with_bearer_challenge(client: TestClient) -> None:
    response = client.get("/invoices/inv-1")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"] == "missing_token"


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"Authorization": "Basic YWxpY2U6cHc="}, "malformed"),
        (auth("not.a.jwt"), "malformed"),
        (auth(token(now=time.time() - 3600)), "expired"),
        (auth(token(audience="another-api")), "bad_audience"),
    ],
    ids=["not-bearer", "garbage", "expired", "wrong-audience"],
)
def test_bad_tokens_are_401_with_distinct_reasons(
    client: TestClient, headers: dict[str, str], reason: str
) -> None:
    response = client.get("/invoices/inv-1", headers=headers)
    assert response.status_code == 401
    assert response.json()["reason"] == reason
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer error="invalid_token"')
    assert response.json()["error_description"] in challenge


def test_expired_and_wrong_audience_messages_differ(client: TestClient) -> None:
    expired = client.get("/invoices/inv-1", headers=auth(token(now=time.time() - 3600)))
    foreign = client.get("/invoices/inv-1", headers=auth(token(audience="x")))
    assert expired.json()["error_description"] != foreign.json()["error_description"]


def test_spoofed_x_verity_user_is_ignored(client: TestClient) -> None:
    alone = client.get("/invoices/inv-2", headers={"X-Verity-User": "bob"})
    assert alone.status_code == 401
    mixed = client.get("/invoices/inv-2", headers={**auth(token("alice")), "X-Verity-User": "bob"})
    assert mixed.status_code == 403


def test_no_token_in_logs(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    bad = token(audience="another-api")
    with caplog.at_level(logging.DEBUG):
        client.get("/invoices/inv-1", headers=auth(bad))
    assert caplog.records, "the rejection should be logged for the operator"
    assert all(bad not in record.getMessage() for record in caplog.records)
    assert all(bad.split(".")[2] not in record.getMessage() for record in caplog.records)


class Exploding:
    def decide(self, request: AccessRequest) -> Decision:
        raise RuntimeError("engine down")


def test_fail_closed_when_the_engine_raises() -> None:
    app = example("fastapi_app").create_app(verifier=verifier(), engine=Exploding())
    response = TestClient(app).get("/invoices/inv-1", headers=auth(token("alice")))
    assert response.status_code == 403
    body = response.json()
    assert body["code"] == "internal_error"
    assert "engine down" not in response.text


def small_app(**require_options: Any) -> tuple[FastAPI, list[str]]:
    ran: list[str] = []
    app = FastAPI()
    Verity(app, verifier=verifier(), engine=ENGINE)
    dependency = require(action="read", resource_type="invoice", **require_options)

    @app.get("/invoices/{invoice_id}")
    def read(invoice_id: str, who: Annotated[Principal, Depends(dependency)]) -> dict[str, str]:
        ran.append(invoice_id)
        return {"who": who.id}

    return app, ran


def test_fail_closed_when_the_attribute_loader_raises() -> None:
    def broken(_request: Any, _invoice_id: str | None) -> dict[str, Any]:
        raise LookupError("database down")

    app, ran = small_app(resource_id_param="invoice_id", attributes=broken)
    response = TestClient(app).get("/invoices/inv-1", headers=auth(token("alice")))
    assert response.status_code == 403
    assert response.json()["code"] == "internal_error"
    assert ran == []


def test_async_attribute_loader_is_awaited() -> None:
    async def owner(_request: Any, invoice_id: str | None) -> dict[str, Any]:
        return {"owner": "alice" if invoice_id == "mine" else "bob"}

    app, ran = small_app(resource_id_param="invoice_id", attributes=owner)
    client = TestClient(app)
    assert client.get("/invoices/mine", headers=auth(token("alice"))).status_code == 200
    assert client.get("/invoices/other", headers=auth(token("alice"))).status_code == 403
    assert ran == ["mine"]


def test_attribute_loader_does_not_run_for_anonymous_callers() -> None:
    calls: list[str | None] = []

    def loader(_request: Any, invoice_id: str | None) -> dict[str, Any]:
        calls.append(invoice_id)
        return {"owner": "alice"}

    app, _ = small_app(resource_id_param="invoice_id", attributes=loader)
    assert TestClient(app).get("/invoices/inv-1").status_code == 401
    assert calls == []


def test_missing_setup_fails_closed() -> None:
    app = FastAPI()

    @app.get("/x")
    def handler(who: Annotated[Principal, Depends(require())]) -> dict[str, str]:
        return {"who": who.id}

    response = TestClient(app).get("/x", headers=auth(token()))
    assert response.status_code == 403


def test_dot_segment_path_confusion_is_rejected() -> None:
    app = FastAPI()
    Verity(app, verifier=verifier(), engine=ENGINE)
    ran: list[str] = []
    anyone = require(allow_anonymous=True)

    @app.get("/files/{name:path}")
    def read(name: str, who: Annotated[Principal, Depends(anyone)]) -> dict[str, str]:
        ran.append(name)
        return {"name": name}

    client = TestClient(app)
    response = client.get("/files/%2e%2e/admin", headers=auth(token("alice")))
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
    assert ran == []


def gateway_app(jwks: dict[str, Any]) -> FastAPI:
    app = FastAPI()
    source = AssertionSource(issuer=GATEWAY, audience="invoices", jwks=jwks)
    Verity(app, assertion=source, engine=ENGINE)

    @app.get("/invoices/{invoice_id}")
    def read(
        invoice_id: str,
        who: Annotated[
            Principal,
            Depends(require(action="read", resource_type="invoice",
                            resource_id_param="invoice_id",
                            attributes=lambda _r, i: {"owner": "alice"})),
        ],
    ) -> dict[str, str]:  # fmt: skip
        return {"who": who.id}

    @app.delete("/invoices/{invoice_id}")
    def delete(
        invoice_id: str,
        who: Annotated[Principal, Depends(require(action="read", resource_type="invoice",
                       resource_id_param="invoice_id", attributes=lambda _r, i: {"owner": "alice"}))],
    ) -> dict[str, str]:  # fmt: skip
        return {"deleted": invoice_id, "by": who.id}

    return app


def assertion_for(
    signer: AssertionSigner,
    subject: str,
    audience: str = "invoices",
    method: str = "GET",
    path: str = "/invoices/1",
) -> str:
    facts = AssertionFacts(audience=audience, decision_id="gw-1", method=method, path=path)
    return signer.sign(Principal(subject, groups={"employees"}), facts)


def test_gateway_assertion_is_accepted_only_with_a_valid_signature() -> None:
    key = generate_private_key("ES256")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    signer = AssertionSigner(key, issuer=GATEWAY)
    client = TestClient(gateway_app(signer.jwks()))
    good = client.get("/invoices/1", headers={"X-Verity-Assertion": assertion_for(signer, "alice")})
    assert good.status_code == 200
    assert good.json() == {"who": "alice"}
    forger_key = generate_private_key("ES256")
    assert isinstance(forger_key, ec.EllipticCurvePrivateKey)
    forged = AssertionSigner(forger_key, issuer=GATEWAY)
    forged.kid = signer.kid
    bad = client.get("/invoices/1", headers={"X-Verity-Assertion": assertion_for(forged, "alice")})
    assert bad.status_code == 401
    assert bad.json()["reason"] == "bad_assertion"
    other = assertion_for(signer, "alice", audience="wiki")
    assert client.get("/invoices/1", headers={"X-Verity-Assertion": other}).status_code == 401


def test_x_verity_user_without_assertion_is_not_identity() -> None:
    signer = AssertionSigner(generate_private_key("ES256"), issuer=GATEWAY)  # type: ignore[arg-type]
    client = TestClient(gateway_app(signer.jwks()))
    response = client.get("/invoices/1", headers={"X-Verity-User": "alice"})
    assert response.status_code == 401


def test_an_assertion_minted_for_get_cannot_delete_the_same_invoice() -> None:
    signer = AssertionSigner(generate_private_key("ES256"), issuer=GATEWAY)  # type: ignore[arg-type]
    client = TestClient(gateway_app(signer.jwks()))
    minted = {"X-Verity-Assertion": assertion_for(signer, "alice", path="/invoices/1")}
    response = client.delete("/invoices/1", headers=minted)
    assert response.status_code == 401
    assert response.json()["reason"] == "bad_assertion"
    other_path = {"X-Verity-Assertion": assertion_for(signer, "alice", path="/invoices/2")}
    assert client.get("/invoices/1", headers=other_path).status_code == 401


def test_a_captured_gateway_assertion_is_accepted_once() -> None:
    signer = AssertionSigner(generate_private_key("ES256"), issuer=GATEWAY)  # type: ignore[arg-type]
    client = TestClient(gateway_app(signer.jwks()))
    captured = {"X-Verity-Assertion": assertion_for(signer, "alice")}
    statuses = [client.get("/invoices/1", headers=captured).status_code for _ in range(4)]
    assert statuses == [200, 401, 401, 401]


def test_a_forged_x_verity_user_next_to_a_valid_token_does_not_reach_the_handler() -> None:
    app = FastAPI()
    Verity(app, verifier=verifier(), engine=ENGINE)
    seen: list[Any] = []

    @app.get("/invoices/{invoice_id}")
    def read(
        invoice_id: str,
        request: Request,
        who: Annotated[Principal, Depends(require(action="read", resource_type="invoice",
                       resource_id_param="invoice_id", attributes=lambda _r, i: {"owner": "alice"}))],
        x_verity_user: Annotated[str | None, Header()] = None,
    ) -> dict[str, str]:  # fmt: skip
        seen.append((who.id, x_verity_user, request.headers.get("x-verity-user"),
                     request.headers.get("x-forwarded-user")))  # fmt: skip
        return {"who": who.id}

    forged = {**auth(token("alice")), "X-Verity-User": "root", "X-Forwarded-User": "root"}
    assert TestClient(app).get("/invoices/1", headers=forged).status_code == 200
    assert seen == [("alice", None, None, None)]


def test_two_checks_of_one_request_share_its_single_use_assertion() -> None:
    signer = AssertionSigner(generate_private_key("ES256"), issuer=GATEWAY)  # type: ignore[arg-type]
    app = FastAPI()
    Verity(app, assertion=AssertionSource(issuer=GATEWAY, audience="invoices",
                                          jwks=signer.jwks()), engine=ENGINE)  # fmt: skip
    listed = require(action="list", resource_type="invoice")
    read = require(action="read", resource_type="invoice", resource_id_param="invoice_id",
                   attributes=lambda _r, i: {"owner": "alice"})  # fmt: skip

    @app.get("/invoices/{invoice_id}", dependencies=[Depends(listed)])
    def show(invoice_id: str, who: Annotated[Principal, Depends(read)]) -> dict[str, str]:
        return {"who": who.id}

    client = TestClient(app)
    response = client.get(
        "/invoices/1", headers={"X-Verity-Assertion": assertion_for(signer, "alice")}
    )
    assert response.status_code == 200, response.json()
    assert response.json() == {"who": "alice"}


def test_a_caller_verified_by_one_guard_is_not_reused_by_a_stricter_guard() -> None:
    """A router-level ``require()`` with the app's guard (tokens for ``invoices``) runs
    first; the route's own ``require(guard=admin)`` accepts only ``admin-api`` tokens. The
    caller the first guard verified must not stand in for the second guard's check."""
    from verity.integrations._common import Guard

    app = FastAPI()
    Verity(app, verifier=verifier(), engine=ENGINE)
    admin = Guard(engine=ENGINE, verifier=verifier("admin-api"))
    listed = require(action="list", resource_type="invoice")
    strict = require(action="list", resource_type="invoice", guard=admin)

    @app.get("/invoices", dependencies=[Depends(listed)])
    def index(who: Annotated[Principal, Depends(strict)]) -> dict[str, str]:
        return {"who": who.id}

    client = TestClient(app)
    invoices_token = client.get("/invoices", headers=auth(token("alice")))
    assert invoices_token.status_code == 401  # the admin guard verifies the token itself
    admin_token = auth(token("alice", audience="admin-api"))
    assert client.get("/invoices", headers=admin_token).status_code == 401  # and the app's
