"""Decision and event ids: their form, and uniqueness across threads, forks and wraps."""

from __future__ import annotations

import itertools
import os
import re
import threading

from tests.conftest import platform_feature
from verity.audit import decision_event
from verity.ids import _EVENT_COUNTER_LIMIT, _EventSequence, new_decision_id, new_event_uid
from verity.model import AccessRequest, Decision, Effect, Principal

_EVENT_UID = re.compile(r"[0-9a-f]{24}")


def test_event_uid_keeps_the_24_hex_digit_form() -> None:
    uids = [new_event_uid() for _ in range(1000)]
    assert all(_EVENT_UID.fullmatch(uid) for uid in uids)
    assert len(set(uids)) == 1000
    assert len({uid[:16] for uid in uids}) == 1  # one process prefix, then the counter


def test_builders_use_the_counter_based_uid() -> None:
    request = AccessRequest(principal=Principal(id="alice"), time=1_700_000_000.0)
    decision = Decision(Effect.ALLOW, "r", new_decision_id(), "v1")
    first, second = (decision_event(request, decision).uid for _ in range(2))
    assert _EVENT_UID.fullmatch(first)
    assert first[:16] == second[:16]
    assert int(second[16:], 16) == int(first[16:], 16) + 1


def test_event_uids_are_unique_across_threads() -> None:
    sequence = _EventSequence()
    found: list[list[str]] = [[] for _ in range(4)]

    def draw(out: list[str]) -> None:
        out.extend(new_event_uid(sequence) for _ in range(5000))

    threads = [threading.Thread(target=draw, args=(out,)) for out in found]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [uid for out in found for uid in out]
    assert len(set(everything)) == len(everything) == 20000


def test_a_wrapping_counter_draws_a_new_prefix_and_never_repeats() -> None:
    sequence = _EventSequence()
    prefix = sequence.state[0]
    sequence.state = (prefix, itertools.count(_EVENT_COUNTER_LIMIT - 2))
    last_two = [new_event_uid(sequence) for _ in range(2)]
    after = [new_event_uid(sequence) for _ in range(2)]
    assert [uid[16:] for uid in last_two] == ["fffffffe", "ffffffff"]
    assert after[0][:16] != last_two[0][:16]
    assert [uid[16:] for uid in after] == ["00000000", "00000001"]
    assert len(set(last_two + after)) == 4


def test_event_and_decision_ids_are_unique_across_a_fork() -> None:
    """A forked worker must not continue the parent's sequence (same prefix, same
    counter): its events would carry the parent's ids."""
    platform_feature("os.fork", hasattr(os, "fork"))
    new_event_uid()
    new_decision_id()  # the parent has used both sequences before the fork
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report its ids and leave at once
        try:
            ids = [new_event_uid() for _ in range(100)] + [new_decision_id() for _ in range(100)]
            os.write(write, "\n".join(ids).encode())
        finally:
            os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    child = b"".join(chunks).decode().split("\n")
    parent = [new_event_uid() for _ in range(100)] + [new_decision_id() for _ in range(100)]
    assert len(child) == 200
    assert not set(child) & set(parent)
    assert child[0][:16] != parent[0][:16]  # a new event prefix in the child
    assert child[100].split("-")[0] != parent[100].split("-")[0]  # and a new decision prefix
