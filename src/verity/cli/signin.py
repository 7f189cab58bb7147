"""Browser sign-in for ``verity serve``: the embedded identity provider and the OIDC
relying party, built from ``identity.idp`` and ``login`` and mounted on the gateway.

    identity.idp  -> the embedded OIDC provider, served under its issuer's path (/idp);
                     users and login state in store.url (SQLite or PostgreSQL)
    login         -> /verity/login, /callback, /logout, /backchannel-logout, and session
                     cookies that authenticate browsers (unauthenticated ones are sent to
                     the login page)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp

from ..audit.sink import SecurityEventSink
from ..config import VerityConfig
from ..errors import ConfigError, Problem
from ..identity.idp import IdentityProvider, create_app, open_idp_storage
from ..identity.idp.passwords import limit_password_hashing
from ..identity.oidc import LoginService, build_login_app
from ..store import Stores

log = logging.getLogger("verity.identity.idp")
LOGIN_ROUTES = ("login", "callback", "logout", "backchannel-logout")


@dataclass
class SignIn:
    """What sign-in adds to a gateway; ``close()`` releases it."""

    login: LoginService | None = None
    mounts: list[tuple[str, ASGIApp]] = field(default_factory=list)
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for close in reversed(self.closers):
            close()
        self.closers.clear()


def build_signin(
    config: VerityConfig,
    stores: Stores,
    *,
    events: SecurityEventSink | None = None,
    schema: str | None = None,
) -> SignIn:
    """The embedded IdP and browser login configured in ``config`` (either may be off);
    ``events`` (e.g. an ``AuditSink``) records logins, logouts, MFA failures, lockouts.

    The IdP keeps users and flow state in ``store.url``'s database (SQLite: one host;
    PostgreSQL: shared by every node; ``schema`` as given to ``open_stores``), and keys
    and lockout counters in ``stores`` (counters in Redis when it is configured)."""
    signin = SignIn()
    try:
        _add_idp(signin, config, stores, events=events, schema=schema)
        if config.login.providers:
            service = LoginService.from_stores(config.login, stores, events=events)
            signin.closers.append(service.close)
            app = build_login_app(service)
            routes = ((f"{config.login.path_prefix}/{leaf}", app) for leaf in LOGIN_ROUTES)
            signin.mounts.extend(routes)
            signin.login = service
    except BaseException:
        signin.close()
        raise
    return signin


def _add_idp(
    signin: SignIn,
    config: VerityConfig,
    stores: Stores,
    *,
    events: SecurityEventSink | None,
    schema: str | None,
) -> None:
    idp = config.identity.idp
    if idp is None:
        return
    prefix = urlsplit(idp.issuer).path.rstrip("/")
    if not prefix:
        problem = "the embedded IdP needs an issuer with a path (e.g. .../idp)"
        raise ConfigError("verity.yaml", [Problem("identity.idp.issuer", problem)])
    hashing = idp.password_hashing  # bounded memory: at most this many argon2 at once
    limit_password_hashing(hashing.max_concurrent, wait_seconds=hashing.wait_seconds)
    storage = open_idp_storage(config.store.url, schema=schema)
    signin.closers.append(storage.close)
    provider = IdentityProvider(
        idp, users=storage.users, state=storage.state, keys=stores.keys,
        counters=stores.counters, revocations=stores.revocations, events=events,
    )  # fmt: skip
    signin.mounts.append((prefix, Starlette(routes=[Mount(prefix, app=create_app(provider))])))
    for login in config.login.providers:  # the IdP releases claims by scope only
        missing = [s for s in ("groups", "roles") if s not in login.scopes]
        if login.issuer == idp.issuer and missing:
            log.warning(
                "login provider %r does not request the embedded IdP's scopes %s: its "
                "sessions carry no %s (add them to login.providers[].scopes)",
                login.name, missing, " or ".join(missing),
            )  # fmt: skip
