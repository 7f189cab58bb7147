"""Unique, cheap identifiers for decisions and events.

Both are a random per-process prefix plus a counter: unique across processes, nodes and
restarts (the prefix is drawn from ``secrets`` when the module loads and again in the
child after every ``fork``), and cheap enough for the request hot path (no system call
per id: one ``next()`` and one ``%`` format).

- A decision id (``new_decision_id``) is easy to quote from a deny page to an operator:
  ``d`` + 48 random bits + ``-`` + the counter.
- An audit event id (``new_event_uid``, OCSF ``metadata.uid``) keeps the form it had
  when it was 96 random bits: 24 lower-case hex digits, here 64 random bits of prefix and
  a 32-bit counter. When the counter would wrap, a new prefix is drawn, so an id never
  repeats within a process either.
"""

from __future__ import annotations

import itertools
import os
import secrets
import threading
from collections.abc import Iterator

_EVENT_COUNTER_LIMIT = 1 << 32


class _Sequence:
    __slots__ = ("counter", "template")

    def __init__(self) -> None:
        self.template = ""
        self.counter = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        self.template = "d" + secrets.token_hex(6) + "-%09x"
        self.counter = itertools.count(1)


class _EventSequence:
    """64 random bits of prefix + a 32-bit counter, as 24 hex digits. The prefix and its
    counter are swapped together (one tuple), so no thread formats a number of one
    prefix's counter with another prefix."""

    __slots__ = ("_lock", "state")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.state: tuple[str, Iterator[int]] = ("", itertools.count(0))
        self.reset()

    def reset(self) -> None:
        self.state = (secrets.token_hex(8) + "%08x", itertools.count(0))

    def next(self) -> str:
        template, counter = self.state
        n = next(counter)
        if n < _EVENT_COUNTER_LIMIT:
            return template % n
        with self._lock:  # 4 billion ids: a fresh prefix (once, whoever gets here first)
            if self.state[1] is counter:
                self.reset()
        return self.next()

    def after_fork(self) -> None:
        self._lock = threading.Lock()
        self.reset()


_SEQUENCE = _Sequence()
_EVENTS = _EventSequence()
os.register_at_fork(after_in_child=_SEQUENCE.reset)
os.register_at_fork(after_in_child=_EVENTS.after_fork)


def new_decision_id(sequence: _Sequence = _SEQUENCE) -> str:
    """``d3f9a1c2b7e01-00000001a``: the process prefix, then a per-process counter."""
    return sequence.template % next(sequence.counter)


def new_event_uid(sequence: _EventSequence = _EVENTS) -> str:
    """``9f3c1a2b4d5e6f70000002a1``: 24 hex digits, the process prefix then a counter."""
    return sequence.next()
