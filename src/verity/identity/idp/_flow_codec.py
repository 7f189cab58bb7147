"""Flow state as rows: each record's fixed part as compact JSON text, the columns that
queries test (``expires``, ``used``, ``family``) beside it. Secrets that must be hashed
(codes, refresh tokens, transaction ids) are never part of the JSON."""

from __future__ import annotations

import json
from typing import Any

from .state import Authentication, CodeGrant, LoginTransaction, RefreshGrant


def _dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _auth(auth: Authentication) -> dict[str, Any]:
    return {"user_id": auth.user_id, "amr": list(auth.amr), "auth_time": auth.auth_time}


def _read_auth(value: dict[str, Any]) -> Authentication:
    return Authentication(str(value["user_id"]), tuple(value["amr"]), float(value["auth_time"]))


def encode_transaction(tx: LoginTransaction) -> str:
    """A transaction without its id (the row is keyed by the id's SHA-256)."""
    return _dumps(
        {
            "client_id": tx.client_id,
            "redirect_uri": tx.redirect_uri,
            "state": tx.state,
            "nonce": tx.nonce,
            "code_challenge": tx.code_challenge,
            "scope": list(tx.scope),
            "csrf": tx.csrf,
            "browser": tx.browser,
            "pending_user": tx.pending_user,
        }
    )


def decode_transaction(tx_id: str, data: str, expires: float) -> LoginTransaction:
    """The transaction ``tx_id`` from its row."""
    value = json.loads(data)
    return LoginTransaction(
        id=tx_id,
        client_id=value["client_id"],
        redirect_uri=value["redirect_uri"],
        state=value["state"],
        nonce=value["nonce"],
        code_challenge=value["code_challenge"],
        scope=tuple(value["scope"]),
        csrf=value["csrf"],
        browser=value["browser"],
        expires=float(expires),
        pending_user=value["pending_user"],
    )


def encode_code(grant: CodeGrant) -> str:
    """What a code stands for (``used``, ``family`` and ``jtis`` are columns)."""
    return _dumps(
        {
            "client_id": grant.client_id,
            "redirect_uri": grant.redirect_uri,
            "code_challenge": grant.code_challenge,
            "nonce": grant.nonce,
            "scope": list(grant.scope),
            "auth": _auth(grant.auth),
        }
    )


def decode_code(
    data: str, *, expires: float, used: bool, family: str | None, jtis: str
) -> CodeGrant:
    """A code's grant from its row."""
    value = json.loads(data)
    return CodeGrant(
        client_id=value["client_id"],
        redirect_uri=value["redirect_uri"],
        code_challenge=value["code_challenge"],
        nonce=value["nonce"],
        scope=tuple(value["scope"]),
        auth=_read_auth(value["auth"]),
        expires=float(expires),
        used=bool(used),
        family=family,
        jtis=tuple(json.loads(jtis)),
    )


def encode_refresh(grant: RefreshGrant) -> str:
    """A refresh token's grant (``family`` and ``used`` are columns)."""
    value = {"client_id": grant.client_id, "scope": list(grant.scope), "auth": _auth(grant.auth)}
    if grant.jti is not None:
        value["jti"] = grant.jti
    return _dumps(value)


def decode_refresh(family: str, data: str, *, expires: float, used: bool) -> RefreshGrant:
    """A refresh token's grant from its row."""
    value = json.loads(data)
    return RefreshGrant(
        family=family,
        client_id=value["client_id"],
        scope=tuple(value["scope"]),
        auth=_read_auth(value["auth"]),
        expires=float(expires),
        used=bool(used),
        jti=value.get("jti"),
    )


def encode_jtis(jtis: tuple[str, ...]) -> str:
    """The ``jtis`` column."""
    return json.dumps(list(jtis))
