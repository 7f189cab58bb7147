"""``LoginService``: the relying party the gateway uses (login, callback, logout,
back-channel logout, and the per-request ``authenticate_cookie``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx

from ...audit.builders import session_event, user_ref
from ...audit.ocsf import EventKind, UserType
from ...audit.schema import UserRef
from ...audit.sink import SecurityEventSink, publish
from ...model import Principal
from ...store import CounterStore, KeyStore, RevocationStore, SessionStore, Stores
from ..config import is_loopback_host
from ..notices import NOTICES
from .backchannel import unverified_issuer, verify_logout_token
from .config import LoginConfig
from .cookies import cookie_values, signer_from_store
from .errors import (
    LoginStateError,
    LogoutForgeryError,
    LogoutTokenError,
    ProviderError,
    UnknownProviderError,
)
from .provider import Provider, random_token
from .refresh import Refresher, principal_for
from .sessions import SessionManager

log = logging.getLogger("verity.identity.oidc")
LOGOUT_PURPOSE = "logout-csrf"
Headers = Sequence[tuple[bytes, bytes]] | Mapping[str, str]


def _header_values(headers: Headers, name: str) -> list[str]:
    if isinstance(headers, Mapping):
        value = headers.get(name)
        return [value] if value is not None else []
    wanted = name.encode()
    return [v.decode("latin-1") for k, v in headers if k.lower() == wanted]


class LoginService:
    """Browser login through the configured OpenID Providers, with server-side sessions."""

    def __init__(
        self,
        config: LoginConfig,
        *,
        sessions: SessionStore,
        counters: CounterStore,
        keys: KeyStore,
        revocations: RevocationStore | None = None,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
        events: SecurityEventSink | None = None,
    ) -> None:
        """Stores come from ``verity.store.open_stores``; ``transport`` is for tests;
        ``events`` records logins, logouts and back-channel logouts (audit log)."""
        self.config = config
        self.events = events
        configured = config.cookie_key.get_secret_value().encode() if config.cookie_key else None
        signer = signer_from_store(keys, configured=configured)
        self.sessions = SessionManager(
            store=sessions, signer=signer, config=config, revocations=revocations, clock=clock
        )
        self.providers = {
            p.name: Provider(p, clock=clock, transport=transport) for p in config.providers
        }
        self.counters = counters
        self.refresher = Refresher(
            self.sessions,
            self.providers,
            counters=counters,
            margin=config.refresh_margin_seconds,
            clock=clock,
        )
        self._clock = clock

    @classmethod
    def from_stores(cls, config: LoginConfig, stores: Stores, **options: Any) -> LoginService:
        """A service on the node's ``Stores``."""
        return cls(
            config,
            sessions=stores.sessions,
            counters=stores.counters,
            keys=stores.keys,
            revocations=stores.revocations,
            **options,
        )

    def close(self) -> None:
        """Stop the revocation subscription."""
        self.sessions.close()

    # -- URLs and cookies -----------------------------------------------------------------
    def base_url(self, request_base: str) -> str:
        """The gateway's external base URL: ``public_url``, else the request's origin."""
        return self.config.public_url or request_base.rstrip("/")

    def secure(self, base: str) -> bool:
        """Cookies are ``Secure`` unless the gateway is reached on a loopback host."""
        return not is_loopback_host(urlsplit(base).hostname)

    def cookie_name(self, base: str, *, login: bool = False) -> str:
        """``__Host-`` prefixed when Secure (no Domain, Path=/: no cookie tossing)."""
        name = self.config.cookie_name + ("_login" if login else "")
        return "__Host-" + name if self.secure(base) else name

    @property
    def hidden_cookies(self) -> frozenset[str]:
        """Every name the session and login cookies can have: never sent upstream."""
        name = self.config.cookie_name
        return frozenset(
            f"{prefix}{name}{suffix}" for prefix in ("", "__Host-") for suffix in ("", "_login")
        )

    def login_url(
        self,
        return_url: str,
        *,
        provider: str | None = None,
        issuers: Sequence[str] = (),
        notice: str | None = None,
    ) -> str:
        """Where the gateway sends an unauthenticated browser (a relative URL). With a
        route's ``issuers`` and exactly one provider among them, straight to that one;
        ``notice`` (``NOTICES``) is why, said on the sign-in form."""
        if provider is None and issuers:
            accepted = [p.name for p in self.config.providers if p.issuer in issuers]
            provider = accepted[0] if len(accepted) == 1 else None
        query = {"rd": return_url} | ({"provider": provider} if provider else {})
        if notice in NOTICES:
            query["notice"] = notice
        return f"{self.config.path_prefix}/login?{urlencode(query, quote_via=quote)}"

    @property
    def logout_url(self) -> str:
        """The sign-out confirmation page (a relative URL)."""
        return f"{self.config.path_prefix}/logout"

    def allowed_hosts(self, base: str) -> tuple[str, ...]:
        """Hosts a login may return to: the configured ones and the gateway's own."""
        own = urlsplit(base).hostname
        return (*self.config.allowed_redirect_hosts, *((own.lower(),) if own else ()))

    def provider(self, name: str | None) -> Provider:
        """The provider called ``name``; raises ``UnknownProviderError``."""
        found = self.providers.get(name or "")
        if found is None:
            raise UnknownProviderError("no such provider")
        return found

    # -- login ----------------------------------------------------------------------------
    async def start_login(self, *, provider: str, return_url: str, base: str) -> tuple[str, str]:
        """Begin a login: (authorization URL, signed login-transaction cookie value).

        ``return_url`` must already be checked with ``safe_return_url``.
        """
        chosen = self.provider(provider)
        metadata = await chosen.metadata()
        redirect_uri = f"{base}{self.config.path_prefix}/callback"
        state, nonce, verifier = random_token(), random_token(), random_token(48)
        cookie = self.sessions.begin(
            provider=chosen.name,
            state=state,
            nonce=nonce,
            verifier=verifier,
            return_url=return_url,
            redirect_uri=redirect_uri,
        )
        url = chosen.authorization_url(
            metadata, redirect_uri=redirect_uri, state=state, nonce=nonce, verifier=verifier
        )
        return url, cookie

    async def complete_login(
        self,
        *,
        login_cookie: str | None,
        untrusted_state: str | None,
        untrusted_code: str | None,
        untrusted_error: str | None = None,
        previous_session: str | None = None,
        client_ip: str | None = None,
    ) -> tuple[str, str]:
        """Finish a login at the callback: (new session cookie value, return URL).

        The transaction is used up first, whatever happens next; a session the browser
        had before is revoked, and the new one always has a new id (no fixation). A
        success is one security event (the login routes record failures).
        """
        tx = self.sessions.finish(login_cookie, untrusted_state)
        if untrusted_error is not None:
            raise ProviderError("the provider answered the authorization request with an error")
        if not untrusted_code:
            raise LoginStateError("no authorization code")
        provider = self.provider(tx["provider"])
        tokens = await provider.exchange_code(
            code=untrusted_code, redirect_uri=tx["redirect_uri"], verifier=tx["verifier"]
        )
        if tokens.id_token is None:
            raise ProviderError("the token response has no id_token")
        token = await provider.verify_id_token(
            tokens.id_token, nonce=tx["nonce"], access_token=tokens.access_token
        )
        principal = principal_for(provider, token)
        old = self.sessions.lookup(previous_session)
        if old is not None:
            self.sessions.revoke(old[0], reason="replaced by a new login")
        sid = token.claims.get("sid")
        data = {
            "provider": provider.name,
            "iss": token.issuer,
            "sub": token.subject,
            "sid": sid if isinstance(sid, str) else None,
            **self.refresher.token_data(provider, token, tokens, previous_refresh=None),
        }
        cookie, record = self.sessions.create(principal, data)
        event = session_event(
            EventKind.LOGIN, user=user_ref(principal), session_id=record.id, src_ip=client_ip,
            detail={"provider": provider.name, "mfa": principal.mfa},
        )  # fmt: skip
        await publish(self.events, event, name="login.succeeded")
        return cookie, tx["return_url"]

    # -- per request ----------------------------------------------------------------------
    def session_cookie(self, request_headers: Headers) -> str | None:
        """The session cookie value, if exactly one is present under the expected name."""
        host = (_header_values(request_headers, "host") or [""])[0]
        base = self.base_url(f"http://{host}")
        values = cookie_values(_header_values(request_headers, "cookie"), self.cookie_name(base))
        return values[0] if len(values) == 1 else None

    async def authenticate_cookie(self, request_headers: Headers) -> Principal | None:
        """The principal of the request's session cookie, or ``None`` (log in again).

        One store read per session every ``cache_seconds`` at most; revocations evict
        the cache at once. Tokens due for refresh are refreshed here.
        """
        found = self.sessions.lookup(self.session_cookie(request_headers))
        if found is None:
            return None
        record, principal = found
        refresh_at = record.data.get("refresh_at")
        if isinstance(refresh_at, int | float) and self._clock() >= refresh_at:
            return await self.refresher.refresh(record, principal)
        return principal

    # -- logout ---------------------------------------------------------------------------
    def logout_token(self, session_cookie: str | None) -> str | None:
        """The CSRF token of the sign-out form of this session (``None``: no session): the
        session id, MACed with the cookie key for this purpose only."""
        found = self.sessions.lookup(session_cookie)
        return None if found is None else self.sessions.signer.sign(LOGOUT_PURPOSE, found[0].id)

    async def logout(
        self,
        *,
        session_cookie: str | None,
        untrusted_csrf: str | None,
        base: str,
        client_ip: str | None = None,
    ) -> str:
        """End the session; returns where to send the browser (the IdP's end-session
        endpoint with ``id_token_hint`` and ``post_logout_redirect_uri`` when it has one).

        ``untrusted_csrf`` must be this session's ``logout_token``; otherwise
        ``LogoutForgeryError`` and the session stays (no sign-out by a foreign page)."""
        found = self.sessions.lookup(session_cookie)
        after = self.config.post_logout_path
        if found is None:
            return after
        record, principal = found
        if self.sessions.signer.unsign(LOGOUT_PURPOSE, untrusted_csrf) != record.id:
            raise LogoutForgeryError("logout without this session's CSRF token")
        self.sessions.revoke(record, reason="logout")
        event = session_event(
            EventKind.LOGOUT, user=user_ref(principal), session_id=record.id, src_ip=client_ip
        )
        await publish(self.events, event, name="logout")
        provider = self.providers.get(str(record.data.get("provider")))
        try:
            metadata = await provider.metadata() if provider is not None else None
        except ProviderError:
            return after
        if provider is None or metadata is None or metadata.end_session_endpoint is None:
            return after
        params = {"post_logout_redirect_uri": base + after, "client_id": provider.config.client_id}
        hint = record.data.get("id_token")
        if isinstance(hint, str):
            params["id_token_hint"] = hint
        params["state"] = random_token(16)
        separator = "&" if "?" in metadata.end_session_endpoint else "?"
        return metadata.end_session_endpoint + separator + urlencode(params)

    async def backchannel_logout(self, untrusted_token: str) -> int:
        """Verify a logout token and revoke the sessions it names; returns how many."""
        issuer = unverified_issuer(untrusted_token)
        candidates = [p for p in self.providers.values() if p.config.issuer == issuer]
        if not candidates:
            raise LogoutTokenError("logout token from an unknown issuer")
        error: LogoutTokenError | None = None
        for provider in candidates:
            try:
                request = await verify_logout_token(
                    provider,
                    untrusted_token,
                    counters=self.counters,
                    max_age=self.config.logout_token_max_age_seconds,
                    now=self._clock(),
                )
            except LogoutTokenError as exc:
                error = exc
                continue
            count = self.sessions.revoke_matching(
                issuer=request.issuer, sub=request.sub, sid=request.sid
            )
            event = session_event(
                EventKind.SESSION_REVOKED, user=UserRef(uid=request.sub or "unknown"),
                actor=UserRef(uid=provider.name, name=request.issuer, type=UserType.SYSTEM),
                message=f"back-channel logout from {provider.name}: {count} session(s) revoked",
                detail={"revoked": count, "by_sid": request.sid is not None, "reason": "logout"},
            )  # fmt: skip
            await publish(self.events, event, name="session.revoked")
            return count
        raise error or LogoutTokenError("logout token rejected")
