"""The canonical request target, sans-I/O: ``verity.gateway.target`` function by function.

tests/gateway/test_target.py proves the same rules over real sockets (slow); these tests
pin each rule at its edges in microseconds, so that ``make mutate`` can run them per mutant.
"""

from __future__ import annotations

from typing import Any

import pytest

from verity.gateway.errors import BadRequestError
from verity.gateway.settings import PathMatching, RouteConfig
from verity.gateway.target import (
    AMBIGUOUS,
    METHOD_OVERRIDE_HEADERS,
    AmbiguousTargetError,
    apply_matching,
    canonical_path,
    decided_method,
    decode_path,
    routing_path,
    split_target,
)


def route(**options: Any) -> RouteConfig:
    return RouteConfig(name="app", host="app.test", upstream="http://upstream.test", **options)


def refused(call: Any, *args: Any) -> AmbiguousTargetError:
    with pytest.raises(AmbiguousTargetError) as caught:
        call(*args)
    return caught.value


# --- split_target: origin and absolute form ----------------------------------------------


@pytest.mark.parametrize(
    ("target", "split"),
    [
        ("/a/b?x=1&y", ("/a/b", "x=1&y")),
        ("/a?b?c", ("/a", "b?c")),
        ("/", ("/", "")),
        ("http://app.test/a/b?x=1", ("/a/b", "x=1")),
        ("https://app.test:8443/a", ("/a", "")),
        ("HTTPS://App.Test/A", ("/A", "")),
        ("Http://app.test", ("/", "")),
        ("http://user@app.test:80/p?q", ("/p", "q")),
        ("http://app.test/a//b", ("/a//b", "")),
        ("http:///a", ("/a", "")),
    ],
)
def test_origin_and_absolute_form_targets_split_into_path_and_query(
    target: str, split: tuple[str, str]
) -> None:
    assert split_target(target) == split


def test_absolute_form_target_cannot_hide_a_method_override_in_an_authority_only_query() -> None:
    # "http://app.test?_method=DELETE": the path is empty ("/") and the query is
    # _method=DELETE (RFC 3986 3.2); under h11 the proxy forwards that query upstream,
    # so the override must be decided too. The query was dropped and POST decided.
    assert split_target("http://app.test?_method=DELETE") == ("/", "_method=DELETE")
    path, query = split_target("http://app.test?_method=DELETE&next=/public/x")
    assert (path, query) == ("/", "_method=DELETE&next=/public/x")
    assert refused(decided_method, route(), "POST", [], query).public_message == (
        "Method overrides are not accepted here."
    )


def test_absolute_form_fragment_is_part_of_the_path_and_refused() -> None:
    path, query = split_target("http://app.test#/admin")
    assert (path, query) == ("/#/admin", "")
    refused(decode_path, path)


@pytest.mark.parametrize("target", ["*", "", "app.test/a", "ftp://app.test/a", "http:/a", "?x"])
def test_targets_in_no_known_form_are_400(target: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        split_target(target)
    assert (caught.value.status, caught.value.public_message) == (400, "Malformed request target.")
    assert not isinstance(caught.value, AmbiguousTargetError)


# --- decode_path: one decode, ambiguous spellings refused ---------------------------------


@pytest.mark.parametrize(
    ("sent", "decoded"),
    [
        ("/", "/"),
        ("/a/b.txt", "/a/b.txt"),
        ("/.well-known/x", "/.well-known/x"),
        ("/a;b=c/d", "/a;b=c/d"),
        ("/~user/x@y:z!$&'()*+,=", "/~user/x@y:z!$&'()*+,="),
        ("/a%20b", "/a b"),
        ("/%41%62", "/Ab"),
        ("/a%7eb", "/a~b"),
        ("/caf%C3%A9", "/caf\u00e9"),
        ("/caf\u00c3\u00a9", "/caf\u00e9"),  # raw UTF-8 bytes, read as latin-1 characters
        ("/%C2%A1", "/\u00a1"),  # the first printable after the C1 controls
        ("/%3F%23", "/?#"),
        ("/a.b./c".replace("./", "/"), "/a.b/c"),
    ],
)
def test_unambiguous_paths_decode_once(sent: str, decoded: str) -> None:
    assert decode_path(sent) == decoded


@pytest.mark.parametrize(
    "sent",
    [
        "/admin/%2e%2e/public", "/admin%2Fx", "/admin%2fx", "/a%5cb", "/a%5Cb", "/a%2E",
        "/a%25", "/a%252f", "/a%", "/a%4", "/a%zz", "/a\\b", "/a#b", "/a//b", "//a",
        "/a%2f%2fb", "/a/./b", "/a/../b", "/a/.", "/a/..", "/..", "/admin./x", "/admin.",
        "/a%20/b", "/a%20", "/a /b", "/a\x00", "/a%00", "/a\x1f", "/a%1F", "/a\x7f",
        "/a%7f", "/a%7F", "/a%C2%80", "/a%C2%9F", "/a%C2%A0", "/a\x20b", "/a\tb",
        "/%EF%BD%81dmin", "/%FF", "/%C3", "/\u0100", "relative", "a%41",
    ],
)  # fmt: skip
def test_ambiguous_paths_are_refused(sent: str) -> None:
    error = refused(decode_path, sent)
    assert (error.status, error.public_message, error.reason_code) == (
        400, AMBIGUOUS, "ambiguous_target"
    )  # fmt: skip


def test_a_del_byte_never_enters_the_path() -> None:
    for sent in ("/a\x7f", "/a\x7fb/c", "/a%7F", "/a%7fb", "/%C3%A9\x7f", "/%C3%A9%7F"):
        refused(decode_path, sent)
    assert decode_path("/a%7E") == "/a~"  # the byte before DEL is fine


def test_ambiguous_target_error_defaults() -> None:
    error = AmbiguousTargetError()
    assert (error.status, error.public_message, error.reason_code) == (
        400, "The request target is ambiguous.", "ambiguous_target"
    )  # fmt: skip
    assert isinstance(error, BadRequestError)


# --- path parameters and case ------------------------------------------------------------


@pytest.mark.parametrize(
    ("decoded", "routed"),
    [("/a;x=1/b;y", "/a/b"), ("/a/b", "/a/b"), ("/;x", "/"), ("/a;b/c;d;e/f", "/a/c/f")],
)
def test_routing_path_drops_parameters(decoded: str, routed: str) -> None:
    assert routing_path(decoded) == routed


def test_parameters_are_refused_by_default() -> None:
    error = refused(apply_matching, "/admin;x/settings", PathMatching())
    assert error.public_message == "Path parameters (;) are not accepted here."
    assert apply_matching("/Admin/x", PathMatching()) == "/Admin/x"


def test_stripped_parameters_cannot_leave_an_empty_or_dot_segment() -> None:
    strip = PathMatching(parameters="strip")
    assert apply_matching("/admin;jsessionid=1/x;a", strip) == "/admin/x"
    for decoded in ("/a/;x/b", "/a/..;x/b", "/a/.;x", "/a/b.;x/c", "/a/b ;x"):
        assert refused(apply_matching, decoded, strip).public_message == AMBIGUOUS, decoded


@pytest.mark.parametrize(
    ("case", "canonical"), [("insensitive", "/admin/x"), ("sensitive", "/ADMIN/X"),
                            ("consistent", "/ADMIN/X")],
)  # fmt: skip
def test_case_rule(case: str, canonical: str) -> None:
    assert canonical_path(route(path_matching={"case": case}), "/ADMIN/X") == canonical
    both = route(path_matching={"case": case, "parameters": "strip"})
    assert canonical_path(both, "/ADMIN;v=1/X") == canonical


# --- method overrides --------------------------------------------------------------------

DECIDE = route(method_override="decide")


def test_override_header_names_are_the_three_known_ones() -> None:
    assert METHOD_OVERRIDE_HEADERS == (
        b"x-http-method-override", b"x-method-override", b"x-http-method"
    )  # fmt: skip


@pytest.mark.parametrize(
    "name",
    [b"x-http-method-override", b"x-method-override", b"x-http-method", b"x_http_method_override",
     b"X_Method_Override", b"x_http_method", b"x-http_method"],
)  # fmt: skip
def test_every_override_header_is_refused_by_default_and_decided_on_opt_in(name: bytes) -> None:
    headers = [(b"accept", b"*/*"), (name, b"delete")]
    assert refused(decided_method, route(), "POST", headers, "").public_message == (
        "Method overrides are not accepted here."
    )
    assert decided_method(DECIDE, "POST", headers, "") == "DELETE"


@pytest.mark.parametrize(
    "query",
    ["_method=DELETE", "a=1&_method=DELETE", "a=1;_method=DELETE", "_METHOD=DELETE",
     ".method=DELETE", "+.method=DELETE", "+_method=DELETE", "%5Fmethod=DELETE",
     "_%6Dethod=DELETE", "_%6dethod=DEL%45TE", "_method+=DELETE", "_method=delete"],
)  # fmt: skip
def test_every_query_override_spelling_is_refused_by_default_and_decided_on_opt_in(
    query: str,
) -> None:
    refused(decided_method, route(), "POST", [], query)
    assert decided_method(DECIDE, "POST", [], query) == "DELETE"


@pytest.mark.parametrize(
    ("headers", "query"),
    [([(b"x_custom", b"DELETE"), (b"x-http-method-overrides", b"DELETE")], ""),
     ([], "method=DELETE&x_method=PUT&_methods=PATCH&a=%41"), ([], "")],
)  # fmt: skip
def test_lookalike_overrides_change_nothing(headers: list[tuple[bytes, bytes]], query: str) -> None:
    assert decided_method(route(), "POST", headers, query) == "POST"
    assert decided_method(DECIDE, "POST", headers, query) == "POST"


def test_agreeing_overrides_decide_and_conflicting_ones_are_refused() -> None:
    agreeing = [(b"x-http-method-override", b"delete"), (b"x_method_override", b"DELETE")]
    assert decided_method(DECIDE, "POST", agreeing, "_method=Delete") == "DELETE"
    conflicting = [(b"x-http-method-override", b"DELETE")]
    error = refused(decided_method, DECIDE, "POST", conflicting, "_method=PUT")
    assert error.public_message == "Conflicting method overrides."
    error = refused(decided_method, DECIDE, "POST", [], "_method=PUT&.method=PATCH")
    assert error.public_message == "Conflicting method overrides."


def test_a_malformed_override_is_400() -> None:
    with pytest.raises(BadRequestError) as caught:
        decided_method(DECIDE, "POST", [(b"x-http-method", b"DEL ETE")], "")
    assert (caught.value.status, caught.value.public_message) == (400, "Malformed request method.")
