"""Header hygiene and client-IP resolution (sans-I/O)."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest

from verity.gateway import headers as headers_module
from verity.gateway.errors import BadRequestError
from verity.gateway.headers import (
    UPSTREAM_CLEARED_HEADERS,
    ClientAddress,
    ClientResolver,
    check_framing,
    check_limits,
    connection_tokens,
    header_values,
    is_identity_header,
    parse_networks,
    policy_headers,
    response_headers,
    single_header,
    upstream_headers,
    valid_host,
    valid_method,
    without_cookies,
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
    largest = 0
    for n in range(ClientResolver._CACHED_PEERS + 10):
        resolve(resolver, "10.0.0.1", f"203.0.{n // 256}.{n % 256}")
        largest = max(largest, len(resolver._forwarded))
    assert largest == ClientResolver._CACHED_PEERS  # full, never one past
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


# --- every strip-list entry, by name (written out here, not read from the module) -------

IDENTITY_NAMES = [
    "x-forwarded-user", "x-forwarded-email", "x-forwarded-groups",
    "x-forwarded-preferred-username", "x-forwarded-access-token", "x-forwarded-client-cert",
    "remote-user", "remote-email", "remote-groups", "remote-name", "x-remote-user", "x-user",
    "x-email", "x-groups", "x-authenticated-user", "x-authenticated-userid", "x-webauth-user",
    "x-client-cert", "x-client-dn", "x-client-verify", "ssl-client-cert",
    "x-goog-authenticated-user-email", "x-goog-authenticated-user-id",
    "x-goog-iap-jwt-assertion", "x-amzn-oidc-data", "x-amzn-oidc-identity",
    "x-amzn-oidc-accesstoken", "cf-access-jwt-assertion", "cf-access-authenticated-user-email",
]  # fmt: skip
# One name under each identity prefix that no exact entry lists.
IDENTITY_PREFIXED = [
    "x-verity-anything-new", "x-auth-request-redirect", "x-pomerium-claim-department",
    "x-ms-client-principal-roles", "x-ssl-client-s-dn",
]  # fmt: skip
# What deploy/ examples clear besides the identity names above.
CLEARED_NAMES = [
    "x-verity-user", "x-verity-email", "x-verity-groups", "x-verity-roles",
    "x-verity-assertion", "x-verity-decision-id", "x-verity-device-id", "x-verity-request",
    "x-auth-request-user", "x-auth-request-email", "x-auth-request-groups",
    "x-auth-request-preferred-username", "x-auth-request-access-token",
    "x-pomerium-jwt-assertion", "x-pomerium-claim-email", "x-pomerium-claim-groups",
    "x-ms-client-principal", "x-ms-client-principal-name", "x-ms-client-principal-id",
    "x-ms-client-principal-idp", "x-ssl-client-cert", "x-ssl-client-dn",
    "x-ssl-client-verify", "forwarded",
]  # fmt: skip
HOP_BY_HOP_NAMES = [
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
    "upgrade", "proxy-authorization", "proxy-authenticate",
]  # fmt: skip
FORWARDING_NAMES = [
    "forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
    "x-forwarded-port", "x-forwarded-prefix", "x-real-ip", "x-original-uri",
    "x-original-method", "x-original-url", "x-forwarded-method", "x-forwarded-uri",
]  # fmt: skip


def spellings(name: str) -> list[str]:
    """``name`` as sent, upper-case, and with ``_`` for ``-`` (as CGI servers read it)."""
    return [name, name.upper(), name.replace("-", "_"), name.title().replace("-", "_")]


def reaches_upstream(name: str) -> bool:
    """Whether a client's header called ``name`` (any case) reaches the upstream."""
    pair = (name.encode(), b"mallory")
    return pair[0].lower() in {n for n, _ in upstream_headers([pair, (b"accept", b"a")])}


@pytest.mark.parametrize("name", IDENTITY_NAMES + IDENTITY_PREFIXED)
def test_client_identity_header_never_reaches_the_upstream_nor_the_policy(name: str) -> None:
    for spelled in spellings(name):
        assert is_identity_header(spelled), spelled
        assert not reaches_upstream(spelled), spelled
        assert policy_headers([(spelled.lower().encode(), b"mallory")]) == {}, spelled


@pytest.mark.parametrize("name", CLEARED_NAMES + IDENTITY_NAMES)
def test_every_header_the_deploy_examples_must_clear_is_listed_and_stripped(name: str) -> None:
    assert name in UPSTREAM_CLEARED_HEADERS
    assert name == "forwarded" or is_identity_header(name)
    assert not any(reaches_upstream(spelled) for spelled in spellings(name))


@pytest.mark.parametrize("name", HOP_BY_HOP_NAMES)
def test_hop_by_hop_header_is_dropped_both_ways(name: str) -> None:
    assert not any(reaches_upstream(spelled) for spelled in spellings(name))
    answered = response_headers([(name.encode(), b"x"), (b"content-type", b"text/plain")])
    assert answered == [(b"content-type", b"text/plain")]


@pytest.mark.parametrize("name", [*FORWARDING_NAMES, "host", "expect"])
def test_forwarding_host_and_expect_headers_are_dropped_in_every_spelling(name: str) -> None:
    assert not any(reaches_upstream(spelled) for spelled in spellings(name))


@pytest.mark.parametrize(
    "name", ["x-verityx", "x-pomeriumx", "x-auth-requestx", "x-ssl-clientx", "remote-userx",
             "x-forwardedx", "x-originalx", "hostx", "x-usery", "te-x", "x-real-ipx"],
)  # fmt: skip
def test_names_that_only_resemble_a_stripped_header_pass(name: str) -> None:
    assert not is_identity_header(name)
    assert reaches_upstream(name)


def test_upstream_names_are_lower_cased_values_and_order_kept() -> None:
    cleaned = upstream_headers(
        [(b"X-Custom", b"A b"), (b"accept", b"1"), (b"x-custom", b"2"), (b"Te", b"trailers")]
    )
    assert cleaned == [(b"x-custom", b"A b"), (b"accept", b"1"), (b"x-custom", b"2")]


# --- the gateway's own session cookies ---------------------------------------------------

SESSION = frozenset({"verity_session", "__Host-verity_session", "verity_session_login"})


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        (b"a=1; verity_session=s3cret; b=2", b"a=1; b=2"),
        (b"verity_session=s3cret", b""),
        (b"__Host-verity_session=s3cret;verity_session_login=t", b""),
        (b" verity_session = s3cret ;theme=dark", b"theme=dark"),
        (b"a=1;;  ; b=x=y", b"a=1; b=x=y"),
        (b"flag; verity_session=s", b"flag"),
        (b"Verity_Session=other; verity_sessionx=1", b"Verity_Session=other; verity_sessionx=1"),
        (b"a=\xe9", b"a=\xe9"),
    ],
)
def test_without_cookies_removes_exactly_the_named_cookies(value: bytes, kept: bytes) -> None:
    assert without_cookies(value, SESSION) == kept


def test_gateway_session_cookie_never_reaches_the_upstream() -> None:
    cleaned = upstream_headers(
        [(b"cookie", b"a=1; verity_session=s3cret"), (b"Cookie", b"__Host-verity_session=s"),
         (b"accept", b"*/*")],
        hidden_cookies=SESSION,
    )  # fmt: skip
    assert cleaned == [(b"cookie", b"a=1"), (b"accept", b"*/*")]


def test_a_cookie_header_left_empty_is_not_sent_at_all() -> None:
    cleaned = upstream_headers([(b"cookie", b"verity_session=s3cret")], hidden_cookies=SESSION)
    assert cleaned == []


def test_cookies_are_forwarded_byte_for_byte_when_none_are_hidden() -> None:
    sent = [(b"cookie", b"a=1;b=2;;verity_session=not-ours")]
    assert upstream_headers(sent) == sent


def test_only_the_cookie_header_is_rewritten() -> None:
    sent = [(b"x-note", b"verity_session=s; a=1"), (b"set-cookie", b"verity_session=s")]
    assert upstream_headers(sent, hidden_cookies=SESSION) == sent


def test_policy_never_sees_cookies_or_credentials() -> None:
    seen = policy_headers(
        [(b"cookie", b"verity_session=s"), (b"authorization", b"Bearer t"),
         (b"proxy-authorization", b"Basic x"), (b"x-a", b"\xe9")]
    )  # fmt: skip
    assert seen == {"x-a": "\xe9"}


def test_authorization_reaches_the_upstream_only_when_the_route_forwards_it() -> None:
    sent = [(b"Authorization", b"Bearer t"), (b"proxy-authorization", b"Basic x")]
    assert upstream_headers(sent) == []
    assert upstream_headers(sent, forward_authorization=True) == [(b"authorization", b"Bearer t")]
    assert upstream_headers([(b"x-authorization", b"1")]) == [(b"x-authorization", b"1")]


# --- Connection and the response side --------------------------------------------------


def test_connection_tokens_are_every_named_header_lower_cased() -> None:
    sent = [(b"Connection", b"X-A, , keep-alive"), (b"connection", b"x-b,"), (b"x-c", b"z")]
    assert connection_tokens(sent) == frozenset({"x-a", "keep-alive", "x-b"})
    assert connection_tokens([(b"connection", b" , ")]) == frozenset()


def test_connection_named_headers_are_dropped_and_the_others_kept() -> None:
    sent = [(b"connection", b"x-a"), (b"x-a", b"1"), (b"x-b", b"2"), (b"X-A", b"3")]
    assert upstream_headers(sent) == [(b"x-b", b"2")]
    assert response_headers(sent) == [(b"x-b", b"2")]


@pytest.mark.parametrize("name", HOP_BY_HOP_NAMES)
def test_response_hop_by_hop_header_is_dropped_beside_a_connection_header(name: str) -> None:
    sent = [(b"Connection", b"x-private"), (name.encode(), b"v"), (b"x-private", b"1"),
            (b"set-cookie", b"a=1"), (b"Content-Length", b"2")]  # fmt: skip
    assert response_headers(sent) == [(b"set-cookie", b"a=1"), (b"Content-Length", b"2")]


def test_response_headers_keep_everything_else_unchanged() -> None:
    sent = [(b"Set-Cookie", b"a=1"), (b"set-cookie", b"b=2"), (b"x-forwarded-for", b"1.1.1.1"),
            (b"x-verity-user", b"u"), (b"content-type", b"text/html")]  # fmt: skip
    assert response_headers(iter(sent)) == sent


def test_header_name_cache_stays_bounded() -> None:
    headers_module._NAMES.clear()
    largest = 0
    for n in range(headers_module._MAX_NAMES + 5):
        upstream_headers([(f"x-invented-{n}".encode(), b"1")])
        largest = max(largest, len(headers_module._NAMES))
    assert largest == headers_module._MAX_NAMES  # full, never one past
    assert upstream_headers([(b"x-verity-user", b"u"), (b"accept", b"a")]) == [(b"accept", b"a")]


# --- limits, framing, single values -----------------------------------------------------


def test_header_bytes_at_the_limit_pass_and_one_past_is_431() -> None:
    sent = [(b"ab", b"x" * 10), (b"c", b"")]  # (2 + 10 + 4) + (1 + 0 + 4) = 21 bytes
    check_limits(sent, max_bytes=21, max_count=2)
    with pytest.raises(BadRequestError) as caught:
        check_limits(sent, max_bytes=20, max_count=2)
    assert (caught.value.status, caught.value.public_message) == (
        431, "Request headers are too large."
    )  # fmt: skip


def test_header_count_at_the_limit_passes_and_one_past_is_431() -> None:
    check_limits([(b"a", b"b")] * 3, max_bytes=10_000, max_count=3)
    with pytest.raises(BadRequestError) as caught:
        check_limits([(b"a", b"b")] * 4, max_bytes=10_000, max_count=3)
    assert (caught.value.status, caught.value.public_message) == (
        431, "Too many request headers."
    )  # fmt: skip


def test_content_length_with_transfer_encoding_is_refused() -> None:
    with pytest.raises(BadRequestError) as caught:
        check_framing([(b"transfer-encoding", b"chunked"), (b"x", b"1"), (b"content-length", b"3")])
    assert (caught.value.status, caught.value.public_message) == (
        400, "Content-Length and Transfer-Encoding together."
    )  # fmt: skip


@pytest.mark.parametrize(
    "sent", [[], [(b"content-length", b"3"), (b"host", b"a")],
             [(b"host", b"a"), (b"transfer-encoding", b"chunked"), (b"accept", b"*/*")],
             [(b"content-length", b"3"), (b"content-length", b"3")]],
)  # fmt: skip
def test_one_framing_header_is_accepted(sent: list[tuple[bytes, bytes]]) -> None:
    check_framing(sent)


def test_single_header_is_the_one_value_none_or_400_when_repeated() -> None:
    sent = [(b"host", b"a.test"), (b"x-a", b"1"), (b"x-a", b"\xe9")]
    assert single_header(sent, b"host") == "a.test"
    assert single_header(sent, b"x-b") is None
    assert header_values(sent, b"x-a") == ["1", "\xe9"]
    with pytest.raises(BadRequestError) as caught:
        single_header(sent, b"x-a")
    assert (caught.value.status, caught.value.public_message) == (400, "Repeated x-a header.")


def test_bad_host_message() -> None:
    with pytest.raises(BadRequestError) as caught:
        valid_host("a b")
    assert caught.value.public_message == "Missing or malformed Host header."


@pytest.mark.parametrize(
    "host",
    [" App.Test ", "a.test.", "a" * 63 + ".test", "xn--bcher-kva.test:65535", "[2001:db8::1]",
     "[::ffff:10.0.0.1]:1", "9"],
)  # fmt: skip
def test_more_valid_hosts(host: str) -> None:
    assert valid_host(host) == host.strip().lower()


@pytest.mark.parametrize(
    "host", ["a" * 64 + ".test", "a.test:123456", "a.test:", "a-.test", "[::1", "::1",
             "a_b.test", "a.test/x", "[" + "1" * 46 + "]", "a\x00.test"],
)  # fmt: skip
def test_more_bad_hosts_are_400(host: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        valid_host(host)
    assert caught.value.status == 400


@pytest.mark.parametrize(("sent", "method"), [(" get ", "GET"), ("M" * 20, "M" * 20)])
def test_valid_methods_are_upper_cased(sent: str, method: str) -> None:
    assert valid_method(sent) == method


@pytest.mark.parametrize("sent", ["", "M" * 21, "GE T", "GET1", "G-T", "DEL\nETE"])
def test_malformed_methods_are_400(sent: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        valid_method(sent)
    assert (caught.value.status, caught.value.public_message) == (400, "Malformed request method.")


# --- client address ---------------------------------------------------------------------


def test_configured_proxy_networks_must_be_networks() -> None:
    assert parse_networks(["10.0.0.0/8", "::1/128"]) == (
        ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128")
    )  # fmt: skip
    with pytest.raises(ValueError, match="host bits"):
        parse_networks(["10.0.0.1/8"])


def test_no_peer_is_no_address_and_not_trusted() -> None:
    for peer in (None, "", "unix:/run/verity.sock"):
        address = TRUSTED.resolve(peer, raw(("X-Forwarded-For", "203.0.113.5")))
        assert address == ClientAddress(None, None, False, ()), peer


def test_direct_peer_is_the_client_and_its_own_chain() -> None:
    assert TRUSTED.resolve("198.51.100.1", []) == ClientAddress(
        ipaddress.ip_address("198.51.100.1"), ipaddress.ip_address("198.51.100.1"), False,
        ("198.51.100.1",),
    )  # fmt: skip
    proxy = ipaddress.ip_address("10.0.0.1")
    assert TRUSTED.resolve("10.0.0.1", []) == ClientAddress(proxy, proxy, True, ("10.0.0.1",))


def test_trusted_peer_forwarding_is_marked_trusted_with_its_chain() -> None:
    assert TRUSTED.resolve("10.0.0.1", raw(("X-Forwarded-For", "203.0.113.5"))) == ClientAddress(
        ipaddress.ip_address("203.0.113.5"), ipaddress.ip_address("10.0.0.1"), True,
        ("203.0.113.5", "10.0.0.1"),
    )  # fmt: skip


def test_ipv4_proxies_do_not_vouch_for_ipv6_peers_and_back() -> None:
    resolver = ClientResolver(["0.0.0.0/0"], trusted_hops=1)
    assert resolve(resolver, "2001:db8::1", "203.0.113.5") == "2001:db8::1"
    assert resolver.is_trusted(ipaddress.ip_address("198.51.100.1"))
    assert not resolver.is_trusted(ipaddress.ip_address("2001:db8::1"))
    assert not resolver.is_trusted(None)


@pytest.mark.parametrize(
    ("hops", "xff", "client", "chain"),
    [
        (1, "1.1.1.1, 10.0.0.3", "10.0.0.3", ("10.0.0.3", "10.0.0.1")),
        (2, "1.1.1.1, 10.0.0.3", "1.1.1.1", ("1.1.1.1", "10.0.0.3", "10.0.0.1")),
        (3, "9.9.9.9, 1.1.1.1, 10.0.0.3", "1.1.1.1", ("1.1.1.1", "10.0.0.3", "10.0.0.1")),
        (3, "203.0.113.5, garbage, 10.0.0.2", "10.0.0.2", ("10.0.0.2", "10.0.0.1")),
        (2, "10.0.0.4, 10.0.0.3, 10.0.0.2", "10.0.0.3", ("10.0.0.3", "10.0.0.2", "10.0.0.1")),
        (5, ",", "10.0.0.1", ("10.0.0.1",)),
    ],
)
def test_walk_is_bounded_by_hops_trust_and_garbage(
    hops: int, xff: str, client: str, chain: tuple[str, ...]
) -> None:
    address = ClientResolver(["10.0.0.0/8"], hops).resolve(
        "10.0.0.1", raw(("X-Forwarded-For", xff))
    )
    assert (str(address.ip), address.chain, address.peer_trusted) == (client, chain, True)


@pytest.mark.parametrize(
    ("entry", "address"),
    [("203.0.113.5:80", "203.0.113.5"), (" [2001:db8::1]:443 ", "2001:db8::1"),
     ("[2001:db8::2]", "2001:db8::2"), ("2001:db8::3", "2001:db8::3"),
     ("[2001:db8::4", "10.0.0.1"), ("[]", "10.0.0.1"), ("1.2.3.4:80:90", "10.0.0.1")],
)  # fmt: skip
def test_forwarded_entries_with_ports_and_brackets(entry: str, address: str) -> None:
    assert resolve(ClientResolver(["10.0.0.0/8"], 1), "10.0.0.1", entry) == address


def test_forwarded_values_up_to_256_bytes_are_kept_longer_ones_are_not() -> None:
    resolver = ClientResolver(["10.0.0.0/8"], trusted_hops=1)
    at_limit = " " * (256 - len("203.0.113.5")) + "203.0.113.5"
    assert resolve(resolver, "10.0.0.1", at_limit) == "203.0.113.5"
    assert len(resolver._forwarded) == 1
    assert resolve(resolver, "10.0.0.1", " " + at_limit) == "203.0.113.5"
    assert len(resolver._forwarded) == 1


def test_peer_cache_stays_bounded() -> None:
    resolver = ClientResolver(["10.0.0.0/8"], trusted_hops=1)
    largest = 0
    for n in range(ClientResolver._CACHED_PEERS + 5):
        resolver.resolve(f"198.{n // 65536}.{n // 256 % 256}.{n % 256}", [])
        largest = max(largest, len(resolver._peers))
    assert largest == ClientResolver._CACHED_PEERS  # full, never one past
    assert resolve(resolver, "198.51.100.1", None) == "198.51.100.1"


def test_a_kept_client_address_cannot_be_changed_by_one_request_for_the_next() -> None:
    address = TRUSTED.resolve("10.0.0.1", raw(("X-Forwarded-For", "203.0.113.5")))
    with pytest.raises(dataclasses.FrozenInstanceError):
        address.peer_trusted = False  # type: ignore[misc]
    assert TRUSTED.resolve("10.0.0.1", raw(("X-Forwarded-For", "203.0.113.5"))) is address


def test_the_hot_path_keeps_what_it_resolved() -> None:
    # DESIGN.md 9: no re-parsing of what a cache already holds (each cache is bounded above)
    headers_module._NAMES.clear()
    upstream_headers([(b"x-kept-1", b"1"), (b"X-Kept-2", b"2"), (b"x-verity-user", b"u")])
    assert set(headers_module._NAMES) == {b"x-kept-1", b"X-Kept-2", b"x-verity-user"}
    resolver = ClientResolver(["10.0.0.0/8"], trusted_hops=1)
    for peer in ("10.0.0.1", "10.0.0.2", "198.51.100.1"):
        resolver.resolve(peer, raw(("X-Forwarded-For", "203.0.113.5")))
    assert set(resolver._peers) == {"10.0.0.1", "10.0.0.2", "198.51.100.1"}
    assert set(resolver._forwarded) == {
        ("10.0.0.1", ("203.0.113.5",)), ("10.0.0.2", ("203.0.113.5",))
    }  # fmt: skip
