"""Starlette: ``VerityMiddleware`` on the example reports app, in-process and over a socket."""

from __future__ import annotations

import sys
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.gateway.servers import ThreadServer
from verity.gateway import AssertionSigner
from verity.gateway.assertion import AssertionFacts
from verity.identity import TokenVerifier
from verity.identity.dev import generate_private_key, mint
from verity.integrations.starlette import AssertionSource, VerityMiddleware, path_excluded
from verity.model import AccessRequest, Decision, Principal
from verity.policy import compile_policy, load_policy, load_policy_file

from . import apps_support
from .apps_support import APPS, GATEWAY, ISSUER, KEY, example

AUDIENCE = "reports"
ENGINE = compile_policy(load_policy_file(APPS / "starlette.policy.yaml"))


def verifier() -> TokenVerifier:
    return apps_support.verifier(AUDIENCE)


def auth(subject: str = "alice", **claims: Any) -> dict[str, str]:
    claims = {"groups": ["employees"], **claims}
    value = mint(KEY, alg="ES256", kid="k1", issuer=ISSUER, audience=AUDIENCE,
                 subject=subject, claims=claims)  # fmt: skip
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture
def client() -> TestClient:
    return TestClient(example("starlette_app").create_app(verifier=verifier(), engine=ENGINE))


def test_excluded_health_needs_no_token(client: TestClient) -> None:
    assert client.get("/health").status_code == 200


def test_every_other_path_is_enforced(client: TestClient) -> None:
    response = client.get("/reports")
    assert response.status_code == 401
    assert response.json()["error"] == "missing_token"
    assert client.get("/no-such-page").status_code == 401


def test_allow_puts_principal_and_decision_in_state(client: TestClient) -> None:
    response = client.get("/reports/q1", headers=auth("alice"))
    assert response.status_code == 200
    assert response.json()["viewer"] == "alice"
    assert response.json()["decision_id"].startswith("d")


def test_deny_is_403_with_reason_hint_and_decision_id(client: TestClient) -> None:
    response = client.post("/reports/q3", headers=auth("carol", roles=["finance"]), content=b"x")
    assert response.status_code == 403
    body = response.json()
    assert body["hint"] == "sign in with MFA as a member of finance"
    assert body["decision_id"].startswith("d")
    assert body["reason"]
    mfa = auth("carol", roles=["finance"], amr=["pwd", "mfa"])
    assert client.post("/reports/q3", headers=mfa, content=b"x").status_code == 201


def test_bad_token_is_401_with_reason(client: TestClient) -> None:
    response = client.get("/reports", headers={"Authorization": "Bearer a.b.c"})
    assert response.status_code == 401
    assert response.json()["reason"] == "malformed"
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')


def echo_app(**options: Any) -> Starlette:
    async def echo(request: Request) -> JSONResponse:
        return JSONResponse({
            "principal": request.state.verity_principal.id,
            "x-verity-user": request.headers.get("x-verity-user"),
            "x-forwarded-user": request.headers.get("x-forwarded-user"),
        })  # fmt: skip

    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(websocket.state.verity_principal.id)
        await websocket.close()

    policy = load_policy(
        options.pop("policy", "rules: [{name: all, allow: {groups: [employees]}}]")
    )
    app = Starlette(
        routes=[Route("/echo", echo, methods=["GET", "POST"]), WebSocketRoute("/ws", socket)]
    )
    options.setdefault("engine", compile_policy(policy))
    return VerityMiddleware(app, verifier=verifier(), **options)  # type: ignore[return-value]


def test_spoofed_identity_headers_are_ignored_and_removed() -> None:
    client = TestClient(echo_app())
    spoofed = {"X-Verity-User": "admin", "X-Forwarded-User": "admin"}
    assert client.get("/echo", headers=spoofed).status_code == 401
    body = client.get("/echo", headers={**auth("alice"), **spoofed}).json()
    assert body == {"principal": "alice", "x-verity-user": None, "x-forwarded-user": None}


def test_dot_segment_path_confusion_is_rejected(client: TestClient) -> None:
    response = client.get("/health/%2e%2e/reports/q1")
    assert response.status_code == 400
    assert "Revenue" not in response.text


def test_path_exclusion_patterns() -> None:
    assert path_excluded("/health", ["/health"])
    assert not path_excluded("/healthz", ["/health"])
    assert path_excluded("/static", ["/static/**"])
    assert path_excluded("/static/a/b.css", ["/static/**"])
    assert not path_excluded("/staticx/a", ["/static/**"])


IP_POLICY = "rules: [{name: office, allow: {groups: [employees], ip: [10.0.0.0/8]}}]"


def test_x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() -> None:
    headers = {**auth("alice"), "X-Forwarded-For": "10.1.2.3"}
    untrusted = TestClient(echo_app(policy=IP_POLICY), client=("203.0.113.9", 5000))
    assert untrusted.get("/echo", headers=headers).status_code == 403
    trusted_app = echo_app(policy=IP_POLICY, trusted_proxies=["203.0.113.0/24"])
    trusted = TestClient(trusted_app, client=("203.0.113.9", 5000))
    assert trusted.get("/echo", headers=headers).status_code == 200


def test_websocket_handshake_is_enforced() -> None:
    client = TestClient(echo_app())
    with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect("/ws"):
        pass
    assert closed.value.code == 1008
    with client.websocket_connect("/ws", headers=auth("alice")) as websocket:
        assert websocket.receive_text() == "alice"


class Exploding:
    def decide(self, request: AccessRequest) -> Decision:
        raise RuntimeError("engine down")


def test_fail_closed_when_the_engine_raises() -> None:
    client = TestClient(echo_app(engine=Exploding()))
    response = client.get("/echo", headers=auth("alice"))
    assert response.status_code == 403
    assert response.json()["code"] == "internal_error"
    assert "engine down" not in response.text


def test_fail_closed_when_a_listener_raises() -> None:
    def audit(_request: AccessRequest, _decision: Decision) -> None:
        raise OSError("audit log unavailable")

    response = TestClient(echo_app(listeners=[audit])).get("/echo", headers=auth("alice"))
    assert response.status_code == 403


def test_example_app_over_a_real_socket() -> None:
    app = example("starlette_app").create_app(verifier=verifier(), engine=ENGINE)
    with ThreadServer(app) as server, httpx.Client(base_url=server.url, timeout=5) as http:
        assert http.get("/health").status_code == 200
        assert http.get("/reports").status_code == 401
        allowed = http.get("/reports", headers=auth("alice"))
        assert allowed.status_code == 200
        assert allowed.json()["viewer"] == "alice"
        assert http.get("/reports/%2e%2e/health").status_code == 400


def test_import_verity_needs_neither_fastapi_nor_flask() -> None:
    code = (
        "import sys; sys.modules['fastapi'] = None; sys.modules['flask'] = None\n"
        "import verity, verity.integrations, verity.integrations.starlette\n"
        "assert 'fastapi' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
    )
    import subprocess

    done = subprocess.run(  # noqa: S603 - our own interpreter and a fixed script
        [sys.executable, "-c", code], capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr.decode()


def test_a_gateway_assertion_is_bound_to_its_request_and_accepted_once() -> None:
    key = generate_private_key("ES256")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    signer = AssertionSigner(key, issuer=GATEWAY)
    source = AssertionSource(issuer=GATEWAY, audience=AUDIENCE, jwks=signer.jwks())
    client = TestClient(echo_app(assertion=source))
    alice = Principal("alice", groups={"employees"})

    def minted(method: str, path: str) -> dict[str, str]:
        facts = AssertionFacts(audience=AUDIENCE, decision_id="gw-1", method=method, path=path)
        return {"X-Verity-Assertion": signer.sign(alice, facts)}

    assert client.post("/echo", headers=minted("GET", "/echo")).status_code == 401
    assert client.get("/echo", headers=minted("GET", "/other")).status_code == 401
    captured = minted("GET", "/echo")
    statuses = [client.get("/echo", headers=captured).status_code for _ in range(4)]
    assert statuses == [200, 401, 401, 401]
