"""SPIFFE ID grammar (SPIFFE ID spec section 2): a table of valid and invalid IDs."""

from __future__ import annotations

import pytest

from verity.identity.workload import InvalidSpiffeIdError, SpiffeId

VALID = [
    ("spiffe://example.org", "example.org", ""),
    ("spiffe://example.org/ns/prod/sa/web", "example.org", "/ns/prod/sa/web"),
    ("spiffe://a-b_c.9/Path.With-Mixed_Case", "a-b_c.9", "/Path.With-Mixed_Case"),
    ("spiffe://td/..a/a..", "td", "/..a/a.."),
    ("spiffe://" + "a" * 255 + "/x", "a" * 255, "/x"),
]

INVALID = [
    ("", "empty"),
    ("example.org/web", "scheme"),
    ("SPIFFE://example.org/web", "scheme"),
    ("https://example.org/web", "scheme"),
    ("spiffe:/example.org/web", "scheme"),
    ("spiffe://", "trust domain is missing"),
    ("spiffe:///web", "trust domain is missing"),
    ("spiffe://Example.org/web", "lower-case"),
    ("spiffe://exa mple.org", "lower-case"),
    ("spiffe://example.org:8443/web", "port"),
    ("spiffe://user@example.org/web", "user info"),
    ("spiffe://user:pw@example.org/web", "user info"),
    ("spiffe://example.org/web?x=1", "query"),
    ("spiffe://example.org/web#frag", "fragment"),
    ("spiffe://example.org/w%65b", "percent"),
    ("spiffe://example.org/", "trailing slash"),
    ("spiffe://example.org/web/", "trailing slash"),
    ("spiffe://example.org//web", "empty segments"),
    ("spiffe://example.org/./web", "'.' or '..'"),
    ("spiffe://example.org/web/..", "'.' or '..'"),
    ("spiffe://example.org/we*b", "path segment characters"),
    ("spiffe://example.org/caf\u00e9", "path segment characters"),
    ("spiffe://" + "a" * 256 + "/x", "longer than 255"),
    ("spiffe://example.org/" + "a" * 2040, "longer than 2048"),
]


@pytest.mark.parametrize(("text", "domain", "path"), VALID)
def test_valid_spiffe_ids_parse_and_round_trip(text: str, domain: str, path: str) -> None:
    sid = SpiffeId.parse(text)
    assert (sid.trust_domain, sid.path) == (domain, path)
    assert str(sid) == text


@pytest.mark.parametrize(("text", "problem"), INVALID)
def test_invalid_spiffe_ids_name_the_rule(text: str, problem: str) -> None:
    with pytest.raises(InvalidSpiffeIdError) as caught:
        SpiffeId.parse(text)
    assert problem in caught.value.problem


def test_constructor_validates_like_parse() -> None:
    with pytest.raises(InvalidSpiffeIdError, match=r"'\.' or '\.\.'"):
        SpiffeId("example.org", "/a/../b")
    with pytest.raises(InvalidSpiffeIdError, match="start with '/'"):
        SpiffeId("example.org", "web")


def test_non_string_is_rejected() -> None:
    with pytest.raises(InvalidSpiffeIdError, match="string"):
        SpiffeId.parse(42)  # type: ignore[arg-type]


def test_trust_domain_id_and_membership() -> None:
    sid = SpiffeId.parse("spiffe://example.org/web")
    assert str(sid.trust_domain_id) == "spiffe://example.org"
    assert sid.member_of("example.org")
    assert not sid.member_of("example.org.evil")
    assert sid.trust_domain_id.is_trust_domain
    assert not sid.is_trust_domain
