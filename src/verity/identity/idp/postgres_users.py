"""``PostgresUserStore``: local users in the store's PostgreSQL database, shared by every
node (the provider's own migration track, ``verity.store.postgres.idp_schema``).

E-mail addresses are unique by a unique index on ``lower(email)``; a TOTP step is
recorded by one conditional ``UPDATE``, so two nodes cannot both accept the same step.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from ...store._common import current
from ...store.postgres.db import PostgresDatabase
from ...store.postgres.idp_schema import migrate as migrate_users
from .errors import UnknownUserError, UserExistsError
from .users import User, new_user, normalize_email

_COLUMNS = (
    "id, email, display_name, groups, roles, password_hash, totp_secret, totp_last_step, "
    "disabled, created, updated"
)
_SELECT = f"select {_COLUMNS} from verity_idp_users"  # noqa: S608 - constant


def _user(row: tuple[Any, ...]) -> User:
    return User(
        id=row[0],
        email=row[1],
        display_name=row[2],
        groups=tuple(row[3]),
        roles=tuple(row[4]),
        password_hash=row[5],
        totp_secret=row[6],
        totp_last_step=int(row[7]),
        disabled=bool(row[8]),
        created=float(row[9]),
        updated=float(row[10]),
    )


class PostgresUserStore:
    """``UserStore`` on a ``PostgresDatabase`` (migrated on construction unless told not to)."""

    def __init__(self, db: PostgresDatabase, *, migrate: bool = True) -> None:
        self._db = db
        if migrate:
            migrate_users(db)

    def add(
        self,
        email: str,
        *,
        password_hash: str,
        display_name: str = "",
        groups: tuple[str, ...] = (),
        roles: tuple[str, ...] = (),
        totp_secret: str | None = None,
        now: float | None = None,
    ) -> User:
        """Create a user; raises ``UserExistsError`` if the e-mail address is taken."""
        user = new_user(
            email, password_hash=password_hash, display_name=display_name, groups=groups,
            roles=roles, totp_secret=totp_secret, now=now,
        )  # fmt: skip
        at = user.created
        values = (
            user.id, user.email, user.display_name, list(user.groups), list(user.roles),
            password_hash, totp_secret, at, at,
        )  # fmt: skip
        try:
            with self._db.connection() as conn:
                conn.execute(
                    f"insert into verity_idp_users ({_COLUMNS}) values "  # noqa: S608 - constant
                    "(%s, %s, %s, %s, %s, %s, %s, 0, false, %s, %s)",
                    values,
                )
        except psycopg.errors.UniqueViolation:
            raise UserExistsError(user.email) from None
        return user

    def _one(self, where: str, value: str) -> User | None:
        query = sql.SQL(_SELECT + " where {} = %s").format(sql.SQL(where))
        with self._db.connection() as conn:
            row = conn.execute(query, (value,)).fetchone()
        return None if row is None else _user(row)

    def get(self, user_id: str) -> User | None:
        """The user with this id, or ``None``."""
        return self._one("id", user_id)

    def by_email(self, email: str) -> User | None:
        """The user with this e-mail address (any case), or ``None``."""
        try:
            return self._one("lower(email)", normalize_email(email))
        except ValueError:
            return None

    def list(self) -> list[User]:
        """Every user, by e-mail address."""
        with self._db.connection() as conn:
            rows = conn.execute(_SELECT + " order by email").fetchall()
        return [_user(row) for row in rows]

    def _update(self, user_id: str, assignments: str, params: tuple[object, ...]) -> User:
        query = sql.SQL("update verity_idp_users set {} where id = %s returning {}").format(
            sql.SQL(assignments), sql.SQL(_COLUMNS)
        )
        with self._db.connection() as conn:
            row = conn.execute(query, (*params, user_id)).fetchone()
        if row is None:
            raise UnknownUserError(user_id)
        return _user(row)

    def set_disabled(self, user_id: str, disabled: bool, *, now: float | None = None) -> User:
        """Disable or enable a user; raises ``UnknownUserError``."""
        return self._update(user_id, "disabled = %s, updated = %s", (disabled, current(now)))

    def set_password(self, user_id: str, password_hash: str, *, now: float | None = None) -> User:
        """Replace the password hash; raises ``UnknownUserError``."""
        return self._update(
            user_id, "password_hash = %s, updated = %s", (password_hash, current(now))
        )

    def set_totp(self, user_id: str, secret: str | None, *, now: float | None = None) -> User:
        """Set or remove the TOTP secret; resets the replay guard."""
        assignments = "totp_secret = %s, totp_last_step = 0, updated = %s"
        return self._update(user_id, assignments, (secret, current(now)))

    def use_totp_step(self, user_id: str, step: int) -> bool:
        """Record TOTP step ``step`` if it is later than every step used before (one
        conditional ``UPDATE``: of two nodes racing for the same step, one wins)."""
        with self._db.connection() as conn:
            cursor = conn.execute(
                "update verity_idp_users set totp_last_step = %s "
                "where id = %s and totp_last_step < %s",
                (step, user_id, step),
            )
            return cursor.rowcount == 1


__all__ = ["PostgresUserStore", "migrate_users"]
