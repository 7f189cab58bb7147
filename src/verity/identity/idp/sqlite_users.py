"""``SqliteUserStore``: local users in the store's SQLite file (the provider's own
migration track, ``verity.store.sqlite.idp_schema``)."""

from __future__ import annotations

import json
import sqlite3

from ...store._common import current
from ...store.sqlite.db import Row, SqliteDatabase
from ...store.sqlite.idp_schema import MIGRATIONS, migrate
from .errors import UnknownUserError, UserExistsError
from .users import User, new_user, normalize_email

__all__ = ["MIGRATIONS", "SqliteUserStore", "migrate_users"]

_COLUMNS = (
    "id, email, display_name, groups, roles, password_hash, totp_secret, totp_last_step, "
    "disabled, created, updated"
)


def _user(row: Row) -> User:
    return User(
        id=row[0],
        email=row[1],
        display_name=row[2],
        groups=tuple(json.loads(row[3])),
        roles=tuple(json.loads(row[4])),
        password_hash=row[5],
        totp_secret=row[6],
        totp_last_step=int(row[7]),
        disabled=bool(row[8]),
        created=float(row[9]),
        updated=float(row[10]),
    )


def migrate_users(db: SqliteDatabase) -> list[int]:
    """Apply the provider's pending migrations (idempotent); returns the versions applied."""
    return migrate(db)


class SqliteUserStore:
    """``UserStore`` on a ``SqliteDatabase`` (migrated on construction unless told not to)."""

    def __init__(self, db: SqliteDatabase, *, migrate: bool = True) -> None:
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
        try:
            with self._db.write() as conn:
                conn.execute(
                    f"insert into verity_idp_users ({_COLUMNS}) values "  # noqa: S608 - constant
                    "(?, ?, ?, ?, ?, ?, ?, 0, 0, ?, ?)",
                    (
                        user.id,
                        user.email,
                        user.display_name,
                        json.dumps(user.groups),
                        json.dumps(user.roles),
                        password_hash,
                        totp_secret,
                        at,
                        at,
                    ),
                )
        except sqlite3.IntegrityError:
            raise UserExistsError(user.email) from None
        return user

    def _one(self, where: str, value: str) -> User | None:
        sql = f"select {_COLUMNS} from verity_idp_users where {where} = ?"  # noqa: S608
        row = self._db.query_one(sql, (value,))
        return None if row is None else _user(row)

    def get(self, user_id: str) -> User | None:
        """The user with this id, or ``None``."""
        return self._one("id", user_id)

    def by_email(self, email: str) -> User | None:
        """The user with this e-mail address (any case), or ``None``."""
        try:
            return self._one("email", normalize_email(email))
        except ValueError:
            return None

    def list(self) -> list[User]:
        """Every user, by e-mail address."""
        rows = self._db.query(f"select {_COLUMNS} from verity_idp_users order by email")  # noqa: S608
        return [_user(row) for row in rows]

    def _update(self, user_id: str, assignments: str, params: tuple[object, ...]) -> User:
        with self._db.write() as conn:
            cursor = conn.execute(
                f"update verity_idp_users set {assignments} where id = ?",  # noqa: S608
                (*params, user_id),
            )
            if cursor.rowcount != 1:
                raise UnknownUserError(user_id)
        user = self.get(user_id)
        if user is None:
            raise UnknownUserError(user_id)
        return user

    def set_disabled(self, user_id: str, disabled: bool, *, now: float | None = None) -> User:
        """Disable or enable a user; raises ``UnknownUserError``."""
        return self._update(user_id, "disabled = ?, updated = ?", (int(disabled), current(now)))

    def set_password(self, user_id: str, password_hash: str, *, now: float | None = None) -> User:
        """Replace the password hash; raises ``UnknownUserError``."""
        return self._update(
            user_id, "password_hash = ?, updated = ?", (password_hash, current(now))
        )

    def set_totp(self, user_id: str, secret: str | None, *, now: float | None = None) -> User:
        """Set or remove the TOTP secret; resets the replay guard."""
        sql = "totp_secret = ?, totp_last_step = 0, updated = ?"
        return self._update(user_id, sql, (secret, current(now)))

    def use_totp_step(self, user_id: str, step: int) -> bool:
        """Record TOTP step ``step`` if it is later than every step used before."""
        with self._db.write() as conn:
            cursor = conn.execute(
                "update verity_idp_users set totp_last_step = ? "
                "where id = ? and totp_last_step < ?",
                (step, user_id, step),
            )
            return cursor.rowcount == 1
