"""The lock files agree with pyproject.toml and with each other (docs/development.md)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s\\;]+)", re.MULTILINE)
NAME = re.compile(r"^[A-Za-z0-9_.\-]+")


def pins(name: str) -> dict[str, str]:
    text = (ROOT / name).read_text()
    return {_canon(m[1].split("[")[0]): m[2] for m in PIN.finditer(text)}


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(requirements: list[str]) -> set[str]:
    found = set()
    for requirement in requirements:
        match = NAME.match(requirement)
        assert match, requirement
        found.add(_canon(match[0]))
    return found


def test_every_declared_dependency_is_pinned_with_a_hash() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = _declared(project["dependencies"])
    dev = runtime | _declared(project["optional-dependencies"]["dev"])
    assert runtime <= set(pins("requirements.txt")), runtime - set(pins("requirements.txt"))
    assert dev <= set(pins("requirements-dev.txt")), dev - set(pins("requirements-dev.txt"))
    for name in ("requirements.txt", "requirements-dev.txt", "requirements-bench.txt"):
        text = (ROOT / name).read_text()
        for block in re.split(r"\n(?=[A-Za-z])", text):
            if PIN.match(block):
                assert "--hash=sha256:" in block, f"{name}: {block.splitlines()[0]} has no hash"


def test_the_runtime_and_bench_locks_pin_what_the_dev_lock_pins() -> None:
    dev = pins("requirements-dev.txt")
    for name in ("requirements.txt", "requirements-bench.txt"):
        for package, version in pins(name).items():
            if package in dev:
                assert dev[package] == version, (
                    f"{name}: {package}=={version}, dev lock {dev[package]}"
                )
