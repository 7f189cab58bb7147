"""Request values normalise what they are given, so no spelling slips past a rule."""

from __future__ import annotations

import dataclasses
import inspect
import ipaddress
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import verity
import verity.model
from verity.model import (
    AccessRequest,
    Decision,
    Device,
    Effect,
    HttpTarget,
    NetworkContext,
    Principal,
    Reason,
    Resource,
    normalize_host,
    normalize_path,
    parse_ip,
)


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("/docs/a", "/docs/a"),
        ("docs/a", "/docs/a"),
        ("/docs/../admin", "/admin"),
        ("/docs/./a//b", "/docs/a/b"),
        ("//admin", "/admin"),
        ("///admin", "/admin"),
        ("/%61dmin", "/admin"),
        ("/docs/%2e%2e/admin", "/admin"),
        ("/a/b/?q=1#frag", "/a/b/"),
        ("/../../etc/passwd", "/etc/passwd"),
        ("\\admin", "/admin"),
        ("", "/"),
    ],
)
def test_paths_are_canonical(raw: str, normal: str) -> None:
    assert normalize_path(raw) == normal


@pytest.mark.parametrize(
    ("raw", "normal"),
    [("Wiki.Internal", "wiki.internal"), ("wiki.internal:8443", "wiki.internal"), ("wiki.internal.", "wiki.internal"),
     ("[2001:DB8::1]:443", "[2001:db8::1]"), (" a.example ", "a.example")],
)  # fmt: skip
def test_hosts_are_canonical(raw: str, normal: str) -> None:
    assert normalize_host(raw) == normal


def test_ipv4_mapped_addresses_become_ipv4() -> None:
    assert parse_ip("::ffff:192.168.1.9") == ipaddress.IPv4Address("192.168.1.9")
    assert NetworkContext(ip=ipaddress.ip_address("::ffff:10.0.0.1")).ip == ipaddress.IPv4Address(
        "10.0.0.1"
    )
    with pytest.raises(ValueError, match="does not appear"):
        parse_ip("10.0.0.300")


def test_region_and_method_are_upper_case() -> None:
    assert NetworkContext(region=" de ").region == "DE"
    assert HttpTarget("h", "post").method == "POST"


def test_headers_are_lower_cased_and_read_only() -> None:
    target = HttpTarget("h", headers={"X-Team": "blue"})
    assert target.headers == {"x-team": "blue"}
    with pytest.raises(TypeError):
        target.headers["x-team"] = "red"  # type: ignore[index]


def test_values_are_immutable_deep_down() -> None:
    principal = Principal(id="a", groups=frozenset({"g"}), claims={"org": {"teams": ["red"]}})
    with pytest.raises(dataclasses.FrozenInstanceError):
        principal.id = "b"  # type: ignore[misc]
    assert principal.claims["org"]["teams"] == ("red",)
    with pytest.raises(TypeError):
        principal.claims["org"]["x"] = 1  # type: ignore[index]
    request = AccessRequest(principal=principal, time=0, grants={"g": 10.0})
    with pytest.raises(TypeError):
        request.grants["h"] = 1.0  # type: ignore[index]


def test_decision_is_a_read_only_value() -> None:
    decision = Decision(Effect.DENY, None, "d1", "v", (Reason("c", "m"),))
    with pytest.raises(AttributeError):
        decision.effect = Effect.ALLOW  # type: ignore[misc]
    assert not decision.allowed
    assert decision.reason == "m"
    with pytest.raises(AttributeError):
        decision.reasons[0].code = "x"  # type: ignore[misc]


def test_deferred_reason_renders_once_and_equals_an_eager_one() -> None:
    calls: list[int] = []

    def render(n: int) -> str:
        calls.append(n)
        return f"message {n}"

    lazy = Reason("c", "", "rule", "hint", render, 7)
    assert calls == []
    assert lazy.message == "message 7"
    assert lazy.message == "message 7"
    assert calls == [7]
    assert lazy == Reason("c", "message 7", "rule", "hint")
    assert hash(lazy) == hash(Reason("c", "message 7", "rule", "hint"))
    assert "message 7" in repr(lazy)


def test_facade_all_matches_the_namespace() -> None:
    public = {
        name
        for name in dir(verity)
        if not name.startswith("_") and not inspect.ismodule(getattr(verity, name))
    }
    assert set(verity.__all__) - {"__version__"} == public
    for name in verity.__all__:
        assert hasattr(verity, name)


def test_a_canonical_http_target_is_never_decoded_again() -> None:
    # The gateway's path is decoded once; decoding it again is the double-decode attack.
    target = HttpTarget.canonical(host="H:443", method="get", path="/a%2f..%2fb")
    assert (target.host, target.method, target.path) == ("h", "GET", "/a%2f..%2fb")
    assert HttpTarget("h", path="/a%2f..%2fb").path == "/b"  # request files still normalise


# --------------------------------------------------------------------------- trusted

_roles = st.frozensets(st.sampled_from(["admin", "eng", "ops"]), max_size=3)


@settings(max_examples=200, deadline=None)
@given(
    ident=st.text(min_size=1, max_size=5),
    roles=_roles,
    groups=_roles,
    mfa=st.booleans(),
    claims=st.dictionaries(st.text(max_size=3), st.lists(st.integers(), max_size=2), max_size=2),
    os_type=st.sampled_from([" MacOS", "linux", "Windows "]),
    ip=st.sampled_from(["10.0.0.1", "::ffff:10.0.0.2", "2001:db8::1"]),
    region=st.sampled_from(["de", " us", "FR"]),
    owner=st.text(max_size=3),
    when=st.floats(0, 2e9, allow_nan=False),
)
def test_trusted_constructors_equal_the_checking_ones(
    ident: str,
    roles: frozenset[str],
    groups: frozenset[str],
    mfa: bool,
    claims: dict[str, list[int]],
    os_type: str,
    ip: str,
    region: str,
    owner: str,
    when: float,
) -> None:
    """Canonical values (from a constructor) given to ``trusted`` build an equal value."""
    principal = Principal(ident, roles=roles, groups=groups, mfa=mfa, claims=claims)
    device = Device("d", managed=True, os_type=os_type, os_version="14")
    network = NetworkContext(parse_ip(ip), region)
    resource = Resource("doc", "r1", {"owner": owner})
    checked = AccessRequest(
        principal, when, "read", resource, None, device, network, 50, {"g": 1.0}, {"k": [1]}
    )
    fast = AccessRequest.trusted(
        Principal.trusted(ident, roles=roles, groups=groups, mfa=mfa, claims=principal.claims),
        when,
        "read",
        Resource.trusted("doc", "r1", resource.attributes),
        None,
        Device.trusted("d", managed=True, os_type=device.os_type, os_version="14"),
        NetworkContext.trusted(network.ip, network.region),
        50,
        checked.grants,
        checked.context,
    )
    assert fast == checked
    assert type(fast) is AccessRequest
    assert type(fast.principal) is Principal
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.principal.mfa = not mfa  # type: ignore[misc]


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda: NetworkContext.trusted(None, "de"), "non-canonical"),
        (lambda: NetworkContext.trusted(ipaddress.ip_address("::ffff:10.0.0.1")), "non-canonical"),
        (lambda: NetworkContext.trusted("10.0.0.1"), "address object"),  # type: ignore[arg-type]
        (lambda: Device.trusted("d", os_type="MacOS"), "non-canonical"),
        (lambda: Principal.trusted("a", roles={"admin"}), "frozenset"),  # type: ignore[arg-type]
        (lambda: Principal.trusted("a", claims={"x": 1}), "read-only"),
        (
            lambda: Principal.trusted("a", claims=MappingProxyType({"x": [1]})),
            "read-only",
        ),
        (lambda: Resource.trusted("t", attributes={"owner": "bob"}), "read-only"),
        (
            lambda: AccessRequest.trusted(Principal.anonymous(), 0.0, context={"a": 1}),
            "read-only",
        ),
    ],
)
def test_trusted_preconditions_are_checked_in_test_mode(build: Any, words: str) -> None:
    """The suite runs with ``CHECK_TRUSTED``: a broken precondition raises, never passes."""
    assert verity.model.CHECK_TRUSTED
    with pytest.raises(ValueError, match=words):
        build()
