"""Three real gateway processes sharing one PostgreSQL and one Redis (issue 6).

A session signed in on one node works on all; revoked on node A, it is denied on B and
C; a brute-force lockout counted on A holds on B; a policy reload reaches every node.
Faults: Redis stopped (revocations still arrive through PostgreSQL NOTIFY, metrics say
degraded) and PostgreSQL cut away (decisions from cached state continue, writes fail with
a clear error, nothing acknowledged is lost), then both back without restarting a node.
The propagation figures over 200 revocations are ``benchmarks/scale.py``'s to measure;
here each revocation must arrive within a bound stated in the test.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.cluster import PASSWORD, Cluster, Node, cluster, sign_in
from tests.gateway.servers import ThreadServer

pytestmark = pytest.mark.services
JSON = {"Accept": "application/json"}
ARRIVAL_BOUND = 2.0  # seconds: every revocation must reach every node within this
REDIS_DOWN_BOUND = 3.0  # through PostgreSQL NOTIFY alone
WRITE_FAILS_WITHIN = 8.0  # the store's connection wait (3 s) plus slack: no hanging


async def upstream_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    user = dict(scope["headers"]).get(b"x-verity-email", b"").decode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})  # fmt: skip
    await send({"type": "http.response.body", "body": f"hello {user}".encode()})


@pytest.fixture(scope="module")
def nodes(
    tmp_path_factory: pytest.TempPathFactory, postgres_dsn: str, redis_url: str
) -> Iterator[Cluster]:
    folder: Path = tmp_path_factory.mktemp("cluster")
    with ThreadServer(upstream_app) as upstream, cluster(folder, upstream_port=upstream.port) as c:
        try:
            yield c
        except BaseException:
            print(c.logs())
            raise


def get(node: Node, cookie: str, path: str = "/") -> httpx.Response:
    return httpx.get(f"{node.url}{path}", headers={**JSON, "Cookie": cookie}, timeout=5)


def wait_denied(node: Node, cookie: str, *, bound: float) -> float:
    """Seconds until ``node`` stops accepting ``cookie`` (fails past ``bound``)."""
    start = time.monotonic()
    while time.monotonic() - start < bound:
        if get(node, cookie).status_code == 401:
            return time.monotonic() - start
        time.sleep(0.002)
    raise AssertionError(f"{node.name} still accepts the session after {bound}s")


def logout(node: Node, cookie: str) -> httpx.Response:
    """Sign out as a browser does: the confirmation page, then its form (same origin)."""
    page = httpx.get(f"{node.url}/verity/logout", headers={"Cookie": cookie}, timeout=10)
    if page.status_code != 200:
        return page
    token = re.search(r"name='csrf' value='([^']*)'", page.text)
    assert token is not None, page.text[:300]
    return httpx.post(
        f"{node.url}/verity/logout", data={"csrf": token.group(1)},
        headers={"Cookie": cookie, "Origin": node.url}, timeout=10,
    )  # fmt: skip


def metric(node: Node, name: str) -> dict[str, float]:
    text = httpx.get(f"{node.url}/metrics", timeout=5).text
    found = re.findall(rf"^{name}(\{{[^}}]*\}})? ([0-9.e+-]+)$", text, re.MULTILINE)
    return {labels: float(value) for labels, value in found}


def new_session(nodes: Cluster, email: str = "engineer@cluster.test") -> str:
    with httpx.Client(timeout=10) as client:
        cookie = sign_in(client, nodes.nodes[0], email)
    for node in nodes.nodes:  # every node caches it now, so a revocation must evict it
        response = get(node, cookie)
        assert response.status_code == 200, (node.name, response.text)
        assert response.text == f"hello {email}"
    return cookie


def test_a_session_signed_in_on_one_node_is_honoured_by_every_node(nodes: Cluster) -> None:
    cookie = new_session(nodes)
    for node in nodes.nodes:
        assert get(node, "verity_session=forged").status_code == 401
        assert get(node, cookie).status_code == 200


def test_a_session_revoked_on_node_a_is_denied_on_b_and_c(nodes: Cluster) -> None:
    a, b, c = nodes.nodes
    delays = []
    for _ in range(10):
        cookie = new_session(nodes)
        assert logout(a, cookie).status_code in (200, 302, 303)
        delays += [wait_denied(b, cookie, bound=ARRIVAL_BOUND),
                   wait_denied(c, cookie, bound=ARRIVAL_BOUND)]  # fmt: skip
        assert get(a, cookie).status_code == 401
    print(f"propagation over {len(delays)} arrivals: max {max(delays) * 1000:.1f} ms")


def idp_attempt(node: Node, email: str, password: str) -> httpx.Response:
    """One password attempt at ``node``'s own IdP (the login flow started there)."""
    with httpx.Client(timeout=10) as client:
        page = client.get(f"{node.url}/", headers={"Accept": "text/html"}, follow_redirects=True)
        # the IdP's issuer is node A; run the form on ``node`` itself
        login = httpx.URL(str(page.url)).copy_with(port=node.port)
        page = client.get(login)
        action = re.search(r'<form[^>]*action="([^"]+)"', page.text)
        assert action is not None, page.text[:300]
        fields = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page.text))
        fields.update({"email": email, "password": password})
        target = login.join(action.group(1).replace("&amp;", "&")).copy_with(port=node.port)
        return client.post(target, data=fields)


def test_a_brute_force_lockout_counted_on_a_holds_on_b(nodes: Cluster) -> None:
    a, b, _ = nodes.nodes
    email = "admin@cluster.test"
    statuses = [idp_attempt(a, email, "wrong password").status_code for _ in range(6)]
    assert statuses[0] == 401, statuses
    assert statuses[-1] == 429, statuses  # locked on A
    locked = idp_attempt(b, email, PASSWORD)  # the right password, on another node
    assert locked.status_code == 429, locked.text[:300]
    assert "too many" in locked.text.lower()


def test_a_policy_reload_reaches_every_node(nodes: Cluster) -> None:
    cookie = new_session(nodes)
    original = nodes.policy.read_text()
    nodes.policy.write_text(original.replace("roles: [engineer, admin]", "roles: [admin]"))
    try:
        deadline = time.monotonic() + 10
        pending = set(nodes.nodes)
        while pending and time.monotonic() < deadline:
            pending = {n for n in pending if get(n, cookie).status_code != 403}
            time.sleep(0.1)
        assert not pending, f"still the old policy on {[n.name for n in pending]}"
        denied = get(nodes.nodes[2], cookie).json()
        assert denied["error"] == "access_denied"
        assert denied["decision_id"]
    finally:
        nodes.policy.write_text(original)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(
        get(n, cookie).status_code != 200 for n in nodes.nodes
    ):
        time.sleep(0.1)
    assert all(get(n, cookie).status_code == 200 for n in nodes.nodes)


def test_with_redis_stopped_nodes_decide_and_revocations_arrive_through_postgres(
    nodes: Cluster,
) -> None:
    a, b, c = nodes.nodes
    cookie = new_session(nodes)
    for node in nodes.nodes:
        assert metric(node, "verity_degraded") == {"": 0.0}
    nodes.redis.stop()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(
            metric(n, "verity_degraded") != {"": 1.0} for n in nodes.nodes
        ):
            time.sleep(0.1)
        for node in nodes.nodes:
            assert metric(node, "verity_degraded") == {"": 1.0}, node.name
            assert metric(node, "verity_store_channel_up")['{channel="redis"}'] == 0.0
            assert metric(node, "verity_store_channel_up")['{channel="postgresql"}'] == 1.0
            assert get(node, cookie).status_code == 200  # still deciding
        assert logout(a, cookie).status_code in (200, 302, 303)
        wait_denied(b, cookie, bound=REDIS_DOWN_BOUND)
        wait_denied(c, cookie, bound=REDIS_DOWN_BOUND)
        # brute-force counters live in Redis: without them a password is not even tried
        refused = idp_attempt(b, "engineer@cluster.test", PASSWORD)
        assert refused.status_code == 503, refused.text[:300]
        assert "temporarily unavailable" in refused.text.lower()
    finally:
        nodes.redis.start()
    deadline = time.monotonic() + 15  # the subscriber retries with a backoff of up to 5 s
    while time.monotonic() < deadline and any(
        metric(n, "verity_degraded") != {"": 0.0} for n in nodes.nodes
    ):
        time.sleep(0.2)
    assert all(metric(n, "verity_degraded") == {"": 0.0} for n in nodes.nodes)
    cookie = new_session(nodes)  # sign-in works again: counters are back on Redis
    assert logout(a, cookie).status_code in (200, 302, 303)
    wait_denied(b, cookie, bound=ARRIVAL_BOUND)


def test_with_postgres_cut_away_cached_decisions_continue_and_writes_fail_clearly(
    nodes: Cluster,
) -> None:
    a, b, c = nodes.nodes
    cookie = new_session(nodes)
    nodes.postgres.cut()
    try:
        for node in nodes.nodes:  # cached sessions and the policy need no database
            assert get(node, cookie).status_code == 200, node.name
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(
            metric(n, "verity_degraded") != {"": 1.0} for n in nodes.nodes
        ):
            time.sleep(0.1)
        for node in nodes.nodes:
            assert metric(node, "verity_store_channel_up")['{channel="postgresql"}'] == 0.0
        started = time.monotonic()
        refused = logout(a, cookie)  # a write: it must fail, visibly, and not half-happen
        assert time.monotonic() - started < WRITE_FAILS_WITHIN, "a write hung on the outage"
        assert refused.status_code == 503, refused.text[:300]
        assert "unavailable" in refused.text.lower()
        assert get(b, cookie).status_code == 200  # nothing was revoked behind our back
        with (
            httpx.Client(timeout=10) as client,
            pytest.raises(AssertionError, match=r"sign-in failed|no login form"),
        ):
            sign_in(client, a, "engineer@cluster.test")
    finally:
        nodes.postgres.restore()
    deadline = time.monotonic() + 15  # reconnect (backoff <= 5 s) without restarting a node
    up = '{channel="postgresql"}'
    while time.monotonic() < deadline:
        if all(metric(n, "verity_store_channel_up").get(up) == 1.0 for n in nodes.nodes):
            break
        time.sleep(0.2)
    assert all(metric(n, "verity_store_channel_up").get(up) == 1.0 for n in nodes.nodes)
    assert logout(a, cookie).status_code in (200, 302, 303)
    wait_denied(b, cookie, bound=ARRIVAL_BOUND)
    wait_denied(c, cookie, bound=ARRIVAL_BOUND)
    assert new_session(nodes)
