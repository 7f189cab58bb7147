"""The per-IP throttle counts a client *network*, not one address an attacker can change
at will: an IPv6 client owns a whole /64 (often more) and can send every guess from a new
address in it; IPv4 clients seen through a dual-stack socket (``::ffff:a.b.c.d``) are
still counted one address each."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from verity.config import StoreConfig
from verity.identity.idp import LockoutPolicy
from verity.identity.idp.guard import LoginGuard, client_key
from verity.store import Stores, open_stores

NOW = 1_800_000_000.0
POLICY = LockoutPolicy(max_ip_failures=3, ip_delay_seconds=1, ip_max_delay_seconds=5)


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    with open_stores(StoreConfig(url=f"sqlite:///{tmp_path}/verity.db")) as opened:
        yield opened


def test_password_spray_rotating_ipv6_addresses_in_one_64_is_throttled(stores: Stores) -> None:
    guard = LoginGuard(stores.counters, policy=POLICY)
    for host in range(1, 4):  # a new address of the attacker's /64 for every guess
        ip = f"2001:db8:1:2::{host:x}"
        assert guard.delay(ip, now=NOW) == 0
        guard.failed(f"user{host}@example.com", ip, reason="password", now=NOW)
    assert guard.delay("2001:db8:1:2:ffff:ffff:ffff:fffe", now=NOW) > 0
    assert guard.delay("2001:db8:1:3::1", now=NOW) == 0  # the neighbouring /64 is not


def test_ipv4_clients_through_a_dual_stack_socket_are_counted_per_address(
    stores: Stores,
) -> None:
    guard = LoginGuard(stores.counters, policy=POLICY)
    for _ in range(3):
        guard.failed("someone@example.com", "::ffff:192.0.2.7", reason="password", now=NOW)
    assert guard.delay("192.0.2.7", now=NOW) > 0  # one client, however spelled
    assert guard.delay("::ffff:192.0.2.8", now=NOW) == 0  # not every IPv4 client


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::1", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("unknown", "unknown"),
    ],
)
def test_client_key(ip: str, key: str) -> None:
    assert client_key(ip) == key
