"""Criteria about what is asked for (``verity.policy.leaves_request``): hosts, methods,
paths, headers, actions, resource type and attributes, relations. Each is tested at its
edges, in a rule's condition and in its ``resources:`` selector, and ``explain`` (which
runs each check's own test) must agree with ``decide`` (which runs the compiled rule)."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from verity.model import AccessRequest, HttpTarget, Principal, Resource
from verity.policy import Engine, compile_policy, load_policy
from verity.policy.checks import Trace

NOW = 1_790_000_000.0


@cache
def engine_for(condition: str, resources: str = "") -> Engine:
    selector = f"    resources: {resources}\n" if resources else ""
    return compile_policy(load_policy(f"rules:\n  - name: r\n{selector}    allow: {condition}\n"))


def request(
    host: str | None = "wiki.internal",
    method: str = "GET",
    path: str = "/",
    headers: dict[str, str] | None = None,
    *,
    action: str | None = None,
    resource: Resource | None = None,
    principal: Principal | None = None,
) -> AccessRequest:
    http = None if host is None else HttpTarget(host, method, path, headers or {})
    return AccessRequest(
        principal=principal or Principal(id="carol", groups=frozenset({"eng"})),
        time=NOW,
        action=action,
        resource=resource or Resource(),
        http=http,
    )


def allowed(engine: Engine, req: AccessRequest) -> bool:
    """``decide``'s answer, checked against ``explain``'s view of the one rule."""
    decision = engine.decide(req)
    (rule,) = engine.explain(req, all_rules=True).rules
    traced = rule.applicable and all(trace.passed for trace in rule.criteria)
    assert rule.matched is decision.allowed is traced, (decision, rule)
    return decision.allowed


def trace_of(engine: Engine, req: AccessRequest) -> Trace:
    (rule,) = engine.explain(req, all_rules=True).rules
    (trace,) = rule.criteria
    return trace


# --- hosts --------------------------------------------------------------------------------

HOST_CASES = [
    ("wiki.internal", True),
    ("WIKI.internal.", True),  # normalised before matching
    ("wiki.internal:8443", True),
    ("a.corp.test", True),
    ("a.b.corp.test", True),
    ("corp.test", False),  # the apex is not a sub-domain
    ("evilcorp.test", False),  # a suffix, not a sub-domain
    ("corp.test.evil", False),
    ("a.corp.test.evil", False),
    ("sub.wiki.internal", False),  # an exact host has no sub-domains
    ("wiki.internal.evil", False),
    ("iki.internal", False),
    (None, False),  # not HTTP
]


@pytest.mark.parametrize(("host", "expected"), HOST_CASES)
@pytest.mark.parametrize(
    ("condition", "resources"),
    [
        ('{hosts: [wiki.internal, "*.corp.test"]}', ""),
        ("{}", '[{hosts: [wiki.internal, "*.corp.test"]}]'),
    ],
    ids=["condition", "selector"],
)
def test_hosts_match_exactly_or_as_a_sub_domain(
    condition: str, resources: str, host: str | None, expected: bool
) -> None:
    assert allowed(engine_for(condition, resources), request(host)) is expected


@pytest.mark.parametrize(
    ("patterns", "host", "expected"),
    [
        ("[wiki.internal]", "wiki.internal", True),
        ("[wiki.internal]", "a.wiki.internal", False),
        ("[wiki.internal]", None, False),
        ('["*.corp.test"]', "x.corp.test", True),
        ('["*.corp.test"]', "corp.test", False),
        ('["*.corp.test"]', None, False),
    ],
)
@pytest.mark.parametrize("where", ["condition", "selector"])
def test_only_exact_or_only_wildcard_hosts(
    patterns: str, host: str | None, expected: bool, where: str
) -> None:
    engine = (
        engine_for(f"{{hosts: {patterns}}}")
        if where == "condition"
        else engine_for("{}", f"[{{hosts: {patterns}}}]")
    )
    assert allowed(engine, request(host)) is expected


def test_host_criterion_explains_itself() -> None:
    engine = engine_for('{hosts: [wiki.internal, "*.corp.test"]}')
    trace = trace_of(engine, request("payroll.internal"))
    assert (trace.code, trace.passed) == ("http.host", False)
    assert trace.expected == "host wiki.internal or *.corp.test"
    assert trace.observed == "payroll.internal"
    assert trace_of(engine, request(None)).observed == "(not HTTP)"
    decision = engine.decide(request("payroll.internal"))
    assert decision.reasons[0].code == "no_matching_rule"  # the host is not the person's to change
    assert decision.reason.endswith(
        "requires host wiki.internal or *.corp.test (observed: payroll.internal))"
    )


# --- methods ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "host", "expected"),
    [
        ("GET", "wiki.internal", True),
        ("get", "wiki.internal", True),
        ("HEAD", "wiki.internal", True),  # GET covers HEAD
        ("PUT", "wiki.internal", True),
        ("POST", "wiki.internal", False),
        ("DELETE", "wiki.internal", False),
        ("GET", None, False),
    ],
)
@pytest.mark.parametrize(
    ("condition", "resources"),
    [("{methods: [GET, PUT]}", ""), ("{}", "[{methods: [GET, PUT]}]")],
    ids=["condition", "selector"],
)
def test_methods_match_the_listed_ones(
    condition: str, resources: str, method: str, host: str | None, expected: bool
) -> None:
    assert allowed(engine_for(condition, resources), request(host, method)) is expected


def test_method_criterion_explains_itself() -> None:
    engine = engine_for("{methods: [PUT, GET]}")
    trace = trace_of(engine, request(method="POST"))
    assert (trace.code, trace.passed) == ("http.method", False)
    assert trace.expected == "HTTP method GET, HEAD, PUT"
    assert trace.observed == "POST"
    assert trace_of(engine, request(None)).observed == "(not HTTP)"


# --- paths --------------------------------------------------------------------------------

PATH_CASES = [
    ("/docs", True),  # a trailing /** also matches the bare prefix
    ("/docs/", True),
    ("/docs/a/b", True),
    ("/docsx", False),
    ("/x/docs/a", False),  # anchored at the start
    ("/api/v1/read", True),
    ("/api/v1/v2/read", False),  # * stays within one segment
    ("/api/v1/readme", False),  # anchored at the end
    ("/api//read", True),
    ("/", False),
]


@pytest.mark.parametrize(("path", "expected"), PATH_CASES)
@pytest.mark.parametrize(
    ("condition", "resources"),
    [
        ('{paths: ["/docs/**", "/api/*/read"]}', ""),
        ("{}", '[{paths: ["/docs/**", "/api/*/read"]}]'),
    ],
    ids=["condition", "selector"],
)
def test_paths_match_their_globs_whole(
    condition: str, resources: str, path: str, expected: bool
) -> None:
    req = request(path="/")
    req = AccessRequest(principal=req.principal, time=NOW,
                        http=HttpTarget.canonical(host="wiki.internal", method="GET", path=path))  # fmt: skip
    assert allowed(engine_for(condition, resources), req) is expected


@pytest.mark.parametrize("where", ["condition", "selector"])
def test_a_path_criterion_never_matches_a_request_that_is_not_http(where: str) -> None:
    engine = (
        engine_for('{paths: ["/**"]}') if where == "condition" else
        engine_for("{}", '[{paths: ["/**"]}]')
    )  # fmt: skip
    assert allowed(engine, request(None)) is False
    assert allowed(engine, request()) is True


def test_path_criterion_explains_itself() -> None:
    engine = engine_for('{paths: ["/docs/**", "/api/*/read"]}')
    trace = trace_of(engine, request(path="/admin"))
    assert (trace.code, trace.passed) == ("http.path", False)
    assert trace.expected == "path /docs/** or /api/*/read"
    assert trace.observed == "/admin"
    assert trace_of(engine, request(None)).observed == "(not HTTP)"


# --- headers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "host", "expected"),
    [
        ({"x-team": "blue"}, "wiki.internal", True),
        ({"X-Team": "red-1"}, "wiki.internal", True),
        ({"x-team": "red-"}, "wiki.internal", True),
        ({"x-team": "blue2"}, "wiki.internal", False),  # the whole value must match
        ({"x-team": "xblue"}, "wiki.internal", False),
        ({"x-team": "Blue"}, "wiki.internal", False),
        ({"x-team": ""}, "wiki.internal", False),
        ({"x-other": "blue"}, "wiki.internal", False),
        ({}, "wiki.internal", False),
        ({"x-team": "blue"}, None, False),
    ],
)
def test_a_header_must_be_present_with_a_matching_value(
    headers: dict[str, str], host: str | None, expected: bool
) -> None:
    engine = engine_for('{headers: {X-Team: [blue, "red-*"]}}')
    assert allowed(engine, request(host, headers=headers)) is expected


def test_header_criterion_explains_itself_without_a_long_value() -> None:
    engine = engine_for('{headers: {X-Team: [blue, "red-*"]}}')
    trace = trace_of(engine, request(headers={"x-team": "g" * 100}))
    assert (trace.code, trace.passed) == ("http.header", False)
    assert trace.expected == "header x-team matching blue or red-*"
    assert trace.observed == repr("g" * 80)
    assert trace_of(engine, request()).observed == "(absent)"
    assert trace_of(engine, request(None)).observed == "(absent)"


# --- actions and resource type ------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "expected"), [("read", True), ("list", True), ("write", False), (None, False)]
)
@pytest.mark.parametrize(
    ("condition", "resources"),
    [("{actions: [read, list]}", ""), ("{}", "[{actions: [read, list]}]")],
    ids=["condition", "selector"],
)
def test_actions_match_the_listed_ones(
    condition: str, resources: str, action: str | None, expected: bool
) -> None:
    req = request(None, action=action, resource=Resource("doc", "1"))
    assert allowed(engine_for(condition, resources), req) is expected


def test_action_criterion_explains_itself() -> None:
    engine = engine_for("{actions: [read, list]}")
    trace = trace_of(engine, request(None, action="write"))
    assert (trace.code, trace.passed) == ("request.action", False)
    assert trace.expected == "action list or read"
    assert trace.observed == "write"
    assert trace_of(engine, request(None)).observed == "(none)"
    decision = engine.decide(request(None, action="write"))
    assert decision.reasons[0].code == "no_matching_rule"
    assert decision.reasons[0].hint == (
        "if your work needs it, ask your administrator and quote the decision id"
    )


@pytest.mark.parametrize(
    ("kind", "expected"), [("doc", True), ("folder", True), ("secret", False), (None, False)]
)
def test_resource_types_match_the_listed_ones(kind: str | None, expected: bool) -> None:
    engine = engine_for("{resource: {type: [doc, folder]}}")
    assert allowed(engine, request(None, resource=Resource(kind, "1"))) is expected


def test_resource_type_criterion_explains_itself() -> None:
    engine = engine_for("{resource: {type: [folder, doc]}}")
    trace = trace_of(engine, request(None, resource=Resource("secret")))
    assert (trace.code, trace.passed) == ("resource.type", False)
    assert trace.expected == "resource type doc or folder"
    assert trace.observed == "secret"
    assert trace_of(engine, request(None)).observed == "(none)"


# --- resource attributes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"level": 1}, True),
        ({"level": "public"}, True),
        ({"level": True}, False),  # True is not 1
        ({"level": "1"}, False),
        ({"level": 2}, False),
        ({"level": None}, False),
        ({}, False),  # absent
    ],
)
def test_a_resource_attribute_must_equal_a_listed_value(
    attributes: dict[str, Any], expected: bool
) -> None:
    engine = engine_for("{resource: {level: [1, public]}}")
    assert allowed(engine, request(None, resource=Resource("doc", "1", attributes))) is expected


def test_resource_attribute_criterion_explains_itself_but_not_to_the_requester() -> None:
    engine = engine_for("{resource: {level: [1, public]}}")
    secret = request(None, resource=Resource("doc", "1", {"level": "top-secret"}))
    trace = trace_of(engine, secret)
    assert (trace.code, trace.passed) == ("resource.attribute", False)
    assert trace.expected == "resource level = 1 or public"
    assert trace.observed == "top-secret"  # for the operator
    assert trace_of(engine, request(None, resource=Resource("doc"))).observed == "(absent)"
    decision = engine.decide(secret)
    assert decision.reason.endswith("(closest rule 'r': requires resource level = 1 or public)")
    assert "top-secret" not in decision.reason


# --- relations ----------------------------------------------------------------------------


def owned(principal_id: str = "carol", claims: dict[str, Any] | None = None,
          **attributes: Any) -> AccessRequest:  # fmt: skip
    principal = Principal(id=principal_id, groups=frozenset({"eng", "ops"}), claims=claims or {})
    return request(None, resource=Resource("doc", "1", attributes), principal=principal)


@pytest.mark.parametrize(
    ("relation", "req", "expected"),
    [
        ("resource.owner == principal.id", owned(owner="carol"), True),
        ("resource.owner == principal.id", owned(owner="alice"), False),
        ("resource.owner == principal.id", owned(), False),
        # both sides absent are not equal
        ("resource.owner == principal.claims.team", owned(), False),
        ("resource.n == principal.claims.n", owned(claims={"n": 1}, n=True), False),
        ("resource.n == principal.claims.n", owned(claims={"n": 1}, n=1), True),
        ("resource.owner != principal.id", owned(owner="alice"), True),
        ("resource.owner != principal.id", owned(owner="carol"), False),
        ("resource.owner != principal.id", owned(), False),  # absent is not "different"
        ("principal.claims.team != resource.owner", owned(owner="a"), False),
        ("resource.n != principal.claims.n", owned(claims={"n": 1}, n=True), True),
        ("principal.id in resource.editors", owned(editors=["bob", "carol"]), True),
        ("principal.id in resource.editors", owned(editors=["bob"]), False),
        ("principal.id in resource.editors", owned(editors=[]), False),
        ("principal.id in resource.editors", owned(), False),
        ("principal.id in resource.editors", owned(editors="bob,carol"), True),
        ("principal.id in resource.editors", owned(editors="bob"), False),
        ("principal.id in resource.acl", owned(acl={"carol": "rw"}), True),
        ("principal.id in resource.acl", owned(acl={"bob": "rw"}), False),
        ("principal.id in resource.editors", owned(editors=7), False),
        ("principal.claims.n in resource.editors", owned(claims={"n": 1}, editors="1"), False),
        ("principal.claims.n in resource.editors", owned(claims={"n": True}, editors=[1]), False),
        ("principal.claims.n in resource.editors", owned(claims={"n": 1}, editors=[1]), True),
        ("principal.claims.team in resource.editors", owned(editors=["carol"]), False),
        ("resource.team in principal.groups", owned(team="ops"), True),
        ("resource.team in principal.groups", owned(team="hr"), False),
        ("resource.editors contains principal.id", owned(editors=["carol"]), True),
        ("resource.editors contains principal.id", owned(editors=["bob"]), False),
        ("resource.editors contains principal.id", owned(editors="carol"), True),
        ("resource.acl contains principal.id", owned(acl={"carol": 1}), True),
        ("resource.acl contains principal.id", owned(acl={"bob": 1}), False),
        ("resource.editors contains principal.id", owned(), False),
        ("principal.groups contains resource.team", owned(team="eng"), True),
        ("principal.groups contains resource.team", owned(team="hr"), False),
    ],
)
def test_relations_between_request_parts(relation: str, req: AccessRequest, expected: bool) -> None:
    engine = engine_for(f'{{relations: ["{relation}"]}}')
    assert allowed(engine, req) is expected
    negated = engine_for(f'{{not: {{relations: ["{relation}"]}}}}')
    assert allowed(negated, req) is (not expected)


def test_relation_criterion_shows_values_to_the_operator_only() -> None:
    engine = engine_for('{relations: ["resource.owner == principal.id"]}')
    req = owned(owner="alice")
    trace = trace_of(engine, req)
    assert (trace.code, trace.passed) == ("relation", False)
    assert trace.expected == "resource.owner == principal.id"
    assert trace.observed == "resource.owner='alice', principal.id='carol'"
    decision = engine.decide(req)
    assert decision.reason.endswith("(closest rule 'r': requires resource.owner == principal.id)")
