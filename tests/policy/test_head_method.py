"""HEAD is answered by GET handlers (RFC 9110 9.3.2): a rule about GET covers HEAD.

Found in the review of issue 10: with a deny on ``GET /reports/**`` and a broad allow,
``HEAD /reports/q3`` was allowed, and Flask, Express, Django and Starlette run the GET
handler for it (its headers and side effects reach the caller).
"""

from __future__ import annotations

from verity.model import AccessRequest, Effect, HttpTarget, Principal
from verity.policy import compile_policy, load_policy

POLICY = """
version: 1
rules:
  - name: no-report-reads
    resources: [{hosts: [app.test], methods: [GET], paths: ["/reports/**"]}]
    deny: {}
  - name: staff
    resources: [{hosts: [app.test]}]
    allow: {groups: [staff]}
  - name: docs-readers
    resources: [{hosts: [docs.test]}]
    allow: {groups: [readers], methods: [GET]}
  - name: probes
    resources: [{hosts: [probe.test], methods: [HEAD]}]
    allow: {}
"""


def decide(method: str, host: str, path: str, *groups: str) -> Effect:
    engine = compile_policy(load_policy(POLICY))
    principal = Principal(id="bob", groups=frozenset(groups))
    request = AccessRequest(principal=principal, time=0.0,
                            http=HttpTarget(host=host, method=method, path=path))  # fmt: skip
    return engine.decide(request).effect


def test_head_cannot_sidestep_a_deny_on_get() -> None:
    assert decide("GET", "app.test", "/reports/q3", "staff") is Effect.DENY
    assert decide("HEAD", "app.test", "/reports/q3", "staff") is Effect.DENY
    assert decide("POST", "app.test", "/reports/q3", "staff") is Effect.ALLOW


def test_a_condition_allowing_get_allows_head_too() -> None:
    assert decide("HEAD", "docs.test", "/handbook", "readers") is Effect.ALLOW
    assert decide("PUT", "docs.test", "/handbook", "readers") is Effect.DENY


def test_head_alone_does_not_cover_get() -> None:
    assert decide("HEAD", "probe.test", "/healthz") is Effect.ALLOW
    assert decide("GET", "probe.test", "/healthz") is Effect.DENY
