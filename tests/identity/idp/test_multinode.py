"""Two providers sharing one PostgreSQL schema are two gateway nodes behind a load balancer
without sticky sessions: any step of a login may land on either node.

Both nodes publish the same issuer (node A's URL) and the browser's cookie jar is shared,
as it would be behind one host name.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack
from http.cookiejar import CookieJar
from typing import Any

import httpx
import jwt
import pytest

from verity.identity.idp import LockoutPolicy
from verity.identity.idp.totp import code_at
from verity.store.records import RevocationKind

from .conftest import PUBLIC, Clock, Idp, Login, backend, query_of, running_idp

LOCKOUT = LockoutPolicy(window_seconds=60, max_account_failures=3, max_ip_failures=50)


def _nodes(
    request: pytest.FixtureRequest, clock: Clock, *, redis: bool
) -> Iterator[tuple[Idp, Idp]]:
    jar = CookieJar()
    overrides: dict[str, Any] = {"lockout": LOCKOUT}
    with ExitStack() as stack:
        stores_a, storage_a = stack.enter_context(backend(request, "postgresql", redis=redis))
        stores_b, storage_b = stack.enter_context(backend(request, "postgresql", redis=redis))
        a = stack.enter_context(running_idp(stores_a, storage_a, clock, overrides, cookies=jar))
        b = stack.enter_context(
            running_idp(stores_b, storage_b, clock, overrides, issuer=a.issuer, cookies=jar)
        )
        yield a, b


@pytest.fixture
def nodes(request: pytest.FixtureRequest, clock: Clock) -> Iterator[tuple[Idp, Idp]]:
    """Nodes A and B on one PostgreSQL schema (counters in PostgreSQL too)."""
    yield from _nodes(request, clock, redis=False)


def _refresh(node: Idp, token: str) -> httpx.Response:
    return node.client.post(
        "/idp/token",
        data={"grant_type": "refresh_token", "refresh_token": token, "client_id": PUBLIC},
    )


def test_login_started_on_one_node_finishes_on_the_other(nodes: tuple[Idp, Idp]) -> None:
    a, b = nodes
    a.add_user("roam@example.com", groups=("eng",))
    login = Login(a)
    assert login.authorize().status_code == 200  # authorize on A
    login.idp = b
    done = login.password("roam@example.com")  # password on B
    assert done.status_code == 303, done.text
    params = query_of(done.headers["location"])
    assert (params["state"], params["iss"]) == (login.state, a.issuer)
    login.idp = a
    tokens = login.exchange(params["code"])  # code exchange on A
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    claims = jwt.decode(body["id_token"], options={"verify_signature": False})
    user = b.users.by_email("roam@example.com")
    assert user is not None
    assert (claims["sub"], claims["nonce"], claims["iss"]) == (user.id, login.nonce, a.issuer)
    rotated = _refresh(b, body["refresh_token"])  # refresh on B
    assert rotated.status_code == 200
    jwks = a.client.get("/idp/jwks").json()  # one key set: B's tokens verify with A's JWKS
    assert jwks == b.client.get("/idp/jwks").json()
    kid = jwt.get_unverified_header(rotated.json()["access_token"])["kid"]
    assert kid in [key["kid"] for key in jwks["keys"]]
    # the old token replayed on A: reuse detected there, the family revoked on B as well
    assert _refresh(a, body["refresh_token"]).json()["error"] == "invalid_grant"
    assert _refresh(b, rotated.json()["refresh_token"]).json()["error"] == "invalid_grant"


def test_mfa_login_across_nodes_and_each_totp_code_once_cluster_wide(
    nodes: tuple[Idp, Idp],
) -> None:
    a, b = nodes
    secret = a.add_user("mfa@example.com", mfa=True)
    code = code_at(secret, at=a.clock())
    login = Login(a)
    login.authorize()
    login.idp = b
    page = login.password("mfa@example.com")  # password on B: the TOTP form
    assert 'name="code"' in page.text
    login.idp = a
    ok = login.otp(code)  # TOTP on A
    assert ok.status_code == 303
    replay = Login(b)  # the same code, on the other node
    replay.authorize()
    assert replay.password("mfa@example.com").status_code == 200
    assert replay.otp(code).status_code == 401


def test_code_replayed_on_another_node_revokes_what_it_produced(nodes: tuple[Idp, Idp]) -> None:
    a, b = nodes
    a.add_user("replay@example.com")
    login = Login(a)
    code = login.code("replay@example.com")
    first = login.exchange(code).json()
    login.idp = b
    second = login.exchange(code)
    assert second.json()["error"] == "invalid_grant"
    assert _refresh(a, first["refresh_token"]).json()["error"] == "invalid_grant"
    jti = jwt.decode(first["access_token"], options={"verify_signature": False})["jti"]
    assert a.stores.revocations.is_revoked(RevocationKind.JTI, jti)


def _at_once(nodes: list[Idp], form: dict[str, str]) -> list[httpx.Response]:
    """The same token request sent to every node at the same moment."""
    barrier = threading.Barrier(len(nodes))
    responses: list[httpx.Response] = []

    def exchange(node: Idp) -> None:
        barrier.wait(5)
        responses.append(node.client.post("/idp/token", data=form))

    threads = [threading.Thread(target=exchange, args=(node,)) for node in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(responses) == len(nodes)
    return responses


def test_one_code_exchanged_on_both_nodes_at_once_yields_no_usable_tokens_twice(
    nodes: tuple[Idp, Idp],
) -> None:
    a, b = nodes
    a.add_user("race@example.com")
    for _ in range(5):
        login = Login(a)
        code = login.code("race@example.com")
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": login.redirect_uri,
            "client_id": PUBLIC,
            "code_verifier": login.verifier,
        }
        responses = _at_once([a, b], form)
        statuses = sorted(r.status_code for r in responses)
        assert statuses in ([200, 400], [400, 400]), statuses
        for response in responses:
            if response.status_code == 200:  # the winner's tokens die with the replay
                body = response.json()
                assert _refresh(b, body["refresh_token"]).json()["error"] == "invalid_grant"
                jti = jwt.decode(body["access_token"], options={"verify_signature": False})["jti"]
                assert b.stores.revocations.is_revoked(RevocationKind.JTI, jti)


@pytest.fixture(params=["postgresql", "redis"])
def counted_nodes(request: pytest.FixtureRequest, clock: Clock) -> Iterator[tuple[Idp, Idp]]:
    """Nodes A and B whose lockout counters are in PostgreSQL, or in Redis."""
    yield from _nodes(request, clock, redis=request.param == "redis")


def test_lockout_counted_on_one_node_holds_on_the_other(
    counted_nodes: tuple[Idp, Idp],
) -> None:
    a, b = counted_nodes
    a.add_user("target@example.com")
    login = Login(a)
    login.authorize()
    for _ in range(3):  # three failures on A
        assert login.password("target@example.com", "wrong password guess").status_code == 401
    other = Login(b)
    other.authorize()
    locked = other.password("target@example.com")  # the right password, on B
    assert locked.status_code == 429
    a.clock.advance(61)
    again = Login(b)
    again.authorize()
    assert again.password("target@example.com").status_code == 303
