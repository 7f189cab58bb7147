"""The embedded default, ready to click through: ``verity demo`` (``make run``).

One process on 127.0.0.1 runs the gateway with SQLite stores, the embedded identity
provider with three demo people, browser sign-in, the audit log, and a small app behind
the gateway that verifies the gateway's signed identity assertion.
"""

from __future__ import annotations

from .setup import DemoSetup, prepare

__all__ = ["DemoSetup", "prepare"]
