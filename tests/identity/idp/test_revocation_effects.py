"""What the provider itself honours after a revocation: a ``SUBJECT`` revocation ("log out
everywhere") ends the refresh families of earlier logins, ``/userinfo`` refuses revoked
access tokens (by ``jti``, token hash or subject), and a refresh family ends at an
absolute cap counted from its login. Revocations are recorded through a second store
object on the same database, as ``verity revoke`` does from another process."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import httpx
import jwt
import pytest

from verity.identity.idp import TokenLifetimes
from verity.identity.idp.state import digest, new_secret
from verity.store.factory import Stores
from verity.store.records import RevocationKind, token_hash

from .conftest import PUBLIC, Idp, Login, backend


def _refresh(idp: Idp, token: str) -> httpx.Response:
    return idp.client.post(
        "/idp/token",
        data={"grant_type": "refresh_token", "refresh_token": token, "client_id": PUBLIC},
    )


def _userinfo(idp: Idp, access_token: str) -> httpx.Response:
    return idp.client.get(
        "/idp/userinfo",
        headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
    )


def _login(idp: Idp, email: str) -> dict[str, Any]:
    login = Login(idp)
    response = login.exchange(login.code(email))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _sub(access_token: str) -> str:
    return str(jwt.decode(access_token, options={"verify_signature": False})["sub"])


@contextmanager
def _other_process(request: pytest.FixtureRequest) -> Iterator[Stores]:
    """A second set of stores on the provider's database (what ``verity revoke`` opens)."""
    with backend(request, request.node.callspec.params["idp"]) as (stores, _storage):
        yield stores


def _revoke_subject(request: pytest.FixtureRequest, idp: Idp, sub: str, *, at: float) -> None:
    with _other_process(request) as cli:
        cli.revocations.revoke(RevocationKind.SUBJECT, sub, expires=at + 600, now=at)


def test_subject_revocation_ends_refresh_of_earlier_login(
    request: pytest.FixtureRequest, idp: Idp
) -> None:
    idp.add_user("eve@example.com")
    first = _login(idp, "eve@example.com")
    rotated = _refresh(idp, first["refresh_token"])
    assert rotated.status_code == 200
    body = rotated.json()
    assert _userinfo(idp, body["access_token"]).status_code == 200

    idp.clock.advance(30)
    _revoke_subject(request, idp, _sub(body["access_token"]), at=idp.clock())
    idp.clock.advance(30)

    refused = _refresh(idp, body["refresh_token"])
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"
    assert "refresh_token" not in refused.json()
    assert _userinfo(idp, body["access_token"]).status_code == 401
    assert _userinfo(idp, first["access_token"]).status_code == 401


def test_subject_revocation_revokes_the_whole_family(
    request: pytest.FixtureRequest, idp: Idp
) -> None:
    """A sibling token of the family (say, in flight on another node) stops too, even once
    the revocation itself has expired."""
    idp.add_user("sib@example.com")
    body = _login(idp, "sib@example.com")
    state = idp.provider.state
    grant = state.redeem_refresh(digest(body["refresh_token"]), now=idp.clock())
    assert grant is not None
    one, two = new_secret(), new_secret()
    for token in (one, two):
        state.put_refresh(digest(token), replace(grant, used=False))

    with _other_process(request) as cli:
        at = idp.clock() + 1
        cli.revocations.revoke(RevocationKind.SUBJECT, grant.auth.user_id, expires=at + 60, now=at)
    idp.clock.advance(5)
    assert _refresh(idp, one).json()["error"] == "invalid_grant"

    idp.clock.advance(120)  # the subject revocation has expired
    assert idp.provider.revocations is not None
    assert idp.provider.revocations.lookup(
        RevocationKind.SUBJECT, grant.auth.user_id, now=idp.clock()
    ) is None  # fmt: skip
    assert _refresh(idp, two).json()["error"] == "invalid_grant"


def test_login_after_subject_revocation_works(request: pytest.FixtureRequest, idp: Idp) -> None:
    idp.add_user("back@example.com")
    old = _login(idp, "back@example.com")
    idp.clock.advance(10)
    _revoke_subject(request, idp, _sub(old["access_token"]), at=idp.clock())
    idp.clock.advance(10)

    new = _login(idp, "back@example.com")
    assert _userinfo(idp, new["access_token"]).status_code == 200
    idp.clock.advance(60)
    rotated = _refresh(idp, new["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    assert _userinfo(idp, rotated.json()["access_token"]).status_code == 200
    assert _refresh(idp, old["refresh_token"]).json()["error"] == "invalid_grant"
    assert _userinfo(idp, old["access_token"]).status_code == 401


def test_code_of_earlier_login_refused_after_subject_revocation(
    request: pytest.FixtureRequest, idp: Idp
) -> None:
    idp.add_user("mid@example.com")
    login = Login(idp)
    code = login.code("mid@example.com")  # logged in, code not yet exchanged
    user = idp.users.by_email("mid@example.com")
    assert user is not None
    _revoke_subject(request, idp, user.id, at=idp.clock() + 1)
    refused = login.exchange(code)
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"
    assert "access_token" not in refused.json()


def test_revocation_store_unreadable_fails_closed(request: pytest.FixtureRequest, idp: Idp) -> None:
    """The store cannot be read: no refresh (``invalid_grant``, documented), userinfo 503."""
    idp.add_user("down@example.com")
    body = _login(idp, "down@example.com")
    with _other_process(request) as closed:
        pass  # closed on exit: every read raises StoreUnavailableError
    working = idp.provider.revocations
    idp.provider.revocations = closed.revocations
    try:
        refused = _refresh(idp, body["refresh_token"])
        userinfo = _userinfo(idp, body["access_token"])
    finally:
        idp.provider.revocations = working
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"
    assert userinfo.status_code == 503
    assert userinfo.json()["error"] == "temporarily_unavailable"
    # the refused grant does not come back once the store is readable again
    assert _refresh(idp, body["refresh_token"]).json()["error"] == "invalid_grant"


def _signing_input_hash(token: str) -> str:
    return hashlib.sha256(token.rpartition(".")[0].encode()).hexdigest()


@pytest.mark.parametrize("hashed", [_signing_input_hash, token_hash])
def test_userinfo_refuses_token_revoked_by_hash(
    request: pytest.FixtureRequest, idp: Idp, hashed: Any
) -> None:
    """TOKEN revocations keyed by the signing input's SHA-256 (and, for revocations
    recorded before that change, by the whole token's)."""
    idp.add_user("tok@example.com")
    revoked, other = _login(idp, "tok@example.com"), _login(idp, "tok@example.com")
    with _other_process(request) as cli:
        cli.revocations.revoke(
            RevocationKind.TOKEN, hashed(revoked["access_token"]), expires=idp.clock() + 600
        )
    refused = _userinfo(idp, revoked["access_token"])
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_token"
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    assert _userinfo(idp, other["access_token"]).status_code == 200


def test_userinfo_refuses_revoked_jti(request: pytest.FixtureRequest, idp: Idp) -> None:
    idp.add_user("jti@example.com")
    body = _login(idp, "jti@example.com")
    jti = jwt.decode(body["access_token"], options={"verify_signature": False})["jti"]
    with _other_process(request) as cli:
        cli.revocations.revoke(RevocationKind.JTI, jti, expires=idp.clock() + 600)
    assert _userinfo(idp, body["access_token"]).status_code == 401


CAP = 3600.0


@pytest.mark.parametrize(
    "idp_overrides", [{"lifetimes": {"refresh_token": 1800, "refresh_family": CAP}}]
)
def test_refresh_family_ends_at_absolute_cap(idp: Idp) -> None:
    idp.add_user("cap@example.com")
    body = _login(idp, "cap@example.com")
    token = body["refresh_token"]
    for _ in range(2):  # each rotation within the per-token lifetime
        idp.clock.advance(1700)
        rotated = _refresh(idp, token)
        assert rotated.status_code == 200, rotated.text
        token = rotated.json()["refresh_token"]
    idp.clock.advance(CAP - 2 * 1700)  # only 200 s after the last rotation, at the cap
    refused = _refresh(idp, token)
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"
    assert _refresh(idp, _login(idp, "cap@example.com")["refresh_token"]).status_code == 200


@pytest.mark.parametrize(
    "idp_overrides", [{"lifetimes": {"refresh_token": 1800, "refresh_family": CAP}}]
)
def test_refresh_family_cap_applies_to_tokens_stored_before_it(idp: Idp) -> None:
    """A token stored with a longer life (say, before the cap was lowered) still stops."""
    idp.add_user("old@example.com")
    body = _login(idp, "old@example.com")
    state = idp.provider.state
    grant = state.redeem_refresh(digest(body["refresh_token"]), now=idp.clock())
    assert grant is not None
    long_lived = new_secret()
    state.put_refresh(
        digest(long_lived), replace(grant, used=False, expires=idp.clock() + 30 * 86400)
    )
    idp.clock.advance(CAP + 1)
    assert _refresh(idp, long_lived).json()["error"] == "invalid_grant"


def test_default_family_cap_is_one_day() -> None:
    lifetimes = TokenLifetimes()
    assert lifetimes.refresh_family == 86400
    assert lifetimes.refresh_token <= lifetimes.refresh_family
