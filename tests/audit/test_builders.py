"""``encode_decision``, the gateway's direct decision encoder, gives exactly the bytes and
index columns of the general path (``EncodedEvent.of(decision_event(...))``), so logs
written by either verify the same way."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from verity.audit import AuditLog, CheckpointSigner, EncodedEvent, Query, decision_event, verify
from verity.audit.builders import encode_decision
from verity.audit.sqlite import SQLiteStore
from verity.model import (
    AccessRequest,
    Decision,
    Device,
    Effect,
    HttpTarget,
    NetworkContext,
    Obligation,
    ObligationKind,
    Principal,
    PrincipalKind,
    Reason,
    Resource,
)

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_opt = st.none() | _text


@st.composite
def decisions(draw: st.DrawFn) -> tuple[AccessRequest, Decision, str | None]:
    kind = draw(st.sampled_from(list(PrincipalKind)))
    principal = Principal(
        id=draw(_text.filter(bool)) if kind is not PrincipalKind.ANONYMOUS else "anonymous",
        kind=kind, email=draw(_opt), session_id=draw(_opt), spiffe_id=draw(_opt),
    )  # fmt: skip
    http = None
    if draw(st.booleans()):
        method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "BREW"]))
        http = HttpTarget(host=draw(_text), method=method, path="/" + draw(_text))
    device = None
    if draw(st.booleans()):
        device = Device(id=draw(_text), managed=draw(st.booleans()), os_version=draw(_text))
    network = NetworkContext(
        ip=draw(st.sampled_from([None, "10.0.0.7", "::ffff:10.1.2.3", "2001:db8::1"])),
        region=draw(st.sampled_from([None, "de", "us"])),
    )
    request = AccessRequest(
        principal=principal, time=draw(st.floats(0, 4e9)), http=http, device=device,
        network=network, trust_score=draw(st.none() | st.integers(0, 100)),
        action=draw(st.none() | st.sampled_from(["read", "Delete", "approve"])),
        resource=Resource(type=draw(_opt), id=draw(_opt)),
    )  # fmt: skip
    effect = draw(st.sampled_from(list(Effect)))
    reasons = tuple(
        Reason(draw(_text), draw(_text), draw(_opt), draw(_opt))
        for _ in range(draw(st.integers(0, 2)))
    )
    obligations = tuple(
        Obligation(k) for k in draw(st.lists(st.sampled_from(list(ObligationKind)), max_size=2))
    )
    decision = Decision(effect, draw(_opt), "d-" + draw(_text), draw(_text), reasons, obligations)
    return request, decision, draw(st.none() | _text)


@settings(max_examples=300, deadline=None)
@given(decisions(), st.text("0123456789abcdef", min_size=24, max_size=24))
def test_direct_encoding_equals_the_general_path(
    case: tuple[AccessRequest, Decision, str | None], uid: str
) -> None:
    request, decision, policy_version = case
    general = EncodedEvent.of(
        decision_event(request, decision, policy_version=policy_version, uid=uid)
    )
    direct = encode_decision(request, decision, policy_version=policy_version, uid=uid)
    assert direct == general


def test_direct_encoding_draws_its_own_uid() -> None:
    request = AccessRequest(principal=Principal(id="alice"), time=1.0)
    decision = Decision(Effect.ALLOW, "r", "d-1", "v1")
    first, second = (encode_decision(request, decision) for _ in range(2))
    assert first.body != second.body


def test_a_log_of_directly_encoded_events_verifies(
    tmp_path: Path, signer: CheckpointSigner
) -> None:
    request = AccessRequest(principal=Principal(id="alice", session_id="s"), time=1.0,
                            http=HttpTarget(host="a.test", method="GET", path="/x"))  # fmt: skip
    with AuditLog(SQLiteStore(tmp_path / "a.db"), signer=signer) as log:
        for n in range(5):
            decision = Decision(Effect.ALLOW if n % 2 else Effect.DENY, "r", f"d-{n}", "v1")
            log.append(encode_decision(request, decision))
    store = SQLiteStore(tmp_path / "a.db", create=False)
    try:
        assert len(store.query(Query())) == 5
        report = verify(store, signer.public_key)
    finally:
        store.close()
    assert report.ok
