"""The ``FlowState`` contract on memory, SQLite and PostgreSQL, and races between nodes.

A "node" is a second ``FlowState`` over the same database through its own connections
(another process on the SQLite file, another gateway on the PostgreSQL schema).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from verity.identity.idp import FlowState, MemoryFlowState, PostgresFlowState, SqliteFlowState
from verity.identity.idp.sql_state import PURGE_AFTER
from verity.identity.idp.state import (
    Authentication,
    CodeGrant,
    LoginTransaction,
    RefreshGrant,
    digest,
    new_secret,
)
from verity.store import postgres
from verity.store.sqlite.db import SqliteDatabase

NOW = 1_800_000_000.0
AUTH = Authentication("user-1", ("pwd", "otp", "mfa"), NOW - 5)


def _tx(*, expires: float = NOW + 600, pending_user: str | None = None) -> LoginTransaction:
    return LoginTransaction(
        id=new_secret(),
        client_id="cli",
        redirect_uri="http://127.0.0.1:9999/callback",
        state="st",
        nonce=None,
        code_challenge="c" * 43,
        scope=("openid", "email"),
        csrf=new_secret(),
        browser=new_secret(),
        expires=expires,
        pending_user=pending_user,
    )


def _code(*, expires: float = NOW + 60) -> CodeGrant:
    return CodeGrant(
        client_id="cli",
        redirect_uri="http://127.0.0.1:9999/callback",
        code_challenge="c" * 43,
        nonce="n-1",
        scope=("openid",),
        auth=AUTH,
        expires=expires,
    )


def _refresh(family: str, *, expires: float = NOW + 3600) -> RefreshGrant:
    return RefreshGrant(family, "cli", ("openid", "offline_access"), AUTH, expires)


Opener = Callable[[], FlowState]


@pytest.fixture
def open_state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens another node's view of the same flow state on each call."""
    kind = request.node.callspec.params["state"]
    closers: list[Callable[[], None]] = []
    shared = MemoryFlowState()

    def opener() -> FlowState:
        if kind == "memory":
            return shared
        if kind == "sqlite":
            sdb = SqliteDatabase(tmp_path / "flow.db")
            closers.append(sdb.close)
            return SqliteFlowState(sdb)
        pdb = postgres.PostgresDatabase(
            request.getfixturevalue("postgres_dsn"),
            schema=request.getfixturevalue("pg_schema"),
            max_size=4,
        )
        closers.append(pdb.close)
        return PostgresFlowState(pdb)

    yield opener
    for close in closers:
        close()


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def state(open_state: Opener) -> FlowState:
    return open_state()


def test_transaction_round_trip_replace_expire_and_drop(state: FlowState) -> None:
    tx = _tx()
    state.put_transaction(tx)
    assert state.get_transaction(tx.id, now=NOW) == tx
    waiting = LoginTransaction(**{**_fields(tx), "pending_user": "user-1"})
    state.put_transaction(waiting)
    assert state.get_transaction(tx.id, now=NOW) == waiting
    assert state.get_transaction(tx.id, now=tx.expires) is None
    assert state.get_transaction("other", now=NOW) is None
    state.drop_transaction(tx.id)
    assert state.get_transaction(tx.id, now=NOW) is None


def _fields(tx: LoginTransaction) -> dict[str, Any]:
    return {name: getattr(tx, name) for name in tx.__dataclass_fields__}


def test_code_is_redeemed_once_then_reported_as_used(state: FlowState) -> None:
    grant = _code()
    state.put_code("h1", grant)
    assert state.redeem_code("h1", now=NOW) == grant
    assert not state.record_code_result("h1", family="fam", jtis=("jti-1",))
    again = state.redeem_code("h1", now=NOW)
    assert again is not None
    assert again.used
    assert (again.family, again.jtis) == ("fam", ("jti-1",))  # what to revoke
    assert state.redeem_code("unknown", now=NOW) is None


def test_expired_code_is_refused(state: FlowState) -> None:
    state.put_code("h2", _code(expires=NOW + 60))
    assert state.redeem_code("h2", now=NOW + 60) is None


def test_reuse_before_the_result_is_recorded_revokes_the_family(state: FlowState) -> None:
    state.put_code("h3", _code())
    assert state.redeem_code("h3", now=NOW) is not None  # the first node mints tokens ...
    state.put_refresh("r-minted", _refresh("fam-3"))
    second = state.redeem_code("h3", now=NOW)  # ... while the code is presented again
    assert second is not None
    assert second.used
    assert second.family is None  # nothing recorded yet: the second node cannot revoke
    assert state.record_code_result("h3", family="fam-3", jtis=("jti-3",))
    assert state.redeem_refresh("r-minted", now=NOW) is None


def test_refresh_rotation_and_reuse_revokes_the_family(state: FlowState) -> None:
    assert not state.put_refresh("r1", _refresh("fam"))
    grant = state.redeem_refresh("r1", now=NOW)
    assert grant == _refresh("fam")
    assert not state.put_refresh("r2", _refresh("fam"))
    assert state.redeem_refresh("r1", now=NOW) is None  # reuse ...
    assert state.redeem_refresh("r2", now=NOW) is None  # ... revoked the newest too
    # stored after the revocation: dead on arrival, and put_refresh says so
    assert state.put_refresh("r3", _refresh("fam"))
    assert state.redeem_refresh("r3", now=NOW) is None
    assert not state.put_refresh("other", _refresh("fam-b"))
    assert state.redeem_refresh("other", now=NOW) is not None  # other families unaffected


def test_refresh_expiry_and_explicit_family_revocation(state: FlowState) -> None:
    state.put_refresh("old", _refresh("f1", expires=NOW + 10))
    assert state.redeem_refresh("old", now=NOW + 10) is None
    state.put_refresh("live", _refresh("f2"))
    state.revoke_family("f2")
    assert state.redeem_refresh("live", now=NOW) is None
    assert state.redeem_refresh("never-stored", now=NOW) is None


@pytest.mark.parametrize("state", ["sqlite", "postgresql"], indirect=True)
def test_only_hashes_are_stored_and_expired_rows_are_purged(
    state: FlowState, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    tx = _tx(expires=NOW + 600)
    state.put_transaction(tx)
    state.put_code(digest("the-code"), _code(expires=NOW + 60))
    state.put_refresh(digest("the-refresh"), _refresh("fam-p", expires=NOW + 3600))
    state.revoke_family("fam-p")
    rows = _dump(request, tmp_path)
    assert tx.id not in rows
    assert digest(tx.id) in rows
    assert "the-code" not in rows
    assert "the-refresh" not in rows
    later = NOW + 3600 + PURGE_AFTER + 1  # a day after the last of them expired
    state.put_transaction(_tx(expires=later + 600))
    state.put_code("fresh", _code(expires=later + 60))
    assert _counts(request, tmp_path) == {
        "verity_idp_transactions": 1,
        "verity_idp_codes": 1,
        "verity_idp_refresh_tokens": 0,
        "verity_idp_revoked_families": 0,
    }


_TABLES = (
    "verity_idp_transactions",
    "verity_idp_codes",
    "verity_idp_refresh_tokens",
    "verity_idp_revoked_families",
)


def _query(request: pytest.FixtureRequest, tmp_path: Path, sql: str) -> list[tuple[Any, ...]]:
    if request.node.callspec.params["state"] == "sqlite":
        db = SqliteDatabase(tmp_path / "flow.db")
        try:
            return db.query(sql)
        finally:
            db.close()
    import psycopg

    with psycopg.connect(request.getfixturevalue("postgres_dsn")) as conn:
        schema = request.getfixturevalue("pg_schema")
        conn.execute(f'set search_path to "{schema}"')
        return conn.execute(sql.encode()).fetchall()


def _dump(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return repr([_query(request, tmp_path, f"select * from {t}") for t in _TABLES])  # noqa: S608


def _counts(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, int]:
    return {
        t: _query(request, tmp_path, f"select count(*) from {t}")[0][0]  # noqa: S608
        for t in _TABLES
    }


def _race(
    nodes: list[FlowState], action: Callable[[FlowState, int], Any], rounds: int
) -> list[Any]:
    """Run ``action(node, round)`` on every node at once, ``rounds`` times; the results."""
    barrier = threading.Barrier(len(nodes))
    results: list[list[Any]] = [[None] * len(nodes) for _ in range(rounds)]
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            for number in range(rounds):
                barrier.wait(10)
                results[number][index] = action(nodes[index], number)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(nodes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert not errors, errors
    return results


def test_two_nodes_racing_for_one_code_redeem_it_once(state: FlowState, open_state: Opener) -> None:
    nodes = [state, open_state()]
    rounds = 25
    for number in range(rounds):
        state.put_code(f"race-{number}", _code())
    results = _race(nodes, lambda node, n: node.redeem_code(f"race-{n}", now=NOW), rounds)
    for pair in results:
        assert all(grant is not None for grant in pair)
        assert sorted(grant.used for grant in pair) == [False, True], pair  # reuse recorded
    for number in range(rounds):
        again = nodes[number % 2].redeem_code(f"race-{number}", now=NOW)
        assert again is not None
        assert again.used


def test_two_nodes_racing_for_one_refresh_token_rotate_it_once(
    state: FlowState, open_state: Opener
) -> None:
    nodes = [state, open_state()]
    rounds = 25
    for number in range(rounds):
        state.put_refresh(f"tok-{number}", _refresh(f"fam-{number}"))
        state.put_refresh(f"sibling-{number}", _refresh(f"fam-{number}"))
    results = _race(nodes, lambda node, n: node.redeem_refresh(f"tok-{n}", now=NOW), rounds)
    for number, pair in enumerate(results):
        assert sum(grant is not None for grant in pair) == 1, pair
        # the loser presented a used token: the whole family is revoked
        assert nodes[number % 2].redeem_refresh(f"sibling-{number}", now=NOW) is None


def test_revocation_racing_a_rotation_leaves_no_live_token(
    state: FlowState, open_state: Opener
) -> None:
    nodes = [state, open_state()]
    rounds = 25

    def act(node: FlowState, number: int) -> None:
        if node is nodes[0]:
            node.revoke_family(f"fam-{number}")
        else:
            node.put_refresh(f"new-{number}", _refresh(f"fam-{number}"))

    _race(nodes, act, rounds)
    for number in range(rounds):
        assert nodes[number % 2].redeem_refresh(f"new-{number}", now=NOW) is None


def test_peek_reads_without_redeeming_and_family_jtis_are_recorded(state: FlowState) -> None:
    state.put_code("pc", _code())
    assert state.peek_code("pc", now=NOW) == _code()
    assert state.peek_code("pc", now=NOW + 60) is None  # expired
    redeemed = state.redeem_code("pc", now=NOW)
    assert redeemed is not None
    assert not redeemed.used  # the peek did not redeem it
    peeked = state.peek_code("pc", now=NOW)
    assert peeked is not None
    assert peeked.used
    state.put_refresh("pr1", replace(_refresh("fj"), jti="j1"))
    state.put_refresh("pr2", replace(_refresh("fj"), jti="j2"))
    assert state.peek_refresh("pr1", now=NOW) == replace(_refresh("fj"), jti="j1")
    assert state.redeem_refresh("pr1", now=NOW) is not None  # the peek did not use it
    used = state.peek_refresh("pr1", now=NOW)
    assert used is not None
    assert used.used
    assert sorted(state.family_jtis("fj")) == ["j1", "j2"]
    assert state.family_jtis("another-family") == ()
