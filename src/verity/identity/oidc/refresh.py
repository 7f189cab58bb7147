"""Keeping a session's tokens fresh: the refresh token stays server-side and is used
shortly before the tokens expire (``refresh_margin_seconds``).

One node refreshes a session at a time (an atomic counter acts as a 30-second lease).
The provider refusing the refresh (``invalid_grant``: the user was logged out or
disabled there) revokes the session; an unreachable provider keeps it only until the
tokens it issued expire.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from ...model import Principal
from ...store import CounterStore, SessionRecord
from ..core import VerifiedToken
from ..errors import TokenError
from .discovery import TokenResponse
from .errors import IdTokenError, LoginError, ProviderError
from .idtoken import check_refreshed
from .provider import Provider
from .sessions import SessionManager, principal_data

log = logging.getLogger("verity.identity.oidc")
LEASE_SECONDS = 30.0
_DROPPED_CLAIMS = ("nonce", "at_hash", "c_hash")
_TRANSIENT = (None, "temporarily_unavailable", "server_error", "unknown")


def _thaw(value: Any) -> Any:
    """Read-only claims (mapping proxies, tuples) as plain JSON values."""
    if isinstance(value, Mapping):
        return {str(k): _thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_thaw(v) for v in value]
    return value


def principal_for(provider: Provider, token: VerifiedToken) -> Principal:
    """The principal of a verified ID token, per the provider's claim mapping."""
    try:
        return provider.id_tokens.principal(token)
    except TokenError as exc:
        raise IdTokenError("ID token lacks the subject claim", reason=exc.reason) from None


class Refresher:
    """Computes token bookkeeping for sessions and refreshes them when due."""

    def __init__(
        self,
        sessions: SessionManager,
        providers: Mapping[str, Provider],
        *,
        counters: CounterStore,
        margin: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``margin``: refresh this many seconds before the tokens expire."""
        self.sessions = sessions
        self.providers = providers
        self.counters = counters
        self.margin = margin
        self._clock = clock

    def token_data(
        self,
        provider: Provider,
        token: VerifiedToken,
        tokens: TokenResponse,
        *,
        previous_refresh: str | None,
    ) -> dict[str, Any]:
        """Session data for a verified ID token and its token response."""
        expires = self._clock() + tokens.expires_in if tokens.expires_in else token.expires_at
        refresh_token = tokens.refresh_token or previous_refresh
        use_refresh = provider.config.refresh and refresh_token is not None
        claims = {k: v for k, v in _thaw(token.claims).items() if k not in _DROPPED_CLAIMS}
        return {
            "claims": claims,
            "id_token": tokens.id_token,
            "refresh_token": refresh_token if use_refresh else None,
            "token_expires": expires,
            "refresh_at": expires - self.margin if use_refresh else None,
        }

    async def refresh(self, record: SessionRecord, principal: Principal) -> Principal | None:
        """Refresh a due session; the (possibly updated) principal, or ``None`` if it ended."""
        now = self._clock()
        still_valid = now < float(record.data.get("token_expires") or 0)
        if self.counters.hit("verity:oidc:refresh:" + record.id, window=LEASE_SECONDS, now=now) > 1:
            return principal if still_valid else None
        provider = self.providers.get(str(record.data.get("provider")))
        refresh_token = record.data.get("refresh_token")
        if provider is None or not isinstance(refresh_token, str):
            return None
        try:
            update = await self._refreshed(provider, record, refresh_token)
        except ProviderError as exc:
            if exc.error_code in _TRANSIENT:
                log.warning("refresh failed for session %s... (%s)", record.id[:12], exc)
                return principal if still_valid else None
            self.sessions.revoke(record, reason="refresh rejected by the provider")
            return None
        except LoginError:
            self.sessions.revoke(record, reason="refreshed ID token rejected")
            return None
        updated = self.sessions.store.touch(record.id, now=now, data=update)
        return None if updated is None else self.sessions.remember(updated)[1]

    async def _refreshed(
        self, provider: Provider, record: SessionRecord, refresh_token: str
    ) -> dict[str, Any]:
        tokens = await provider.refresh(refresh_token)
        if tokens.id_token is None:
            expires = self._clock() + (tokens.expires_in or 300)
            return {
                "refresh_token": tokens.refresh_token or refresh_token,
                "token_expires": expires,
                "refresh_at": expires - self.margin,
            }
        token = await provider.verify_id_token(
            tokens.id_token, nonce=None, access_token=tokens.access_token
        )
        check_refreshed(token, subject=str(record.data.get("sub")), auth_time=record.auth_time)
        data = self.token_data(provider, token, tokens, previous_refresh=refresh_token)
        data["principal"] = principal_data(principal_for(provider, token))
        return data
