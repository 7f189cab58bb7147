"""``AccessRequest.from_dict`` accepts exactly what request files accept, and builds the
same request as the checking path (``verity.request_io``), with every problem named."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verity.errors import RequestError
from verity.model import AccessRequest, PrincipalKind
from verity.request_dict import request_from_dict
from verity.request_io import request_from_mapping

BASE: dict[str, Any] = {
    "principal": {"id": "carol", "roles": ["contractor"], "mfa": True},
    "time": 1763978400.0,
    "action": "read",
    "resource": {"type": "wiki-page", "id": "p1", "attributes": {"owner": "bob"}},
    "device": {"id": "laptop", "managed": True, "os_type": " MacOS ", "os_version": "14.5"},
    "network": {"ip": "::ffff:10.0.0.1", "region": " de "},
}

text = st.text(min_size=0, max_size=6)
names = st.lists(st.sampled_from(["a", "b", "admin", "Eng", " x "]), max_size=3)
scalar = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), text)
json_value = st.recursive(
    scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(text, inner, max_size=3)),
    max_leaves=6,
)
epoch = st.one_of(
    st.integers(0, 2_000_000_000),
    st.floats(0, 2e9, allow_nan=False),
    st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=2))]),
    ).map(lambda d: d.isoformat()),
)
ips = st.sampled_from(["10.0.0.1", " 192.168.1.9", "::ffff:10.1.2.3", "2001:db8::1", "::1"])


def _optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


principals = st.fixed_dictionaries(
    {"id": st.text(min_size=1, max_size=6)},
    optional={
        "kind": st.sampled_from([k.value for k in PrincipalKind]),
        "email": st.one_of(st.none(), text),
        "groups": names,
        "roles": names,
        "claims": st.dictionaries(text, json_value, max_size=3),
        "auth_methods": names,
        "mfa": st.booleans(),
        "auth_time": st.one_of(st.none(), epoch),
        "mfa_time": st.one_of(st.none(), epoch),
        "spiffe_id": st.one_of(st.none(), text),
        "session_id": st.one_of(st.none(), text),
    },
)
devices = _optional(
    id=text,
    managed=st.booleans(),
    disk_encrypted=st.booleans(),
    screen_lock=st.booleans(),
    firewall=st.booleans(),
    os_type=st.sampled_from(["macos", " Windows", "LINUX ", ""]),
    os_version=text,
)
requests = st.fixed_dictionaries(
    {"time": epoch},
    optional={
        "principal": st.one_of(st.none(), principals),
        "action": st.one_of(st.none(), text),
        "resource": _optional(
            type=st.one_of(st.none(), text),
            id=st.one_of(st.none(), text),
            attributes=st.dictionaries(text, json_value, max_size=3),
        ),
        "http": st.fixed_dictionaries(
            {"host": st.sampled_from(["Wiki.Example.COM.", "a:8080", "[::1]:443"])},
            optional={
                "method": st.sampled_from(["get", " POST "]),
                "path": st.sampled_from(["/a/../b", "/%61dmin", "x//y?q=1"]),
                "headers": st.dictionaries(st.sampled_from(["X-A", "x-b"]), text, max_size=2),
            },
        ),
        "device": st.one_of(st.none(), devices),
        "network": _optional(
            ip=st.one_of(st.none(), ips),
            region=st.one_of(st.none(), st.sampled_from(["de", "US "])),
        ),
        "trust_score": st.one_of(st.none(), st.integers(0, 100)),
        "grants": st.dictionaries(text, epoch, max_size=2),
        "context": st.dictionaries(text, json_value, max_size=3),
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests)
def test_from_dict_equals_the_checking_path(document: dict[str, Any]) -> None:
    original = copy.deepcopy(document)
    fast = AccessRequest.from_dict(document)
    assert fast == request_from_mapping(document)
    assert document == original  # the input is not changed


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests, st.data())
def test_from_dict_refuses_what_files_refuse(document: dict[str, Any], data: Any) -> None:
    """Replace one value with a value of a wrong type: both paths refuse it."""
    paths = [(k,) for k in document] + [
        (k, sub) for k, v in document.items() if isinstance(v, dict) for sub in v
    ]
    path = data.draw(st.sampled_from(paths))
    bad = data.draw(st.sampled_from([[1], {"x": [1]}, 1.5j, object()]))
    target = document
    for key in path[:-1]:
        target = target[key]
    if path[-1] in ("claims", "attributes", "context") or path[:1] == ("context",):
        return  # free-form values: anything JSON gives is accepted
    if path[:2] in (("resource", "attributes"), ("principal", "claims")):
        return
    target[path[-1]] = bad
    with pytest.raises(RequestError):
        request_from_mapping(document)
    with pytest.raises(RequestError) as caught:
        request_from_dict(document)
    assert any(p.path.startswith(".".join(path)) for p in caught.value.problems)


def test_from_dict_normalises_like_the_constructors() -> None:
    request = AccessRequest.from_dict(BASE)
    assert request.device is not None
    assert request.device.os_type == "macos"
    assert str(request.network.ip) == "10.0.0.1"
    assert request.network.region == "DE"
    assert request.principal.roles == frozenset({"contractor"})
    assert request.resource.attributes["owner"] == "bob"


def test_from_dict_copies_mutable_input() -> None:
    document = copy.deepcopy(BASE)
    document["context"] = {"tags": ["a"]}
    request = AccessRequest.from_dict(document)
    document["resource"]["attributes"]["owner"] = "mallory"
    document["context"]["tags"].append("b")
    document["principal"]["roles"].append("admin")
    assert request.resource.attributes["owner"] == "bob"
    assert request.context["tags"] == ("a",)
    assert "admin" not in request.principal.roles


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        ({"time": None}, "time", "UNIX seconds"),
        ({"time": True}, "time", "UNIX seconds"),
        ({"time": "2026-01-01T10:00:00"}, "time", "zone offset"),
        ({"time": "yesterday"}, "time", "ISO 8601"),
        ({"time": 10**400}, "time", "out of range"),
        ({"principal": {"id": ""}}, "principal.id", "non-empty"),
        ({"principal": {"id": "a", "mfa": 1}}, "principal.mfa", "true or false"),
        ({"principal": {"id": "a", "kind": "root"}}, "principal.kind", "user, service"),
        ({"principal": {"id": "a", "roles": "admin"}}, "principal.roles", "list of strings"),
        ({"principal": {"id": "a", "roles": None}}, "principal.roles", "list of strings"),
        ({"principal": {"id": "a", "is_admin": True}}, "principal.is_admin", "unknown key"),
        ({"network": {"ip": "10.0.0.300"}}, "network.ip", "not an IP address"),
        ({"network": None}, "network", "mapping"),
        ({"device": {"managed": "yes"}}, "device.managed", "true or false"),
        ({"device": {"os": "macos"}}, "device.os", "unknown key"),
        ({"trust_score": 101}, "trust_score", "0 to 100"),
        ({"trust_score": True}, "trust_score", "0 to 100"),
        ({"grants": {"g": "soon"}}, "grants.g", "ISO 8601"),
        ({"context": []}, "context", "mapping"),
        ({"http": {"host": ""}}, "http.host", "non-empty"),
        ({"http": {"host": "a", "headers": {"x": 1}}}, "http.headers", "string"),
        ({"roles": ["admin"]}, "roles", "unknown key"),
    ],
)
def test_from_dict_names_each_problem(change: dict[str, Any], path: str, words: str) -> None:
    document = {**copy.deepcopy(BASE), **change}
    with pytest.raises(RequestError) as caught:
        AccessRequest.from_dict(document, source="api")
    problems = {p.path: p.message for p in caught.value.problems}
    assert path in problems, problems
    assert words in problems[path]
    assert "api" in str(caught.value)


def test_missing_time_and_non_mapping() -> None:
    with pytest.raises(RequestError, match="time: required"):
        AccessRequest.from_dict({"action": "read"})
    with pytest.raises(RequestError, match="a request is a mapping"):
        AccessRequest.from_dict([BASE])


def test_every_problem_is_reported_at_once() -> None:
    document = {**BASE, "trust_score": -1, "action": 3}
    with pytest.raises(RequestError) as caught:
        AccessRequest.from_dict(document)
    assert {p.path for p in caught.value.problems} == {"trust_score", "action"}


def test_deeply_nested_values_are_a_problem_not_a_crash() -> None:
    deep: Any = "x"
    for _ in range(5000):
        deep = {"a": deep}
    with pytest.raises(RequestError, match="context: nested too deeply"):
        AccessRequest.from_dict({"time": 1, "context": deep})
