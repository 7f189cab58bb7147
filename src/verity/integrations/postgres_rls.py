"""PostgreSQL row-level security driven by Verity's verified principal.

``rls_transaction(conn, principal, key=...)`` opens a transaction in which PostgreSQL
knows who is asking: it sets, transaction-locally (``set_config(..., true)``),

- ``verity.user_id``: the principal's id,
- ``verity.roles``: its roles as a PostgreSQL ``text[]`` literal,
- ``verity.signature``: HMAC-SHA256 over both and this transaction's identity
  (backend pid and start time), with a key only the table owner can read.

Row-level security policies read the identity through ``verity_user_id()`` and
``verity_has_role()`` (``examples/rls/schema.sql``), which return it only if the
signature verifies. SQL run by the application - an injected ``set_config`` or ``SET``
included - cannot forge an identity, nor replay one in another transaction; and because
every setting is transaction-local, nothing leaks to the next user of a pooled
connection.

Session state is another matter: a temporary view or table that injected SQL leaves on
a pooled connection (``create temp view notes ...``) would shadow the real table for the
next user's unqualified ``select ... from notes`` and run under *her* identity. So every
transaction starts with ``DISCARD TEMP`` (no temporary object survives into a signed
transaction), and ``reset_connection`` (``DISCARD ALL``) is the pool's ``reset``
callback that wipes everything else a connection carries between users.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from ..errors import VerityError
from ..model import Principal

MIN_KEY_BYTES = 32
_BLOCK = 64  # SHA-256 block size (RFC 2104)

_PREPARE = (
    "select %s::text[]::text, pg_backend_pid()::text || '.' || "
    "(extract(epoch from transaction_timestamp()) * 1000000)::bigint::text"
)
_SET = (
    "select set_config('verity.user_id', %s, true), set_config('verity.roles', %s, true), "
    "set_config('verity.signature', %s, true)"
)
_DISCARD_TEMP = "discard temp"  # allowed in a transaction, unlike DISCARD ALL
_DISCARD_ALL = "discard all"
_INSTALL = (
    "insert into verity_rls_key (id, inner_pad, outer_pad) values (1, %s, %s) "
    "on conflict (id) do update set inner_pad = excluded.inner_pad, "
    "outer_pad = excluded.outer_pad"
)


class RlsIdentityError(VerityError):
    """An identity cannot be set: no authenticated principal, or a transaction is open."""


def _check_key(key: bytes) -> bytes:
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the RLS signing key needs at least {MIN_KEY_BYTES} bytes")
    return key


def key_pads(key: bytes) -> tuple[bytes, bytes]:
    """The HMAC-SHA256 inner and outer padded keys of ``key`` (what the database stores)."""
    block = _check_key(key)
    if len(block) > _BLOCK:
        block = hashlib.sha256(block).digest()
    block = block.ljust(_BLOCK, b"\0")
    return bytes(b ^ 0x36 for b in block), bytes(b ^ 0x5C for b in block)


def install_key(conn: psycopg.Connection[Any], key: bytes) -> None:
    """Store the verifier for ``key`` in ``verity_rls_key`` (run as the table owner)."""
    inner, outer = key_pads(key)
    with conn.transaction():
        conn.execute(_INSTALL, (inner, outer))


def _identity(principal: Principal) -> tuple[str, list[str]]:
    if not principal.authenticated or not principal.id:
        raise RlsIdentityError("row-level security needs an authenticated principal")
    return principal.id, sorted(principal.roles)


def _check_idle(status: TransactionStatus) -> None:
    if status is not TransactionStatus.IDLE:
        raise RlsIdentityError(
            "the connection is inside a transaction: the identity would outlive the block"
        )


def sign(key: bytes, user_id: str, roles_text: str, transaction: str) -> str:
    """The signature the database's ``verity_identity_verified()`` recomputes (hex)."""
    message = b"\0".join((user_id.encode(), roles_text.encode(), transaction.encode()))
    return hmac.new(_check_key(key), message, hashlib.sha256).hexdigest()


@contextmanager
def rls_transaction(
    conn: psycopg.Connection[Any], principal: Principal, *, key: bytes
) -> Iterator[psycopg.Connection[Any]]:
    """A transaction on ``conn`` in which row-level security sees ``principal``.

    The connection must be idle (not inside a transaction). The transaction commits
    when the block ends and rolls back on an exception; either way the identity is gone.
    """
    _check_idle(conn.info.transaction_status)
    user_id, roles = _identity(principal)
    _check_key(key)
    with conn.transaction():
        conn.execute(_DISCARD_TEMP)  # first: no leftover temporary object may shadow a table
        row = conn.execute(_PREPARE, (roles,)).fetchone()
        if row is None:  # pragma: no cover - a select without FROM returns one row
            raise RlsIdentityError("could not read the transaction identity")
        roles_text, transaction = row
        conn.execute(_SET, (user_id, roles_text, sign(key, user_id, roles_text, transaction)))
        yield conn


@asynccontextmanager
async def async_rls_transaction(
    conn: psycopg.AsyncConnection[Any], principal: Principal, *, key: bytes
) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """:func:`rls_transaction` for ``psycopg.AsyncConnection``."""
    _check_idle(conn.info.transaction_status)
    user_id, roles = _identity(principal)
    _check_key(key)
    async with conn.transaction():
        await conn.execute(_DISCARD_TEMP)
        cursor = await conn.execute(_PREPARE, (roles,))
        row = await cursor.fetchone()
        if row is None:  # pragma: no cover - a select without FROM returns one row
            raise RlsIdentityError("could not read the transaction identity")
        roles_text, transaction = row
        signature = sign(key, user_id, roles_text, transaction)
        await conn.execute(_SET, (user_id, roles_text, signature))
        yield conn


def reset_connection(conn: psycopg.Connection[Any]) -> None:
    """``DISCARD ALL`` on an idle connection: the ``reset`` callback of a connection pool.

    ``ConnectionPool(url, reset=reset_connection)`` returns every connection to the pool
    without the temporary objects, session settings (``SET search_path``...), prepared
    statements, advisory locks and ``LISTEN``s that the last user's SQL left on it.
    """
    _check_idle(conn.info.transaction_status)
    autocommit = conn.autocommit
    conn.autocommit = True  # DISCARD ALL cannot run inside a transaction block
    try:
        conn.execute(_DISCARD_ALL)
    finally:
        conn.autocommit = autocommit


async def async_reset_connection(conn: psycopg.AsyncConnection[Any]) -> None:
    """:func:`reset_connection` for ``psycopg_pool.AsyncConnectionPool``."""
    _check_idle(conn.info.transaction_status)
    autocommit = conn.autocommit
    await conn.set_autocommit(True)
    try:
        await conn.execute(_DISCARD_ALL)
    finally:
        await conn.set_autocommit(autocommit)


__all__ = [
    "MIN_KEY_BYTES",
    "RlsIdentityError",
    "async_reset_connection",
    "async_rls_transaction",
    "install_key",
    "key_pads",
    "reset_connection",
    "rls_transaction",
    "sign",
]
