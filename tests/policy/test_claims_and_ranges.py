"""Namespaced claims (``https://example.com/roles``) and the CIDR spellings other engines
accept (host bits set, IPv4-mapped IPv6): what loads, what it means, what warns."""

from __future__ import annotations

import pytest

from verity.model import AccessRequest, NetworkContext, Principal, parse_ip
from verity.policy import Engine, compile_policy, load_policy

NAMESPACED = "https://example.com/roles"


def _engine(allow: str) -> Engine:
    return compile_policy(load_policy(f"rules:\n  - name: r\n    allow: {allow}\n"))


def _with_claims(claims: dict[str, object]) -> AccessRequest:
    return AccessRequest(principal=Principal(id="u", claims=claims), time=0)


ADMIN = _with_claims({NAMESPACED: ["admin", "dev"]})
NOT_ADMIN = _with_claims({NAMESPACED: ["dev"]})


@pytest.mark.parametrize(
    "allow",
    [
        r"{claims: {'https://example\.com/roles': admin}}",
        "{claims: [{claim: 'https://example.com/roles', values: admin}]}",
        "{claims: [{claim: ['https://example.com/roles'], values: [admin, owner]}]}",
    ],
    ids=["escaped-dots", "list-form", "list-form-segments"],
)
def test_namespaced_claim_can_be_matched_by_an_escaped_or_list_form_path(allow: str) -> None:
    engine = _engine(allow)
    assert not engine.policy.warnings
    assert engine.decide(ADMIN).allowed
    assert not engine.decide(NOT_ADMIN).allowed


def test_namespaced_claim_written_with_plain_dots_warns_at_load_that_it_cannot_match() -> None:
    engine = _engine("{claims: {'https://example.com/roles': admin}}")
    (warning,) = engine.policy.warnings
    assert warning.path == "rules[0].allow.claims.https://example.com/roles"
    assert "can never match" in warning.message
    assert r"'https://example\.com/roles'" in warning.message
    assert not engine.decide(ADMIN).allowed  # split at '.': what the warning says


def test_list_form_reaches_into_nested_claims_with_literal_names() -> None:
    engine = _engine("{claims: [{claim: [realm_access, 'a.b'], values: admin}]}")
    assert engine.decide(_with_claims({"realm_access": {"a.b": "admin"}})).allowed
    assert not engine.decide(_with_claims({"realm_access": {"a": {"b": "admin"}}})).allowed


def test_denied_namespaced_claim_is_explained_with_its_escaped_path() -> None:
    engine = _engine(r"{claims: {'https://example\.com/roles': admin}}")
    assert r"claim https://example\.com/roles = admin" in engine.decide(NOT_ADMIN).reason


@pytest.mark.parametrize(
    ("allow", "message"),
    [
        ("{claims: [{claim: x}]}", "expected {claim:"),
        ("{claims: [{claim: [], values: 1}]}", "claim name"),
        ("{claims: [{claim: x, values: {a: 1}}]}", "scalar"),
        ("{claims: {'a..b': 1}}", "empty segment"),
        ("{claims: []}", "mapping of claim path"),
    ],
)
def test_bad_claim_criteria_are_refused(allow: str, message: str) -> None:
    from verity.errors import PolicyLoadError

    with pytest.raises(PolicyLoadError, match=message):
        _engine(allow)


def _from(ip: str) -> AccessRequest:
    return AccessRequest(
        principal=Principal(id="u"), time=0, network=NetworkContext(ip=parse_ip(ip))
    )


def test_cidr_with_host_bits_set_loads_as_its_network_with_a_warning() -> None:
    engine = _engine("{ip: [192.168.1.1/24]}")
    (warning,) = engine.policy.warnings
    assert warning.path == "rules[0].allow.ip[0]"
    assert "host bits are set" in warning.message
    assert engine.decide(_from("192.168.1.77")).allowed
    assert not engine.decide(_from("192.168.2.1")).allowed


def test_ipv4_mapped_range_matches_ipv4_and_ipv4_mapped_clients() -> None:
    engine = _engine("{ip: ['::ffff:10.0.0.0/104']}")
    (warning,) = engine.policy.warnings
    assert "10.0.0.0/8" in warning.message
    assert engine.decide(_from("10.1.2.3")).allowed
    assert engine.decide(_from("::ffff:10.1.2.3")).allowed
    assert not engine.decide(_from("11.0.0.1")).allowed
    assert not engine.decide(_from("::ffff:11.0.0.1")).allowed
    assert not engine.decide(_from("::a01:203")).allowed  # IPv4-compatible, not mapped


def test_ipv4_range_matches_ipv4_mapped_clients() -> None:
    engine = _engine("{ip: [10.0.0.0/8]}")
    assert not engine.policy.warnings
    assert engine.decide(_from("::ffff:10.1.2.3")).allowed
    assert not engine.decide(_from("::ffff:11.1.2.3")).allowed
