"""``IdentityProvider``: the provider's state and the login steps behind ``/authorize``.

The HTTP layer (``app.py``) parses requests and renders pages; everything that decides
lives here: start a login transaction, check the password, check the TOTP code, and
issue a single-use authorization code.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from ...audit.builders import authentication_event, session_event
from ...audit.ocsf import EventKind, UserType
from ...audit.schema import UserRef
from ...audit.sink import SecurityEventSink, publish_sync
from ...store.protocols import CounterStore, KeyStore, RevocationStore
from .authorize import add_query, check_request, registered_client
from .config import IdpConfig
from .guard import LoginGuard, account_key
from .keys import SigningKeys
from .passwords import (
    hash_password,
    hashing_slot,
    needs_rehash,
    verify_dummy,
    verify_password,
)
from .state import (
    Authentication,
    CodeGrant,
    FlowState,
    LoginTransaction,
    MemoryFlowState,
    digest,
    new_secret,
)
from .tokens import TokenMinter
from .totp import matching_step
from .users import User, UserStore

Clock = Callable[[], float]
VERIFIER_LEEWAY = 60.0  # relying parties' clock leeway, added to key retirement

INVALID_CREDENTIALS = "Invalid e-mail address or password."
INVALID_CODE = "Invalid or already used code."
LOCKED_OUT = "Too many failed attempts. Try again later."
EXPIRED = "This login has expired or is invalid. Please start again from the application."


@dataclass(frozen=True, slots=True)
class LoginStep:
    """What the login form shows next: a redirect, the TOTP form, or an error."""

    redirect: str | None = None
    need_otp: bool = False
    error: str | None = None
    status: int = 200


class CsrfError(Exception):
    """The form's CSRF token or the browser binding cookie did not match."""


class IdentityProvider:
    """The embedded OIDC provider's logic (thread-safe)."""

    def __init__(
        self,
        config: IdpConfig,
        *,
        users: UserStore,
        keys: KeyStore,
        counters: CounterStore,
        state: FlowState | None = None,
        revocations: RevocationStore | None = None,
        clock: Clock = time.time,
        events: SecurityEventSink | None = None,
    ) -> None:
        """Wire the provider to its stores; ``revocations`` receives revoked token ids;
        ``events`` records MFA failures and lockouts (audit log)."""
        self.config = config
        self.events = events
        self.users = users
        self.state: FlowState = state if state is not None else MemoryFlowState()
        self.revocations = revocations
        self.clock = clock
        self.guard = LoginGuard(counters, policy=config.lockout)
        lifetimes = config.lifetimes
        retire = max(lifetimes.access_token, lifetimes.id_token) + VERIFIER_LEEWAY
        self.keys = SigningKeys(keys, policy=config.keys, retire_after=retire, clock=clock)
        self.minter = TokenMinter(config, self.keys)

    def start(
        self, untrusted: Mapping[str, str], *, browser: str | None = None
    ) -> LoginTransaction:
        """Validate an authorization request and open a login transaction bound to the
        browser cookie value ``browser`` (a new one if ``None``).

        Raises ``OAuthError`` (show a page) or ``RedirectableError`` (redirect)."""
        client, redirect_uri = registered_client(self.config, untrusted)
        scope, challenge, state, nonce = check_request(client, redirect_uri, untrusted)
        tx = LoginTransaction(
            id=new_secret(),
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            state=state,
            nonce=nonce,
            code_challenge=challenge,
            scope=scope,
            csrf=new_secret(),
            browser=browser or new_secret(),
            expires=self.clock() + self.config.lifetimes.login_transaction,
        )
        self.state.put_transaction(tx)
        return tx

    def transaction(self, tx_id: str, *, csrf: str, browser: str) -> LoginTransaction | None:
        """The live transaction whose CSRF token and browser cookie both match.

        ``None`` if it expired or never existed; ``CsrfError`` if a token mismatches."""
        tx = self.state.get_transaction(tx_id, now=self.clock())
        if tx is None:
            return None
        csrf_ok = hmac.compare_digest(csrf.encode(), tx.csrf.encode())
        browser_ok = hmac.compare_digest(browser.encode(), tx.browser.encode())
        if not (csrf_ok and browser_ok):
            raise CsrfError
        return tx

    def password_step(
        self, tx: LoginTransaction, *, email: str, password: str, ip: str
    ) -> LoginStep:
        """Check the e-mail address and password: an attempt is reserved on the account
        first (refused unchecked when locked out), then the password is verified.

        A password-hashing slot is taken, and the account looked up, before anything is
        counted: when every slot stays busy (``PasswordHashingBusyError``) or the users'
        store is down (``StoreUnavailableError``), the 503 has used no attempt."""
        with hashing_slot():
            now = self.clock()
            user = self.users.by_email(email)
            if not self.guard.reserve(email, ip, now=now):
                self._locked_out(UserRef(uid=f"account:{account_key(email)}"), ip)
                return LoginStep(error=LOCKED_OUT, status=429)
            if user is None or user.disabled:
                if user is None:
                    verify_dummy(password)
                else:  # same cost as a real check; a disabled account never logs in
                    verify_password(user.password_hash, password)
                self.guard.failed(email, ip, reason="unknown or disabled account", now=now)
                who = _ref(user) if user else UserRef(uid=f"account:{account_key(email)}")
                self._bad_password(who, ip, "unknown_account" if user is None else "disabled")
                return LoginStep(error=INVALID_CREDENTIALS, status=401)
            if not verify_password(user.password_hash, password):
                self.guard.failed(email, ip, reason="password", now=now)
                self._bad_password(_ref(user), ip, "bad_password")
                return LoginStep(error=INVALID_CREDENTIALS, status=401)
            if needs_rehash(user.password_hash):
                self.users.set_password(user.id, hash_password(password), now=now)
        if user.mfa:
            self.state.put_transaction(replace(tx, pending_user=user.id))
            return LoginStep(need_otp=True)
        return self._complete(tx, user, amr=("pwd",), ip=ip, now=now)

    def otp_step(self, tx: LoginTransaction, *, code: str, ip: str) -> LoginStep:
        """Check the TOTP code of the user whose password was accepted (each code once)."""
        now = self.clock()
        user = self.users.get(tx.pending_user) if tx.pending_user else None
        if user is None or user.disabled or user.totp_secret is None:
            self.state.drop_transaction(tx.id)
            return LoginStep(error=EXPIRED, status=400)
        if not self.guard.reserve(user.email, ip, now=now):
            self.state.drop_transaction(tx.id)
            self._locked_out(_ref(user), ip)
            return LoginStep(error=LOCKED_OUT, status=429)
        step = matching_step(user.totp_secret, code, now=now)
        if step is None or not self.users.use_totp_step(user.id, step):
            self.guard.failed(user.email, ip, reason="otp", now=now)
            event = session_event(EventKind.MFA_FAILURE, user=_ref(user), src_ip=ip)
            publish_sync(self.events, event, name="idp.mfa_failed", level="warning")
            return LoginStep(need_otp=True, error=INVALID_CODE, status=401)
        return self._complete(tx, user, amr=("pwd", "otp", "mfa"), ip=ip, now=now)

    def throttle(self, ip: str, *, email: str = "", user_id: str | None = None) -> float:
        """Seconds to wait before checking an attempt from ``ip`` (0 unless the IP has
        reached ``lockout.max_ip_failures``); the caller waits without holding a thread.
        A wait is recorded (audit ``throttled``) for the account typed (``email``) or the
        user whose TOTP code is awaited (``user_id``)."""
        wait = self.guard.delay(ip, now=self.clock())
        if wait > 0:
            uid = user_id if user_id is not None else f"account:{account_key(email)}"
            event = authentication_event(
                UserRef(uid=uid), success=False, src_ip=ip, status_detail="throttled",
                message=f"login attempt delayed {wait:.1f}s: too many failures from {ip}",
            )  # fmt: skip
            publish_sync(self.events, event, name="idp.throttled", level="warning")
        return wait

    def _bad_password(self, who: UserRef, ip: str, detail: str) -> None:
        """A failed password sign-in as a security event: who (an unknown account only as
        its keyed hash, never the text typed, which may be a password), from where, why;
        never the password."""
        event = authentication_event(
            who, success=False, src_ip=ip, status_detail=detail,
            message=f"password sign-in failed ({detail}): {who.uid}",
        )  # fmt: skip
        publish_sync(self.events, event, name="idp.login_failed", level="warning")

    def _locked_out(self, who: UserRef, ip: str) -> None:
        event = authentication_event(
            who, success=False, src_ip=ip, status_detail="locked_out",
            message=f"login refused, locked out: {who.uid}",
        )  # fmt: skip
        publish_sync(self.events, event, name="idp.locked_out", level="warning")

    def _complete(
        self, tx: LoginTransaction, user: User, *, amr: tuple[str, ...], ip: str, now: float
    ) -> LoginStep:
        self.guard.succeeded(user.email, ip)
        self.state.drop_transaction(tx.id)
        code = new_secret()
        grant = CodeGrant(
            client_id=tx.client_id,
            redirect_uri=tx.redirect_uri,
            code_challenge=tx.code_challenge,
            nonce=tx.nonce,
            scope=tx.scope,
            auth=Authentication(user.id, amr, now),
            expires=now + self.config.lifetimes.authorization_code,
        )
        self.state.put_code(digest(code), grant)
        params = {"code": code}
        if tx.state is not None:
            params["state"] = tx.state
        params["iss"] = self.config.issuer
        return LoginStep(redirect=add_query(tx.redirect_uri, params), status=303)


def _ref(user: User) -> UserRef:
    """The audit identity of a local user (no password hash, no TOTP secret)."""
    kind = UserType.UNKNOWN if user.disabled else UserType.USER
    return UserRef(uid=user.id, email=user.email, type=kind)
