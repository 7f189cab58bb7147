"""The package facade exports exactly its public names, the heavy ones on first use."""

from __future__ import annotations

import subprocess
import sys
import types

from verity.identity import workload


def test_all_matches_the_public_namespace() -> None:
    eager = {
        name
        for name, value in vars(workload).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and getattr(value, "__module__", "").startswith(workload.__name__ + ".")
    }
    lazy = set(workload._LAZY)
    assert set(workload.__all__) == (eager - lazy) | lazy
    for name in workload.__all__:
        assert getattr(workload, name) is not None


def test_config_loads_without_the_crypto_modules() -> None:
    """``verity.identity.config`` may import WorkloadConfig without an import cycle."""
    code = (
        "import sys; from verity.identity.workload.config import WorkloadConfig; "
        "print('verity.identity.workload.ca' in sys.modules)"
    )
    result = subprocess.run(  # noqa: S603 - fixed argv, our own interpreter
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
