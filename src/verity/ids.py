"""Unique, cheap identifiers for decisions and events.

A decision id is a random per-process prefix plus a counter: unique across processes and
nodes (48 random bits per process, renewed after ``fork``), cheap enough for the decision
hot path, and easy to quote from a deny page to an operator.
"""

from __future__ import annotations

import itertools
import os
import secrets


class _Sequence:
    __slots__ = ("counter", "template")

    def __init__(self) -> None:
        self.template = ""
        self.counter = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        self.template = "d" + secrets.token_hex(6) + "-%09x"
        self.counter = itertools.count(1)


_SEQUENCE = _Sequence()
os.register_at_fork(after_in_child=_SEQUENCE.reset)


def new_decision_id(sequence: _Sequence = _SEQUENCE) -> str:
    """``d3f9a1c2b7e01-00000001a``: the process prefix, then a per-process counter."""
    return sequence.template % next(sequence.counter)
