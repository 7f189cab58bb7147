"""LivePolicy: reloads swap atomically; a bad new file keeps the old policy in force."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from verity.errors import PolicyLoadError
from verity.model import AccessRequest, Principal
from verity.policy import LivePolicy, ReloadResult

ALLOW_ENG = "rules: [{name: eng, allow: {roles: [eng]}}]\n"
ALLOW_OPS = "rules: [{name: ops, allow: {roles: [ops]}}]\n"


def request(role: str) -> AccessRequest:
    return AccessRequest(principal=Principal(id="u", roles=frozenset({role})), time=0)


def test_reload_swaps_in_a_valid_new_version(tmp_path: Path) -> None:
    file = tmp_path / "p.yaml"
    file.write_text(ALLOW_ENG)
    live = LivePolicy(file)
    old = live.version
    assert live.decide(request("eng")).allowed
    file.write_text(ALLOW_OPS)
    result = live.reload()
    assert result.ok
    assert result.changed
    assert live.version != old
    assert live.decide(request("ops")).allowed
    assert not live.decide(request("eng")).allowed


def test_a_bad_new_file_keeps_the_old_policy_and_says_why(tmp_path: Path) -> None:
    file = tmp_path / "p.yaml"
    file.write_text(ALLOW_ENG)
    live = LivePolicy(file)
    file.write_text("rules: [{name: eng, allow: {rolse: [eng]}}]\n")
    result = live.reload()
    assert not result.ok
    assert not result.changed
    assert "rules[0].allow.rolse" in {p.path for p in result.problems}
    assert live.decide(request("eng")).allowed
    file.unlink()
    assert "cannot read file" in live.reload().problems[0].message
    assert live.decide(request("eng")).allowed


def test_unchanged_file_is_not_recompiled(tmp_path: Path) -> None:
    file = tmp_path / "p.yaml"
    file.write_text(ALLOW_ENG)
    live = LivePolicy(file)
    engine = live.engine
    assert not live.reload().changed
    assert live.engine is engine
    assert live.reload(force=True).ok
    assert live.engine is not engine


def test_first_load_failure_raises(tmp_path: Path) -> None:
    file = tmp_path / "p.yaml"
    file.write_text("rules: 1\n")
    with pytest.raises(PolicyLoadError):
        LivePolicy(file)


def test_deciding_during_reloads_always_uses_a_complete_policy(tmp_path: Path) -> None:
    file = tmp_path / "p.yaml"
    file.write_text(ALLOW_ENG)
    live = LivePolicy(file)
    eng_version = live.version
    seen: set[tuple[str | None, str]] = set()
    stop = threading.Event()

    def decide() -> None:
        while not stop.is_set():
            decision = live.decide(request("eng"))
            seen.add((decision.rule, decision.policy_version))

    worker = threading.Thread(target=decide)
    worker.start()
    for i in range(20):
        file.write_text(ALLOW_OPS if i % 2 == 0 else ALLOW_ENG)
        assert live.reload().ok
    stop.set()
    worker.join()
    file.write_text(ALLOW_OPS)
    ops_version = LivePolicy(file).version
    # every decision is the eng policy allowing, or the ops policy denying: never a mix
    assert seen <= {("eng", eng_version), (None, ops_version)}
    assert ("eng", eng_version) in seen


def test_decisions_go_on_while_a_reload_compiles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reload compiles beside the engine in force: decisions are answered by the old
    engine meanwhile (never blocked, never half-loaded), then by the new one."""
    import verity.policy as policy_package

    file = tmp_path / "p.yaml"
    file.write_text(ALLOW_ENG)
    live = LivePolicy(file)
    compiling, release = threading.Event(), threading.Event()
    real_compile = policy_package.compile_policy

    def slow_compile(policy: Any, **options: Any) -> Any:
        compiling.set()
        assert release.wait(10)
        return real_compile(policy, **options)

    monkeypatch.setattr(policy_package, "compile_policy", slow_compile)
    file.write_text(ALLOW_OPS)
    results: list[ReloadResult] = []
    reloader = threading.Thread(target=lambda: results.append(live.reload()))
    reloader.start()
    try:
        assert compiling.wait(10)
        for _ in range(100):  # the reload is stuck in its compile the whole time
            assert live.decide(request("eng")).allowed
            assert not live.decide(request("ops")).allowed
    finally:
        release.set()
        reloader.join(10)
    assert results[0].changed
    assert live.decide(request("ops")).allowed
