"""Brute-force protection on the store's sliding-window counters.

Failures (wrong password, wrong TOTP code, unknown account) are counted per account
(keyed by a hash of the normalized e-mail address, whether or not the account exists)
and per client IP. At the limit, logins are refused until failures age out of the
window; the refusal reads the same for every account. Logs carry no secrets: the
account appears as a short hash.
"""

from __future__ import annotations

import hashlib
import logging

from ...store.protocols import CounterStore
from .config import LockoutPolicy

log = logging.getLogger("verity.identity.idp")


def account_key(untrusted_email: str) -> str:
    """A short, stable, non-reversible label for an account name (logs and counters)."""
    normalized = untrusted_email.strip().lower().encode()
    return hashlib.sha256(b"verity-idp-account\0" + normalized).hexdigest()[:24]


class LoginGuard:
    """Decides whether a login attempt may proceed, and records failures and successes."""

    def __init__(self, counters: CounterStore, *, policy: LockoutPolicy) -> None:
        self._counters = counters
        self._policy = policy

    def _keys(self, account: str, ip: str) -> tuple[str, str]:
        return f"idp:fail:acct:{account}", f"idp:fail:ip:{ip}"

    def locked(self, untrusted_email: str, ip: str, *, now: float) -> bool:
        """True if the account or the IP has reached its failure limit in the window."""
        account = account_key(untrusted_email)
        acct_key, ip_key = self._keys(account, ip)
        window = self._policy.window_seconds
        by_account = self._counters.count(acct_key, window=window, now=now)
        by_ip = self._counters.count(ip_key, window=window, now=now)
        locked = (
            by_account >= self._policy.max_account_failures or by_ip >= self._policy.max_ip_failures
        )
        if locked:
            log.warning("idp login refused: locked out (account=%s ip=%s)", account, ip)
        return locked

    def failed(self, untrusted_email: str, ip: str, *, reason: str, now: float) -> None:
        """Record a failure (``reason`` is a fixed code such as ``password`` or ``otp``)."""
        account = account_key(untrusted_email)
        acct_key, ip_key = self._keys(account, ip)
        window = self._policy.window_seconds
        count = self._counters.hit(acct_key, window=window, now=now)
        self._counters.hit(ip_key, window=window, now=now)
        log.warning(
            "idp login failed: %s (account=%s ip=%s failures=%d)", reason, account, ip, count
        )

    def succeeded(self, untrusted_email: str, ip: str) -> None:
        """Forget the account's failures after a complete login."""
        account = account_key(untrusted_email)
        self._counters.reset(self._keys(account, ip)[0])
        log.info("idp login succeeded (account=%s ip=%s)", account, ip)
