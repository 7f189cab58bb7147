"""SvidSource: renewal at half of the lifetime, with an injected clock; listeners told."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from verity.identity.workload import CertificateAuthority, SvidSource, X509Svid

from .conftest import NOW

SID = "spiffe://example.org/ns/prod/sa/web"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> dt.datetime:
        return self.now


def test_renews_at_half_the_lifetime_and_notifies(ca: CertificateAuthority) -> None:
    clock = Clock()
    source = SvidSource(ca, SID, ttl=dt.timedelta(hours=1), clock=clock)
    first = source.current()
    assert source.next_rotation == NOW + dt.timedelta(minutes=30)
    seen: list[X509Svid] = []
    source.subscribe(seen.append)
    clock.now = NOW + dt.timedelta(minutes=29, seconds=59)
    assert source.current() is first
    assert seen == []
    clock.now = NOW + dt.timedelta(minutes=30)
    second = source.current()
    assert second is not first
    assert seen == [second]
    assert second.certificate.serial_number != first.certificate.serial_number
    assert second.not_after == clock.now + dt.timedelta(hours=1)
    assert source.next_rotation == clock.now + dt.timedelta(minutes=30)


def test_never_presents_an_expired_svid(ca: CertificateAuthority) -> None:
    clock = Clock()
    source = SvidSource(ca, SID, ttl=dt.timedelta(minutes=10), clock=clock)
    for step in range(1, 40):
        clock.now = NOW + dt.timedelta(minutes=step)
        svid = source.current()
        assert svid.certificate.not_valid_before_utc <= clock.now < svid.not_after
        assert svid.not_after - clock.now >= dt.timedelta(minutes=5)


def test_failing_listener_does_not_stop_others_and_unsubscribe_works(
    ca: CertificateAuthority,
) -> None:
    clock = Clock()
    source = SvidSource(ca, SID, clock=clock)
    calls: list[str] = []

    def broken(_: X509Svid) -> None:
        raise RuntimeError("boom")

    source.subscribe(broken)
    unsubscribe = source.subscribe(lambda s: calls.append(str(s.spiffe_id)))
    clock.now += dt.timedelta(hours=1)
    assert source.maybe_rotate()
    assert calls == [SID]
    unsubscribe()
    clock.now += dt.timedelta(hours=1)
    assert source.maybe_rotate()
    assert calls == [SID]


def test_rotate_fraction_is_validated(ca: CertificateAuthority) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        SvidSource(ca, SID, rotate_fraction=1.0)


def test_background_loop_renews_and_stops(ca: CertificateAuthority) -> None:
    clock = Clock()
    source = SvidSource(ca, SID, ttl=dt.timedelta(minutes=10), clock=clock)
    renewed = threading.Event()
    source.subscribe(lambda _: renewed.set())
    stop = threading.Event()
    worker = threading.Thread(target=source.run, args=(stop,), kwargs={"poll_seconds": 0.05})
    worker.start()
    try:
        clock.now = NOW + dt.timedelta(minutes=6)
        assert renewed.wait(5)
    finally:
        stop.set()
        worker.join(5)
    assert not worker.is_alive()
