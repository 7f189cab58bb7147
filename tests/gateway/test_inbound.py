"""From an ASGI scope to what the gateway decides on (``verity.gateway.inbound``, sans-I/O)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from verity.gateway.errors import BadRequestError
from verity.gateway.headers import ClientAddress, ClientResolver
from verity.gateway.inbound import (
    Inbound,
    Limits,
    RequestLine,
    Target,
    http_target,
    inbound_of,
    raw_target,
    read_inbound,
    read_target,
    request_host,
    request_line,
    scope_target,
    sent_target,
    upstream_path,
)
from verity.gateway.settings import PathMatching, RouteConfig
from verity.gateway.target import AmbiguousTargetError

RESOLVER = ClientResolver(["10.0.0.0/8"], trusted_hops=1)
LIMITS = Limits(max_header_bytes=64, max_header_count=4)
ROUTE = RouteConfig(name="app", host="app.test", upstream="http://upstream.test")


def scope(**fields: Any) -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": "/", "headers": [], **fields}


# --- request line and target as sent ----------------------------------------------------


def test_request_line_of_a_full_scope() -> None:
    tls = {"client_cert_chain": ["pem"]}
    line = request_line(
        scope(method="POST", path="/a b", raw_path=b"/a%20b", query_string=b"x=1",
              scheme="https", client=("203.0.113.5", 4711), extensions={"tls": tls})
    )  # fmt: skip
    assert line == RequestLine("POST", "/a%20b?x=1", "/a b", b"x=1", "https", "203.0.113.5", tls)


def test_request_line_defaults_of_a_bare_scope() -> None:
    line = request_line(scope(path="/a"))
    assert line == RequestLine("GET", "/a", "/a", b"", "http", None, None)
    assert request_line(scope(extensions=None)).tls is None


@pytest.mark.parametrize(
    ("raw_path", "path", "query", "sent"),
    [
        (b"/a%2Fb", "/a/b", b"x=1", "/a%2Fb?x=1"),
        (b"/a%2Fb", "/a/b", b"", "/a%2Fb"),
        (b"/a?x=1", "/a", b"x=1", "/a?x=1"),  # a raw path that carries its query already
        (b"/caf\xc3\xa9", "/caf\u00e9", b"q=\xe9", "/caf\u00c3\u00a9?q=\u00e9"),
        (None, "/a b/caf\u00e9", b"", "/a%20b/caf%C3%A9"),
        (b"", "/x?y#z", b"q", "/x%3Fy%23z?q"),
        (None, "/:@!$&'()*+,;=-._~", b"", "/:@!$&'()*+,;=-._~"),
    ],
)
def test_sent_target_is_the_raw_path_and_query(
    raw_path: bytes | None, path: str, query: bytes, sent: str
) -> None:
    assert sent_target(raw_path, path, query) == sent


def test_scope_target_and_raw_target() -> None:
    full = scope(path="/a/b", raw_path=b"/a%2Fb", query_string=b"x=1")
    assert (scope_target(full), raw_target(full)) == ("/a%2Fb?x=1", "/a%2Fb")
    bare = {"type": "http"}
    assert (scope_target(bare), raw_target(bare)) == ("/", "/")
    decoded_only = {"path": "/a b", "query_string": b"q"}  # no raw_path: path re-encoded
    assert (scope_target(decoded_only), raw_target(decoded_only)) == ("/a%20b?q", "/a%20b")
    assert scope_target({"path": "/p", "query_string": bytearray(b"q")}) == "/p?q"


@pytest.mark.parametrize(
    ("canonical", "sent"),
    [("/a b/c", "/a%20b/c"), ("/caf\u00e9", "/caf%C3%A9"), ("/50%", "/50%25"),
     ("/a?b#c", "/a%3Fb%23c"), ("/x:@!$&'()*+,;=-._~", "/x:@!$&'()*+,;=-._~"),
     ('/"<>\\^`{|}', "/%22%3C%3E%5C%5E%60%7B%7C%7D")],
)  # fmt: skip
def test_upstream_path_encodes_what_would_change_its_meaning(canonical: str, sent: str) -> None:
    assert upstream_path(canonical) == sent


def test_read_target_splits_and_decodes_once() -> None:
    assert read_target(" /a%20b/c?x=%2F ") == Target("/a%20b/c", "x=%2F", "/a b/c")
    assert read_target("http://app.test?_method=PUT") == Target("/", "_method=PUT", "/")
    with pytest.raises(AmbiguousTargetError):
        read_target("/a%2fb")


# --- the header block and the client ------------------------------------------------------


def test_header_block_at_the_limits_passes_and_one_past_is_431() -> None:
    at_limit = [(b"host", b"app.test"), (b"a", b"x" * 43)]  # (4 + 8 + 4) + (1 + 43 + 4) = 64
    assert inbound_of(at_limit, None, RESOLVER, Limits(64, 2)).headers == at_limit
    for limits in (Limits(63, 2), Limits(64, 1)):
        with pytest.raises(BadRequestError) as caught:
            inbound_of(at_limit, None, RESOLVER, limits)
        assert caught.value.status == 431


def test_request_smuggling_framing_is_refused_on_the_way_in() -> None:
    framed = [(b"content-length", b"3"), (b"transfer-encoding", b"chunked")]
    with pytest.raises(BadRequestError) as caught:
        inbound_of(framed, None, RESOLVER, LIMITS)
    assert caught.value.status == 400


def test_read_inbound_resolves_the_client_through_trusted_hops() -> None:
    headers = [(b"x-forwarded-for", b"203.0.113.5")]
    trusted = read_inbound(scope(headers=headers, client=("10.0.0.1", 1)), RESOLVER, LIMITS)
    assert trusted == Inbound(headers, RESOLVER.resolve("10.0.0.1", headers), False)
    assert str(trusted.client.ip) == "203.0.113.5"
    direct = read_inbound(scope(headers=headers, client=("198.51.100.1", 1)), RESOLVER, LIMITS)
    assert str(direct.client.ip) == "198.51.100.1"
    nobody = read_inbound(scope(headers=headers), RESOLVER, LIMITS)
    assert nobody.client == ClientAddress(None, None, False, ())


@pytest.mark.parametrize(
    ("accept", "html"),
    [([], False), ([b"text/html"], True), ([b"application/json"], False),
     ([b"application/json;q=0.1", b"text/html"], True),
     ([b"text/html;q=0.1", b"application/json"], False), ([b"text/html", b"*/*"], True)],
)  # fmt: skip
def test_every_accept_header_counts_for_the_html_preference(
    accept: list[bytes], html: bool
) -> None:
    headers = [(b"accept", value) for value in accept]
    assert inbound_of(headers, None, RESOLVER, LIMITS).html is html


# --- the host ------------------------------------------------------------------------------


def inbound(peer: str, *headers: tuple[bytes, bytes]) -> Inbound:
    return inbound_of(list(headers), peer, RESOLVER, Limits(10_000, 100))


HOST = (b"host", b"App.Test")


def test_host_header_is_the_host_unless_forwarding_is_trusted() -> None:
    forwarded = (b"x-forwarded-host", b"fa.test")
    assert request_host(inbound("10.0.0.1", HOST, forwarded), forwarded=False) == "app.test"
    assert request_host(inbound("198.51.100.1", HOST, forwarded), forwarded=True) == "app.test"
    assert request_host(inbound("10.0.0.1", HOST), forwarded=True) == "app.test"
    assert request_host(inbound("10.0.0.1", HOST, forwarded), forwarded=True) == "fa.test"


def test_x_forwarded_host_is_the_value_the_trusted_proxy_appended() -> None:
    # the client's own X-Forwarded-Host comes first; the proxy's (the last one) decides
    for value in (b"evil.test, fa.test", b"evil.test,fa.test", b"a.test, evil.test , fa.test"):
        sent = inbound("10.0.0.1", HOST, (b"x-forwarded-host", value))
        assert request_host(sent, forwarded=True) == "fa.test", value


@pytest.mark.parametrize(
    "headers",
    [[HOST, (b"x-forwarded-host", b"a.test"), (b"x-forwarded-host", b"b.test")],
     [HOST, (b"x-forwarded-host", b"a.test, bad host")], [(b"x-forwarded-host", b"")]],
)  # fmt: skip
def test_repeated_or_malformed_forwarded_host_is_400(headers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(BadRequestError) as caught:
        request_host(inbound("10.0.0.1", *headers), forwarded=True)
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "headers", [[], [HOST, HOST], [(b"host", b"a b")], [(b"host", b"a.test, b.test")]]
)
def test_missing_repeated_or_malformed_host_is_400(headers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(BadRequestError) as caught:
        request_host(inbound("198.51.100.1", *headers), forwarded=False)
    assert caught.value.status == 400


# --- the decided target ---------------------------------------------------------------------


def test_http_target_is_the_canonical_path_on_the_route() -> None:
    headers = [(b"cookie", b"s=1"), (b"x-a", b"1"), (b"x-verity-user", b"mallory")]
    decided = http_target(
        ROUTE, host="app.test", method="post", target=read_target("/a%20b"), headers=headers
    )
    assert (decided.host, decided.method, decided.path) == ("app.test", "POST", "/a b")
    assert dict(decided.headers) == {"x-a": "1"}


def test_http_target_uses_the_policy_host_and_the_path_matching() -> None:
    route = RouteConfig(
        name="app", host="app.test", upstream="http://upstream.test", policy_host="policy.test",
        path_matching=PathMatching(case="insensitive", parameters="strip"),
    )  # fmt: skip
    decided = http_target(
        route, host="app.test", method="GET", target=read_target("/ADMIN;x"), headers=[]
    )
    assert (decided.host, decided.path) == ("policy.test", "/admin")


@pytest.mark.parametrize("method", ["CONNECT", "TRACE", "connect", " trace "])
def test_connect_and_trace_are_405(method: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        http_target(ROUTE, host="app.test", method=method, target=read_target("/"), headers=[])
    assert (caught.value.status, caught.value.public_message) == (
        405, "This method is not supported."
    )  # fmt: skip


def test_an_override_to_trace_is_405_too_and_overrides_are_decided() -> None:
    decide = RouteConfig(
        name="app", host="app.test", upstream="http://u.test", method_override="decide"
    )
    target = read_target("/x?_method=TRACE")
    with pytest.raises(BadRequestError) as caught:
        http_target(decide, host="app.test", method="POST", target=target, headers=[])
    assert caught.value.status == 405
    headers = [(b"x-http-method-override", b"DELETE")]
    decided = http_target(
        decide, host="app.test", method="POST", target=read_target("/x"), headers=headers
    )
    assert decided.method == "DELETE"
    with pytest.raises(AmbiguousTargetError):
        http_target(ROUTE, host="app.test", method="POST", target=target, headers=[])


def test_malformed_method_is_400() -> None:
    with pytest.raises(BadRequestError) as caught:
        http_target(ROUTE, host="app.test", method="G T", target=read_target("/"), headers=[])
    assert caught.value.status == 400


def test_what_the_gateway_read_cannot_be_changed_afterwards() -> None:
    line = request_line(scope(path="/public/x"))
    read = inbound_of([HOST], "10.0.0.1", RESOLVER, LIMITS)
    for value, name in ((LIMITS, "max_header_bytes"), (read, "html"), (line, "path")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, name, "/admin")
