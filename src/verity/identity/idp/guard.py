"""Brute-force protection on the store's sliding-window counters (shared by every node).

Per account (keyed by a hash of the normalized e-mail address, whether or not the account
exists) every password or TOTP check first *reserves* an attempt with one atomic ``hit``
on the shared counter, and only then verifies: of any number of parallel attempts, on any
nodes, at most ``max_account_failures`` in the window are ever checked; the rest, and
every later attempt until failures age out, are refused without a check, even with the
right password. A complete login forgets the account's attempts (so the reservation of a
correct password is refunded); a failed one keeps its reservation as the failure.

Per client IP, failures against any account are counted too, but an IP over
``max_ip_failures`` is *slowed down*, never refused (OWASP: throttling by IP must not let
an attacker sharing the victim's address lock the victim out). Each attempt from such an
IP takes the next slot of a per-IP counter and waits ``ip_delay_seconds`` times its slot
number (at most ``ip_max_delay_seconds``) before it is checked, so parallel attempts are
spread out instead of all waiting the same short time. The correct password of an account
that is not itself locked is accepted after the wait. An "IP" is the client's network as
far as it can change it at will (``client_key``): one IPv4 address, but an IPv6 /64,
since an IPv6 host usually owns a whole /64 and could send every guess from a new address.

Logs carry no secrets: the account appears as a short hash.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging

from ...store.protocols import CounterStore
from .config import LockoutPolicy

log = logging.getLogger("verity.identity.idp")


def account_key(untrusted_email: str) -> str:
    """A short, stable, non-reversible label for an account name (logs and counters)."""
    normalized = untrusted_email.strip().lower().encode()
    return hashlib.sha256(b"verity-idp-account\0" + normalized).hexdigest()[:24]


IPV6_PREFIX = 64  # an IPv6 client is counted by its /64 (the smallest usual allocation)


def client_key(ip: str) -> str:
    """What the per-IP throttle counts for a client address: the IPv4 address (also when
    written IPv4-mapped, ``::ffff:a.b.c.d``), the IPv6 address's /64, or ``ip`` as given
    when it is not an address."""
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)


class LoginGuard:
    """Reserves login attempts, records failures and successes, and throttles busy IPs."""

    def __init__(self, counters: CounterStore, *, policy: LockoutPolicy) -> None:
        self._counters = counters
        self._policy = policy

    @staticmethod
    def _account(account: str) -> str:
        return f"idp:fail:acct:{account}"

    @staticmethod
    def _ip(ip: str) -> str:
        return f"idp:fail:ip:{client_key(ip)}"

    @staticmethod
    def _slots(ip: str) -> str:
        return f"idp:slow:ip:{client_key(ip)}"

    def reserve(self, untrusted_email: str, ip: str, *, now: float) -> bool:
        """Reserve one attempt on the account before its password or code is checked;
        ``False`` (check nothing, refuse) if the account is locked out.

        The reservation is one atomic ``hit``, so concurrent attempts each get a distinct
        count and only the first ``max_account_failures`` may proceed."""
        account = account_key(untrusted_email)
        key = self._account(account)
        window = self._policy.window_seconds
        limit = self._policy.max_account_failures
        # a locked account is refused without a hit, so hammering it stores nothing more
        if self._counters.count(key, window=window, now=now) >= limit:
            allowed = False
        else:
            allowed = self._counters.hit(key, window=window, now=now) <= limit
        if not allowed:
            log.warning("idp login refused: locked out (account=%s ip=%s)", account, ip)
        return allowed

    def delay(self, ip: str, *, now: float) -> float:
        """Seconds an attempt from ``ip`` waits before it is checked: 0 below the IP's
        failure limit, else its slot number times ``ip_delay_seconds`` (capped)."""
        policy = self._policy
        window = policy.window_seconds
        if self._counters.count(self._ip(ip), window=window, now=now) < policy.max_ip_failures:
            return 0.0
        slot = self._counters.hit(self._slots(ip), window=window, now=now)
        wait = min(policy.ip_max_delay_seconds, policy.ip_delay_seconds * slot)
        log.warning("idp login throttled: too many failures from ip=%s (wait %.1fs)", ip, wait)
        return wait

    def failed(self, untrusted_email: str, ip: str, *, reason: str, now: float) -> None:
        """Record a failed check (``reason`` is a fixed code such as ``password`` or
        ``otp``); the account's failure is the attempt it reserved."""
        account = account_key(untrusted_email)
        window = self._policy.window_seconds
        count = self._counters.count(self._account(account), window=window, now=now)
        self._counters.hit(self._ip(ip), window=window, now=now)
        log.warning(
            "idp login failed: %s (account=%s ip=%s failures=%d)", reason, account, ip, count
        )

    def succeeded(self, untrusted_email: str, ip: str) -> None:
        """Forget the account's attempts after a complete login (the IP's stay)."""
        account = account_key(untrusted_email)
        self._counters.reset(self._account(account))
        log.info("idp login succeeded (account=%s ip=%s)", account, ip)
