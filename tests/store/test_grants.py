"""GrantStore behaviour, identical on every backend: no self-approval, one decision."""

from __future__ import annotations

import sqlite3
from typing import Any

import psycopg
import pytest

from verity.store import (
    GrantNotFoundError,
    GrantStateError,
    GrantStatus,
    SelfApprovalError,
)

T = 1_000_000.0


def test_an_approved_grant_is_active_for_its_duration(grants: Any) -> None:
    grant = grants.request("alice", "prod-db", duration=600, reason="incident 42", now=T)
    assert grant.status is GrantStatus.PENDING
    assert grants.active("alice", at=T + 1) == []
    approved = grants.approve(grant.id, approver="bob", now=T + 10)
    assert (approved.status, approved.approver) == (GrantStatus.APPROVED, "bob")
    assert (approved.starts, approved.expires) == (T + 10, T + 610)
    assert grants.active("alice", at=T + 9) == []
    assert grants.active("alice", at=T + 10) == [approved]
    assert grants.active("alice", at=T + 610) == []  # ends on time without expire()
    assert grants.active("bob", at=T + 20) == []


def test_self_approval_is_refused(grants: Any) -> None:
    grant = grants.request("alice", "prod-db", duration=600, now=T)
    with pytest.raises(SelfApprovalError):
        grants.approve(grant.id, approver="alice", now=T)
    with pytest.raises(SelfApprovalError):
        grants.deny(grant.id, approver="alice", now=T)
    assert grants.get(grant.id).status is GrantStatus.PENDING


@pytest.mark.parametrize("variant", ["ALICE", " alice", "Alice "])
def test_self_approval_by_case_or_space_variant_is_refused(grants: Any, variant: str) -> None:
    grant = grants.request("alice", "prod-db", duration=600, now=T)
    with pytest.raises(SelfApprovalError):
        grants.approve(grant.id, approver=variant, now=T)


def test_the_database_itself_refuses_self_approval(
    request: pytest.FixtureRequest, grants: Any
) -> None:
    grant = grants.request("alice", "prod-db", duration=600, now=T)
    if "sqlite" in request.node.callspec.id:
        conn = request.getfixturevalue("sqlite_db").connection()
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("update verity_grants set approver = 'Alice' where id = ?", (grant.id,))
    else:
        with (
            request.getfixturevalue("pg_db").connection() as conn,
            pytest.raises(psycopg.errors.CheckViolation),
        ):
            conn.execute("update verity_grants set approver = 'Alice' where id = %s", (grant.id,))


def test_a_grant_is_decided_once(grants: Any) -> None:
    grant = grants.request("alice", "prod-db", duration=600, now=T)
    denied = grants.deny(grant.id, approver="bob", now=T + 1)
    assert (denied.status, denied.starts, denied.expires) == (GrantStatus.DENIED, None, None)
    with pytest.raises(GrantStateError):
        grants.approve(grant.id, approver="carol", now=T + 2)
    with pytest.raises(GrantNotFoundError):
        grants.approve("missing", approver="carol", now=T + 2)
    assert grants.active("alice", at=T + 3) == []


def test_expire_marks_ended_grants(grants: Any) -> None:
    short = grants.request("alice", "a", duration=10, now=T)
    long = grants.request("alice", "b", duration=1000, now=T)
    grants.approve(short.id, approver="bob", now=T)
    grants.approve(long.id, approver="bob", now=T)
    assert grants.expire(now=T + 10) == 1
    assert grants.get(short.id).status is GrantStatus.EXPIRED
    assert [g.name for g in grants.active("alice", at=T + 5)] == ["a", "b"]  # history holds
    assert [g.name for g in grants.active("alice", at=T + 11)] == ["b"]


def test_request_arguments_are_checked(grants: Any) -> None:
    with pytest.raises(ValueError, match="duration"):
        grants.request("alice", "a", duration=0)
    with pytest.raises(ValueError, match="principal"):
        grants.request("", "a", duration=10)
