"""SessionStore behaviour, identical on every backend."""

from __future__ import annotations

from typing import Any

import pytest

from verity.store import DuplicateSessionError, SessionRecord

T = 1_000_000.0


def _session(sid: str = "s1", user: str = "alice", **changes: Any) -> SessionRecord:
    fields: dict[str, Any] = {
        "id": sid,
        "user_id": user,
        "created": T,
        "last_seen": T,
        "expires": T + 3600,
        "mfa": True,
        "auth_time": T - 5,
        "device_id": "d1",
        "trust_score": 80,
        "data": {"ip": "10.0.0.1", "n": 1},
    }
    fields.update(changes)
    return SessionRecord(**fields)


def test_a_created_session_reads_back_unchanged(sessions: Any) -> None:
    created = sessions.create(_session())
    assert sessions.get("s1", now=T + 1) == created
    assert sessions.get("nope", now=T + 1) is None


def test_creating_an_existing_id_is_refused(sessions: Any) -> None:
    sessions.create(_session())
    with pytest.raises(DuplicateSessionError):
        sessions.create(_session(user="mallory"))
    assert sessions.get("s1", now=T).user_id == "alice"


def test_an_expired_session_is_invisible_and_cannot_be_touched(sessions: Any) -> None:
    sessions.create(_session(expires=T + 10))
    assert sessions.get("s1", now=T + 9.9) is not None
    assert sessions.get("s1", now=T + 10) is None
    assert sessions.touch("s1", now=T + 11, expires=T + 100) is None
    assert sessions.list_for_user("alice", now=T + 10) == []


def test_touch_moves_time_forward_only_and_merges_data(sessions: Any) -> None:
    sessions.create(_session())
    later = sessions.touch("s1", now=T + 50, expires=T + 7200, data={"n": 2, "ua": "x"})
    assert (later.last_seen, later.expires, later.version) == (T + 50, T + 7200, 2)
    assert dict(later.data) == {"ip": "10.0.0.1", "n": 2, "ua": "x"}
    earlier = sessions.touch("s1", now=T + 20, expires=T + 100, trust_score=40)
    assert (earlier.last_seen, earlier.expires) == (T + 50, T + 7200)  # never regresses
    assert (earlier.trust_score, earlier.version) == (40, 3)
    assert sessions.get("s1", now=T + 60) == earlier


def test_touch_rejects_an_impossible_trust_score(sessions: Any) -> None:
    sessions.create(_session())
    with pytest.raises(ValueError, match="trust score"):
        sessions.touch("s1", now=T, trust_score=101)


def test_sessions_of_a_user_are_listed_oldest_first(sessions: Any) -> None:
    sessions.create(_session("s2", created=T + 2))
    sessions.create(_session("s1", created=T + 1))
    sessions.create(_session("s3", expires=T + 5))
    sessions.create(_session("b1", user="bob"))
    assert [s.id for s in sessions.list_for_user("alice", now=T + 10)] == ["s1", "s2"]


def test_revoke_and_delete_expired(sessions: Any) -> None:
    sessions.create(_session("s1"))
    sessions.create(_session("s2", expires=T + 5))
    sessions.create(_session("s3", expires=T + 6))
    assert sessions.revoke("s1") is True
    assert sessions.revoke("s1") is False
    assert sessions.get("s1", now=T) is None
    assert sessions.delete_expired(now=T + 6) == 2
    assert sessions.delete_expired(now=T + 6) == 0


def test_rotate_replaces_the_session_keeping_its_facts(sessions: Any) -> None:
    old = sessions.create(_session())
    new = sessions.rotate("s1", "s1b", now=T + 30, expires=T + 900)
    assert new.id == "s1b"
    assert sessions.get("s1", now=T + 31) is None
    assert (new.user_id, new.created, new.mfa, new.data) == (old.user_id, T, True, old.data)
    assert (new.last_seen, new.expires, new.version) == (T + 30, T + 900, 2)
    assert sessions.rotate("s1", "s1c", now=T + 31, expires=T + 900) is None


def test_rotating_onto_an_existing_id_changes_nothing(sessions: Any) -> None:
    sessions.create(_session("s1"))
    sessions.create(_session("s2"))
    with pytest.raises(DuplicateSessionError):
        sessions.rotate("s1", "s2", now=T + 1, expires=T + 900)
    assert sessions.get("s1", now=T + 1) is not None
