"""Header hygiene and client-IP resolution (sans-I/O)."""

from __future__ import annotations

import pytest

from verity.gateway.errors import BadRequestError
from verity.gateway.headers import (
    ClientResolver,
    check_limits,
    is_identity_header,
    policy_headers,
    response_headers,
    upstream_headers,
    valid_host,
)


def raw(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode(), v.encode()) for k, v in pairs]


@pytest.mark.parametrize(
    "name",
    ["X-Verity-User", "x-verity-anything", "X_VERITY_USER", " x-verity-groups", "Remote-User",
     "remote_user", "X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups",
     "X-Auth-Request-Email", "X-Forwarded-Preferred-Username", "X-Ms-Client-Principal-Name",
     "X-SSL-Client-Cert", "Cf-Access-Jwt-Assertion"],
)  # fmt: skip
def test_identity_headers_in_every_spelling_are_recognised(name: str) -> None:
    assert is_identity_header(name)


@pytest.mark.parametrize("name", ["Accept", "X-Request-Id", "User-Agent", "X-Verityx"])
def test_ordinary_headers_are_not_identity_headers(name: str) -> None:
    assert not is_identity_header(name)


def test_upstream_headers_keep_ordinary_and_drop_the_rest() -> None:
    cleaned = upstream_headers(
        raw(
            ("Host", "a"),
            ("Accept", "*/*"),
            ("Connection", "close, X-Drop"),
            ("X-Drop", "1"),
            ("Transfer-Encoding", "chunked"),
            ("Authorization", "Bearer t"),
            ("Expect", "100-continue"),
            ("X-Forwarded-For", "1.1.1.1"),
            ("X-Verity-User", "x"),
            ("Cookie", "a=b"),
        )
    )
    assert cleaned == [(b"accept", b"*/*"), (b"cookie", b"a=b")]


def test_connection_cannot_remove_what_the_gateway_adds_later() -> None:
    cleaned = upstream_headers(raw(("Connection", "X-Verity-Assertion"), ("Accept", "a")))
    assert cleaned == [(b"accept", b"a")]


def test_policy_headers_hide_credentials_and_join_repeats() -> None:
    seen = policy_headers(
        raw(("Cookie", "s=1"), ("Authorization", "x"), ("X-A", "1"), ("X-A", "2"))
    )
    assert seen == {"x-a": "1, 2"}


def test_response_headers_drop_hop_by_hop() -> None:
    kept = response_headers(
        raw(("Connection", "x-y"), ("X-Y", "1"), ("Keep-Alive", "5"), ("Set-Cookie", "a"))
    )
    assert kept == [(b"set-cookie", b"a")]


TRUSTED = ClientResolver(["10.0.0.0/8", "fd00::/8"], trusted_hops=2)


def resolve(resolver: ClientResolver, peer: str, xff: str | None) -> str:
    headers = raw(("X-Forwarded-For", xff)) if xff is not None else []
    return str(resolver.resolve(peer, headers).ip)


def test_untrusted_peer_x_forwarded_for_is_ignored() -> None:
    assert resolve(TRUSTED, "198.51.100.1", "10.1.1.1") == "198.51.100.1"


def test_trusted_peer_reports_the_client() -> None:
    assert resolve(TRUSTED, "10.0.0.1", "203.0.113.5") == "203.0.113.5"


def test_walk_stops_at_the_first_untrusted_address() -> None:
    assert resolve(TRUSTED, "10.0.0.1", "1.1.1.1, 203.0.113.5, 10.0.0.2") == "203.0.113.5"


def test_walk_stops_after_trusted_hops_entries() -> None:
    assert resolve(TRUSTED, "10.0.0.1", "1.1.1.1, 10.0.0.3, 10.0.0.2") == "10.0.0.3"


def test_zero_hops_trusts_no_header() -> None:
    resolver = ClientResolver(["10.0.0.0/8"], trusted_hops=0)
    assert resolve(resolver, "10.0.0.1", "203.0.113.5") == "10.0.0.1"


def test_no_trusted_proxies_trusts_no_header() -> None:
    assert resolve(ClientResolver([], trusted_hops=3), "10.0.0.1", "203.0.113.5") == "10.0.0.1"


@pytest.mark.parametrize("xff", ["garbage", "", "unknown", "1.2.3.4.5"])
def test_garbage_x_forwarded_for_falls_back_to_the_proxy(xff: str) -> None:
    assert resolve(TRUSTED, "10.0.0.1", xff) == "10.0.0.1"


def test_ports_brackets_and_mapped_addresses_are_understood() -> None:
    assert resolve(TRUSTED, "10.0.0.1", "203.0.113.5:4711") == "203.0.113.5"
    assert resolve(TRUSTED, "10.0.0.1", "[2001:db8::1]:443") == "2001:db8::1"
    assert resolve(TRUSTED, "::ffff:10.0.0.1", "203.0.113.5") == "203.0.113.5"


def test_verified_chain_is_what_goes_upstream() -> None:
    address = TRUSTED.resolve("10.0.0.1", raw(("X-Forwarded-For", "6.6.6.6, 203.0.113.5")))
    assert address.chain == ("203.0.113.5", "10.0.0.1")


def test_kept_resolutions_answer_as_fresh_ones_per_peer_and_header() -> None:
    resolver = ClientResolver(["10.0.0.0/8"], trusted_hops=2)
    cases = [("10.0.0.1", "203.0.113.5"), ("10.0.0.2", "203.0.113.5"),
             ("10.0.0.1", "1.1.1.1, 10.0.0.3"), ("198.51.100.1", "203.0.113.5"),
             ("10.0.0.1", "garbage")]  # fmt: skip
    fresh = [ClientResolver(["10.0.0.0/8"], 2).resolve(p, raw(("X-Forwarded-For", x)))
             for p, x in cases]  # fmt: skip
    for _ in range(3):  # the second and third rounds come from what was kept
        assert [resolver.resolve(p, raw(("X-Forwarded-For", x))) for p, x in cases] == fresh
    two_headers = raw(("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-For", "203.0.113.5"))
    assert str(resolver.resolve("10.0.0.1", two_headers).ip) == "203.0.113.5"
    assert resolve(resolver, "10.0.0.1", "1.1.1.1, 203.0.113.5") == "203.0.113.5"


def test_long_or_many_forwarded_values_are_resolved_each_time_within_bounds() -> None:
    resolver = ClientResolver(["10.0.0.0/8"], trusted_hops=1)
    long_chain = ", ".join(["198.51.100.7"] * 40) + ", 203.0.113.5"  # over 256 bytes
    assert resolve(resolver, "10.0.0.1", long_chain) == "203.0.113.5"
    assert resolver._forwarded == {}  # not kept
    for n in range(ClientResolver._CACHED_PEERS + 10):
        resolve(resolver, "10.0.0.1", f"203.0.{n // 256}.{n % 256}")
    assert len(resolver._forwarded) <= ClientResolver._CACHED_PEERS
    assert resolve(resolver, "10.0.0.1", "203.0.113.9") == "203.0.113.9"


@pytest.mark.parametrize("host", ["app.test", "APP.test:8443", "[::1]:8080", "127.0.0.1", "a-b.c"])
def test_valid_hosts(host: str) -> None:
    assert valid_host(host) == host.lower()


@pytest.mark.parametrize(
    "host", [None, "", "a b", "a/b", "a@b", "a:b:c", "-a.test", "a..b", "[zz]"]
)
def test_bad_hosts_are_400(host: str | None) -> None:
    with pytest.raises(BadRequestError) as caught:
        valid_host(host)
    assert caught.value.status == 400


def test_header_limits() -> None:
    with pytest.raises(BadRequestError):
        check_limits(raw(("a", "x" * 100)), max_bytes=50, max_count=10)
    with pytest.raises(BadRequestError):
        check_limits(raw(*[("a", "b")] * 11), max_bytes=5000, max_count=10)
    check_limits(raw(("a", "b")), max_bytes=50, max_count=10)


@pytest.mark.parametrize(
    "name",
    ["X_Forwarded_For", "X_Forwarded_Host", "X_Forwarded_Proto", "X_Real_IP", "x_forwarded-port",
     "X_Original_URI", "X_Forwarded_Prefix", "Proxy_Authorization", "X-Forwarded-Ssl",
     "X-Forwarded-Scheme", "X_Forwarded_Server", "X-Original-Host"],
)  # fmt: skip
def test_forwarding_headers_in_any_spelling_do_not_reach_the_upstream(
    name: str,
) -> None:
    # CGI, WSGI and PHP servers read X_Forwarded_Host as X-Forwarded-Host (HTTP_X_...):
    # the client's copy would sit beside, or replace, the one the gateway verified; Rack
    # takes X-Forwarded-Ssl: on / X-Forwarded-Scheme for the request's scheme
    cleaned = upstream_headers(raw((name, "evil.example"), ("Accept", "a")))
    assert cleaned == [(b"accept", b"a")]
