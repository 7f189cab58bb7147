"""Differential test of the request target: the path the upstream serves is the path the
audit log says was allowed, through the reverse proxy and through nginx forward-auth.

Real processes and sockets on 127.0.0.1: ``verity serve`` (subprocess) with a SQLite audit
log; two raw echo upstreams (``tests.e2e.differential.RawEchoUpstream``) that record the
request line's target byte for byte; Debian nginx running
``deploy/nginx/verity-forward-auth.conf`` in front of one of them. Targets are sent with
``http.client`` as written, so no client library normalises them.

The policy makes a disagreement a real bypass: ``/admin/**`` is for admins only (denied
to everyone here), ``/public/**`` is open to anonymous callers, the rest is for ``staff``.
Each target is sent twice per front: anonymously and with a ``staff`` bearer token.

**The property.** For every request the upstream receives:

1. it carries exactly one ``X-Verity-Decision-Id``, and the audit log holds that decision:
   an ``allow`` for the same host and method;
2. the raw path of its request line, percent-decoded once (what the upstream framework
   routes on), *equals* the path of that audit event;
3. the raw path is unambiguous: under every reading in ``differential.READINGS`` (decode
   twice, resolve dot segments before or after decoding, ``\\`` as ``/``, ``;params``
   dropped, trailing dots trimmed, NFKC) it is still a path the policy
   (restated in ``differential.policy_allows``, independent of Verity's code) allows the
   same caller.

And a request not answered 200 (a 400, 401, 403, or nginx's 500 for a refused check) never
reaches the upstream; a 200 reached it exactly once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.e2e.differential import AuditIndex, RawEchoUpstream, judge, send_raw
from tests.e2e.test_nginx_forward_auth import (
    ISSUER,
    ensure_nginx,
    verity_behind_nginx,
    write_verity,
)
from tests.gateway.servers import free_port
from verity.identity.dev import generate_private_key, mint

pytestmark = pytest.mark.services
NGINX_HOST = "app.example.com"  # the server_name of deploy/nginx/verity-forward-auth.conf
PROXY_HOST = "proxy.example.com"
CALLERS = ("anonymous", "staff")
Test = TypeVar("Test", bound=Callable[..., Any])
POLICY = """
version: 1
rules:
  - name: admins-only
    resources: [{paths: ["/admin/**"]}]
    deny: {not: {groups: [admins]}}
  - name: public
    resources: [{paths: ["/public/**"]}]
    allow: {}
  - name: staff
    allow: {groups: [staff]}
"""


@dataclass(frozen=True)
class Front:
    """Where a client sends requests, and the upstream behind it."""

    name: str
    port: int
    host: str
    upstream: RawEchoUpstream


class Stack:
    """The running processes, as the tests use them."""

    def __init__(self, fronts: dict[str, Front], audit: AuditIndex, staff_token: str) -> None:
        self.fronts = fronts
        self.audit = audit
        self.staff_token = staff_token

    def __repr__(self) -> str:  # short in Hypothesis reports (and no token)
        return f"Stack({', '.join(f'{f.name} :{f.port}' for f in self.fronts.values())})"

    def probe(self, front_name: str, target: str, caller: str) -> tuple[int, list[str]]:
        """Send ``target`` as ``caller``; the status and every violation of the property."""
        front = self.fronts[front_name]
        label = uuid.uuid4().hex
        headers = [("X-Probe", label)]
        if caller == "staff":
            headers.append(("Authorization", f"Bearer {self.staff_token}"))
        status = send_raw(front.port, front.host, target, headers)
        seen = front.upstream.take(label)
        where = f"{front.name}, {caller}: GET {target} -> {status}"
        if status != 200:
            targets = [r.target for r in seen]
            return status, [f"{where}: refused, yet the upstream got {targets}"] if seen else []
        if len(seen) != 1:
            return status, [f"{where}: the upstream got it {len(seen)} times"]
        return status, [f"{where}: {p}" for p in judge(self.audit, caller, front.host, seen[0])]

    def violations(self, front: str, target: str) -> list[str]:
        return [v for caller in CALLERS for v in self.probe(front, target, caller)[1]]


def routes(upstream_port: int) -> str:
    return (
        f"[{{name: app, host: {NGINX_HOST}}},\n"
        f"  {{name: proxied, host: {PROXY_HOST}, upstream: 'http://127.0.0.1:{upstream_port}'}}]"
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    ensure_nginx()
    tmp = tmp_path_factory.mktemp("target-differential")
    key = generate_private_key("ES256")
    nginx_port, verity_port = free_port(), free_port()
    with RawEchoUpstream() as behind_proxy, RawEchoUpstream() as behind_nginx:
        config = write_verity(
            tmp, verity_port, key, policy=POLICY, routes=routes(behind_proxy.port), audited=True
        )
        with verity_behind_nginx(tmp, config, verity_port, nginx_port, behind_nginx.port):
            audit = AuditIndex(f"sqlite:///{tmp}/audit.db")
            token = mint(key, alg="ES256", kid="e2e", issuer=ISSUER, audience="verity",
                         subject="sam", ttl=3600, claims={"groups": ["staff"]})  # fmt: skip
            fronts = {
                "proxy": Front("proxy", verity_port, PROXY_HOST, behind_proxy),
                "nginx": Front("nginx", nginx_port, NGINX_HOST, behind_nginx),
            }
            try:
                yield Stack(fronts, audit, token)
            finally:
                audit.close()
            for front in fronts.values():
                stray = front.upstream.unlabelled()
                assert not stray, f"requests no probe sent reached the {front.name} upstream"


# Every spelling the review reported, adapted to this policy where needed.
KNOWN_SPELLINGS = [
    "/admin/settings%252f..%252f..%252freports",  # proxy: decided /reports, served /admin
    "/admin/settings%252f..%252f..%252fpublic/y",
    "/admin/x/../../public/y",  # nginx forwards the raw URI, Verity decided /public/y
    "/admin/x%2f..%2f..%2fpublic/y",
    "/admin/x%2F..%2F..%2Fpublic/y",
    "/admin/x/%2e%2e/%2e%2e/public/y",
    "/admin/x%5c..%5c..%5cpublic/y",
    "/admin/x\\..\\..\\public/y",
    "/public/%252e%252e/admin/settings",
    "/public/..%255cadmin/settings",
    "/public/%25%32%65%25%32%65/admin/settings",
    "/ADMIN/settings",
    "/admin;x=1/settings",
    "/public/..;/admin/settings",
    "/admin./settings",
    "/%EF%BD%81dmin/settings",
    "//admin/settings",
    "/public/y?/../../admin",
    "/public/%00/../../admin/settings",
]
# Plain targets that must get through (the property must not hold by refusing everything).
MUST_REACH = [("/public/y", "anonymous"), ("/public/y?q=1", "anonymous"),
              ("/reports/q3", "staff"), ("/public/", "staff")]  # fmt: skip

WORDS = ["public", "admin", "y", "settings", "Public", "ADMIN", "%70ublic", "%61dmin"]
TRICKS = ["", ".", "..", "%2e", "%2E", "%2e%2e", "%252e", "%252e%252e", "%25%32%65",
          "%25%32%65%25%32%65", "aDmin", "PUBLIC", "%EF%BD%81dmin", "%EF%BD%90ublic"]  # fmt: skip
SUFFIXES = ["", "", ".", ";x=1", "%00"]
SEPARATORS = ["/", "/", "//", "%2f", "%2F", "%252f", "%5c", "\\", "%255c"]
QUERIES = ["", "?", "?q=1", "?q=/../admin"]


@st.composite
def targets(draw: st.DrawFn) -> str:
    """A plain target (words and ``/``) or a tricky one (any piece, suffix, separator):
    ``/`` + a segment, then up to five (separator, segment) pairs, then a query."""
    tricky = draw(st.booleans())
    pieces = st.sampled_from(WORDS + TRICKS if tricky else WORDS)
    suffixes = st.sampled_from(SUFFIXES if tricky else [""])
    separators = st.sampled_from(SEPARATORS if tricky else ["/"])
    target = "/" + draw(pieces) + draw(suffixes)
    for _ in range(draw(st.integers(0, 5))):
        target += draw(separators) + draw(pieces) + draw(suffixes)
    return target + draw(st.sampled_from(QUERIES))


def _known_examples(test: Test) -> Test:
    """``@example(target=...)`` for each of ``KNOWN_SPELLINGS``."""
    for spelling in KNOWN_SPELLINGS:
        test = example(target=spelling)(test)
    return test


@pytest.mark.parametrize("front", ["proxy", "nginx"])
@settings(
    max_examples=300, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip
@_known_examples
@given(target=targets())
def test_no_target_spelling_makes_the_upstream_serve_another_path_than_the_audited_allow(
    stack: Stack, front: str, target: str
) -> None:
    problems = stack.violations(front, target)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("front", ["proxy", "nginx"])
def test_known_bypass_spellings_reach_the_upstream_only_as_the_audited_path(
    stack: Stack, front: str
) -> None:
    problems = [v for spelling in KNOWN_SPELLINGS for v in stack.violations(front, spelling)]
    for target, caller in MUST_REACH:
        status, violations = stack.probe(front, target, caller)
        problems.extend(violations)
        if status != 200:
            problems.append(f"{front}, {caller}: GET {target} -> {status}, expected it to pass")
    assert not problems, "\n".join(problems)
