"""Context criteria (device posture, network, time windows, trust, just-in-time grants):
allow/deny exactly at each boundary and one past it, ``explain`` agreeing with ``decide``
on every criterion (``leaves.judge``), and the words a denied person reads."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from verity.model import (
    AccessRequest,
    Device,
    NetworkContext,
    Obligation,
    ObligationKind,
    Principal,
    parse_ip,
)
from verity.policy.clock import BUCKET, clock_for

from .leaves import NO_RULE_HINT, denial, judge, no_rule, trace

T = datetime.fromisoformat("2025-11-24T10:00:00+00:00").timestamp()  # a Monday
USER = Principal(id="u1")


def request(**changes: Any) -> AccessRequest:
    fields: dict[str, Any] = {"principal": USER, "time": T, **changes}
    return AccessRequest(**fields)


def on(device: Device | None) -> AccessRequest:
    return request(device=device)


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def local(text: str, zone: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


# --- device flags -------------------------------------------------------------------

FLAG_WORDS = {
    "managed": (
        "device is managed",
        "device is not managed by your organisation",
        "use a company-managed device or enroll this one",
    ),
    "disk_encrypted": (
        "disk encryption",
        "device disk is not encrypted",
        "enable disk encryption (FileVault, BitLocker or LUKS)",
    ),
    "screen_lock": ("screen lock", "device has no screen lock", "turn on the screen lock"),
    "firewall": ("firewall on", "device firewall is off", "turn on the firewall"),
}
FLAGS = list(FLAG_WORDS)


def device_with(**flags: bool) -> Device:
    return Device("d1", os_type="macos", os_version="15.1", **flags)


@pytest.mark.parametrize("flag", FLAGS)
@pytest.mark.parametrize("want", [True, False])
def test_each_device_flag_holds_exactly_when_the_device_has_that_value(
    flag: str, want: bool
) -> None:
    others_opposite = {f: not want for f in FLAGS if f != flag}
    assert judge({"device": {flag: want}}, on(device_with(**{flag: want}, **others_opposite)))
    others_same = {f: want for f in FLAGS if f != flag}
    assert not judge({"device": {flag: want}}, on(device_with(**{flag: not want}, **others_same)))
    assert not judge({"device": {flag: want}}, on(None))


@pytest.mark.parametrize("flag", FLAGS)
def test_a_required_device_flag_tells_the_person_what_is_wrong_and_what_to_do(flag: str) -> None:
    expected, wrong, hint = FLAG_WORDS[flag]
    decision = denial({"device": {flag: True}}, on(device_with(**{flag: False})))
    (reason,) = decision.reasons
    assert (reason.code, reason.message, reason.hint) == (f"device.{flag}", wrong, hint)
    assert decision.obligations == ()
    seen = trace({"device": {flag: True}}, on(device_with(**{flag: False})))
    assert (seen.code, seen.expected, seen.observed) == (f"device.{flag}", expected, "False")
    assert trace({"device": {flag: True}}, on(None)).observed == "(no device)"


@pytest.mark.parametrize("flag", FLAGS)
def test_a_forbidden_device_flag_says_when_the_rule_applies(flag: str) -> None:
    expected = FLAG_WORDS[flag][0]
    (reason,) = denial({"device": {flag: False}}, on(device_with(**{flag: True}))).reasons
    assert reason.message == no_rule(f"this rule applies only when not {expected}")
    assert reason.hint == NO_RULE_HINT
    seen = trace({"device": {flag: False}}, on(device_with(**{flag: True})))
    assert (seen.expected, seen.observed) == (f"not {expected}", "True")


@pytest.mark.parametrize("want", [True, False])
def test_no_known_device_is_named_as_the_reason(want: bool) -> None:
    (reason,) = denial({"device": {"managed": want}}, on(None)).reasons
    words = "no known device: this request did not come from an enrolled device"
    # a device can be enrolled; a rule for requests without a managed device cannot be met
    assert reason.message == (words if want else no_rule(words))


# --- operating system ---------------------------------------------------------------


def test_device_os_is_one_of_the_listed_types() -> None:
    criteria = {"device": {"os": ["macos", "linux"]}}
    assert judge(criteria, on(Device("d", os_type="macos")))
    assert judge(criteria, on(Device("d", os_type="Linux")))
    assert not judge(criteria, on(Device("d", os_type="windows")))
    assert not judge(criteria, on(None))
    (reason,) = denial(criteria, on(Device("d", os_type="windows"))).reasons
    assert reason.code == "device.os"
    assert reason.message == "requires operating system linux, macos (observed: windows)"
    assert reason.hint == "use a device with a supported operating system"
    assert trace(criteria, on(None)).observed == "(no device)"


MIN_OS = {"device": {"min_os": {"windows": "10.0.19045", "macos": "14.0"}}}


@pytest.mark.parametrize(
    ("os_type", "version", "allowed"),
    [
        ("macos", "14", True),  # exactly the minimum (14.0 == 14)
        ("macos", "14.0.0", True),
        ("macos", "14.0.1", True),
        ("macos", "v14.1-beta", True),
        ("macos", "13.9.9", False),  # one step below
        ("macos", "13", False),
        ("macos", "", False),  # an unknown version never satisfies a minimum
        ("macos", "beta", False),
        ("windows", "10.0.19045", True),
        ("windows", "10.0.19046", True),
        ("windows", "10.0.19044", False),
        ("windows", "10.1", True),
        ("linux", "99", False),  # an OS type the rule does not list
    ],
)
def test_minimum_os_version_holds_at_the_minimum_and_not_one_below(
    os_type: str, version: str, allowed: bool
) -> None:
    assert judge(MIN_OS, on(Device("d", os_type=os_type, os_version=version))) is allowed


def test_minimum_os_version_without_a_device_denies() -> None:
    assert not judge(MIN_OS, on(None))
    (reason,) = denial(MIN_OS, on(None)).reasons
    assert reason.message.startswith("no known device")
    assert trace(MIN_OS, on(None)).observed == "(no device)"


def test_minimum_os_version_words() -> None:
    old = on(Device("d", os_type="macos", os_version="13.6"))
    (reason,) = denial(MIN_OS, old).reasons
    assert reason.code == "device.os_version"
    assert reason.message == "macos 13.6 is older than the required 14.0"
    assert reason.hint == "update your operating system"
    seen = trace(MIN_OS, old)
    assert seen.expected == "OS at least macos 14.0, windows 10.0.19045"
    assert seen.observed == "macos 13.6"
    unknown = on(Device("d", os_type="macos"))
    (reason,) = denial(MIN_OS, unknown).reasons
    assert reason.message == "macos (unknown version) is older than the required 14.0"
    assert trace(MIN_OS, unknown).observed == "macos (unknown version)"
    (reason,) = denial(MIN_OS, on(Device("d", os_type="linux", os_version="6.1"))).reasons
    assert reason.message == "operating system linux is not supported (supported: windows, macos)"


# --- network ------------------------------------------------------------------------

NETWORKS = {"ip": ["10.0.0.0/8", "192.168.1.0/24", "2001:db8::/32", "203.0.113.7"]}


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("10.0.0.0", True),
        ("10.255.255.255", True),
        ("9.255.255.255", False),
        ("11.0.0.0", False),
        ("192.168.1.0", True),
        ("192.168.1.255", True),
        ("192.168.0.255", False),
        ("192.168.2.0", False),
        ("203.0.113.7", True),
        ("203.0.113.6", False),
        ("203.0.113.8", False),
        ("::ffff:10.1.2.3", True),  # IPv4-mapped: compared as 10.1.2.3
        ("2001:db8::", True),
        ("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", True),
        ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", False),
        ("2001:db9::", False),
        ("::a00:1", False),  # an IPv6 address whose number lies in 10.0.0.0/8
        ("::cb00:7107", False),  # ... and one that equals 203.0.113.7 as a number
    ],
)
def test_client_address_holds_inside_each_range_to_its_last_address(
    address: str, allowed: bool
) -> None:
    assert judge(NETWORKS, request(network=NetworkContext(parse_ip(address), "DE"))) is allowed


def test_ranges_of_one_address_family_never_admit_the_other() -> None:
    assert not judge({"ip": ["::/0"]}, request(network=NetworkContext(parse_ip("10.0.0.1"))))
    assert not judge({"ip": ["0.0.0.0/0"]}, request(network=NetworkContext(parse_ip("::1"))))
    assert judge({"ip": ["::/0"]}, request(network=NetworkContext(parse_ip("::1"))))
    assert judge({"ip": ["0.0.0.0/0"]}, request(network=NetworkContext(parse_ip("10.0.0.1"))))


def test_an_unknown_client_address_denies_with_words() -> None:
    assert not judge(NETWORKS, request())
    (reason,) = denial(NETWORKS, request()).reasons
    assert reason.code == "network.ip"
    assert reason.message == (
        "requires client address in 10.0.0.0/8, 192.168.1.0/24, 2001:db8::/32, 203.0.113.7/32"
        " (observed: (unknown address))"
    )
    assert reason.hint == "connect from the corporate network or VPN"
    assert (
        trace(NETWORKS, request(network=NetworkContext(parse_ip("8.8.8.8")))).observed == "8.8.8.8"
    )


def test_region_is_one_of_the_listed_regions() -> None:
    criteria = {"regions": ["DE", "FR"]}
    assert judge(criteria, request(network=NetworkContext(region="de")))
    assert judge(criteria, request(network=NetworkContext(region="FR")))
    assert not judge(criteria, request(network=NetworkContext(region="US")))
    assert not judge(criteria, request())
    (reason,) = denial(criteria, request(network=NetworkContext(region="US"))).reasons
    assert reason.code == "network.region"
    assert reason.message == "access from region US is not allowed (allowed: DE, FR)"
    assert reason.hint is None
    (reason,) = denial(criteria, request()).reasons
    assert reason.message == "access from region (unknown region) is not allowed (allowed: DE, FR)"
    assert trace(criteria, request()).expected == "region DE, FR"


# --- trust score --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("floor", "score", "allowed"),
    [(60, 60, True), (60, 59, False), (60, 61, True), (60, 100, True), (60, None, False),
     (0, 0, True), (0, None, False), (100, 100, True), (100, 99, False)],
)  # fmt: skip
def test_trust_score_holds_at_the_floor_and_not_one_below(
    floor: int, score: int | None, allowed: bool
) -> None:
    assert judge({"min_trust": floor}, request(trust_score=score)) is allowed


def test_low_trust_asks_to_sign_in_again() -> None:
    decision = denial({"min_trust": 60}, request(trust_score=59))
    (reason,) = decision.reasons
    assert reason.code == "trust.score"
    assert reason.message == "session trust score 59 is below the required 60"
    assert reason.hint == "sign in again to restore trust"
    assert decision.obligations == (Obligation(ObligationKind.STEP_UP_MFA, "rule"),)
    (reason,) = denial({"min_trust": 60}, request()).reasons
    assert reason.message == "session trust score (unknown) is below the required 60"
    seen = trace({"min_trust": 60}, request(trust_score=59))
    assert (seen.expected, seen.observed) == ("trust score at least 60", "59")


# --- just-in-time grants ------------------------------------------------------------


@pytest.mark.parametrize(
    ("expires", "allowed"),
    [(T + 1, True), (T + 0.001, True), (T, False), (T - 1, False), (T + 3600, True)],
)
def test_a_grant_holds_until_the_moment_it_expires(expires: float, allowed: bool) -> None:
    assert judge({"jit": "prod-db"}, request(grants={"prod-db": expires})) is allowed


def test_another_grant_or_none_denies() -> None:
    assert not judge({"jit": "prod-db"}, request(grants={"staging-db": T + 60}))
    assert not judge({"jit": "prod-db"}, request())


@pytest.mark.parametrize(
    ("grants", "observed"),
    [({"prod-db": T + 30}, "expires in 30s"), ({"prod-db": T + 1}, "expires in 1s"),
     ({"prod-db": T}, "expired 0s ago"), ({"prod-db": T - 5}, "expired 5s ago"),
     ({}, "(no grant)")],
)  # fmt: skip
def test_grant_is_described_by_the_time_it_has_left(
    grants: dict[str, float], observed: str
) -> None:
    seen = trace({"jit": "prod-db"}, request(grants=grants))
    assert (seen.code, seen.expected) == ("jit.grant", "an active just-in-time grant 'prod-db'")
    assert seen.observed == observed


def test_a_missing_grant_asks_to_request_access() -> None:
    decision = denial({"jit": "prod-db"}, request(grants={"prod-db": T - 5}))
    (reason,) = decision.reasons
    assert reason.code == "jit.grant"
    assert reason.message == "requires an active just-in-time grant 'prod-db' (expired 5s ago)"
    assert reason.hint == "request just-in-time access 'prod-db'"
    assert decision.obligations == (Obligation(ObligationKind.REQUEST_ACCESS, "rule"),)


# --- time windows -------------------------------------------------------------------

ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",  # +05:30
    "Asia/Kathmandu",  # +05:45
    "Australia/Lord_Howe",  # half-hour DST
    "Pacific/Kiritimati",  # +14:00
    "America/St_Johns",  # -03:30 / -02:30
]
# A Monday in northern winter and one in northern summer.
MONDAYS = ["2025-01-13", "2025-07-14"]


def window(hours: str, zone: str, days: str = "mon-fri") -> dict[str, Any]:
    return {"time": {"days": days, "hours": hours, "tz": zone}}


def at(moment: float) -> AccessRequest:
    return request(time=moment)


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("monday", MONDAYS)
def test_a_window_allows_from_its_first_second_to_before_its_end(zone: str, monday: str) -> None:
    rule = window("09:00-17:00", zone)
    for clock_time, allowed in [
        ("08:59:59", False),
        ("08:59:59.999", False),
        ("09:00:00", True),
        ("09:00:00.5", True),
        ("09:01:00", True),
        ("12:00:00", True),
        ("16:59:00", True),
        ("16:59:59.999", True),
        ("17:00:00", False),
        ("17:00:59", False),
        ("17:10:00", False),  # a minute of 61 seconds would still be before 17:00 here
        ("17:20:00", False),
        ("23:59:59", False),
        ("00:00:00", False),
    ]:
        moment = local(f"{monday}T{clock_time}", zone)
        assert judge(rule, at(moment)) is allowed, (zone, monday, clock_time)


@pytest.mark.parametrize("zone", ZONES)
def test_a_window_ending_at_midnight_includes_the_last_second_of_the_day(zone: str) -> None:
    rule = window("18:00-24:00", zone, days="any")
    assert judge(rule, at(local("2025-07-14T23:59:59", zone)))
    assert judge(rule, at(local("2025-07-14T18:00:00", zone)))
    assert not judge(rule, at(local("2025-07-14T17:59:59", zone)))
    assert not judge(rule, at(local("2025-07-15T00:00:00", zone)))


@pytest.mark.parametrize("zone", ZONES)
def test_a_window_across_midnight_allows_both_sides_and_nothing_between(zone: str) -> None:
    rule = window("22:00-06:00", zone, days="any")
    for clock_time, allowed in [
        ("21:59:59", False),
        ("22:00:00", True),
        ("23:59:59", True),
        ("00:00:00", True),
        ("05:59:59", True),
        ("06:00:00", False),
        ("12:00:00", False),
    ]:
        moment = local(f"2025-07-15T{clock_time}", zone)
        assert judge(rule, at(moment)) is allowed, (zone, clock_time)


@pytest.mark.parametrize("zone", ZONES)
def test_weekdays_begin_and_end_at_local_midnight(zone: str) -> None:
    weekdays = window("00:00-24:00", zone)
    for moment, allowed in [
        ("2025-07-18T23:59:59", True),  # Friday
        ("2025-07-19T00:00:00", False),  # Saturday
        ("2025-07-20T23:59:59", False),  # Sunday
        ("2025-07-21T00:00:00", True),  # Monday
        ("2025-07-16T12:00:00", True),  # Wednesday
    ]:
        assert judge(weekdays, at(local(moment, zone))) is allowed, (zone, moment)


@pytest.mark.parametrize(
    ("days", "allowed_on"),
    [("mon", {0}), ("tue", {1}), ("wed", {2}), ("thu", {3}), ("fri", {4}), ("sat", {5}),
     ("sun", {6}), ("sat,sun", {5, 6}), ("fri-mon", {4, 5, 6, 0})],
)  # fmt: skip
def test_each_day_of_the_week_is_its_own_local_day(days: str, allowed_on: set[int]) -> None:
    for zone in ("Europe/Berlin", "Pacific/Kiritimati", "America/St_Johns"):
        rule = window("00:00-24:00", zone, days=days)
        for offset in range(7):  # Monday 2025-07-14 .. Sunday 2025-07-20, at noon
            moment = local(f"2025-07-{14 + offset}T12:00:00", zone)
            assert judge(rule, at(moment)) is (offset in allowed_on), (zone, days, offset)


# Transitions (UTC instants): Berlin springs forward 2025-03-30 01:00 (02:00 -> 03:00) and
# falls back 2025-10-26 01:00 (03:00 -> 02:00); New York 2025-03-09 07:00 and 2025-11-02
# 06:00; Lord Howe moves half an hour on 2025-04-05 15:00 and 2025-10-04 15:30.
DST_CASES = [
    # (zone, window, days, UTC instant, allowed)
    ("Europe/Berlin", "01:00-03:00", "sun", "2025-03-30T00:59:59", True),  # 01:59:59 CET
    ("Europe/Berlin", "01:00-03:00", "sun", "2025-03-30T01:00:00", False),  # 03:00 CEST
    ("Europe/Berlin", "03:00-04:00", "sun", "2025-03-30T01:00:00", True),
    ("Europe/Berlin", "03:00-04:00", "sun", "2025-03-30T00:59:59", False),
    ("Europe/Berlin", "09:00-17:00", "mon-fri", "2025-03-28T07:59:59", False),  # Fri, CET
    ("Europe/Berlin", "09:00-17:00", "mon-fri", "2025-03-28T08:00:00", True),
    ("Europe/Berlin", "09:00-17:00", "mon-fri", "2025-03-28T15:59:59", True),
    ("Europe/Berlin", "09:00-17:00", "mon-fri", "2025-03-28T16:00:00", False),
    ("Europe/Berlin", "09:00-17:00", "mon-fri", "2025-03-31T06:59:59", False),  # Mon, CEST
    ("Europe/Berlin", "09:00-17:00", "mon-fri", "2025-03-31T07:00:00", True),
    ("Europe/Berlin", "09:00-17:00", "mon-fri", "2025-03-31T14:59:59", True),
    ("Europe/Berlin", "09:00-17:00", "mon-fri", "2025-03-31T15:00:00", False),
    ("Europe/Berlin", "02:00-03:00", "sun", "2025-10-25T23:59:59", False),  # 01:59:59 CEST
    ("Europe/Berlin", "02:00-03:00", "sun", "2025-10-26T00:00:00", True),  # 02:00 CEST
    ("Europe/Berlin", "02:00-03:00", "sun", "2025-10-26T00:59:59", True),  # 02:59:59 CEST
    ("Europe/Berlin", "02:00-03:00", "sun", "2025-10-26T01:00:00", True),  # 02:00 CET
    ("Europe/Berlin", "02:00-03:00", "sun", "2025-10-26T01:59:59", True),  # 02:59:59 CET
    ("Europe/Berlin", "02:00-03:00", "sun", "2025-10-26T02:00:00", False),  # 03:00 CET
    ("Europe/Berlin", "09:00-17:00", "mon-fri", "2025-10-27T07:59:59", False),  # Mon, CET
    ("Europe/Berlin", "09:00-17:00", "mon-fri", "2025-10-27T08:00:00", True),
    ("Europe/Berlin", "09:00-17:00", "mon-fri", "2025-10-27T15:59:59", True),
    ("Europe/Berlin", "09:00-17:00", "mon-fri", "2025-10-27T16:00:00", False),
    ("America/New_York", "01:00-02:00", "sun", "2025-03-09T06:59:59", True),  # 01:59:59 EST
    ("America/New_York", "01:00-02:00", "sun", "2025-03-09T07:00:00", False),  # 03:00 EDT
    ("America/New_York", "09:00-17:00", "mon-fri", "2025-03-10T12:59:59", False),
    ("America/New_York", "09:00-17:00", "mon-fri", "2025-03-10T13:00:00", True),
    ("America/New_York", "09:00-17:00", "mon-fri", "2025-03-10T20:59:59", True),
    ("America/New_York", "09:00-17:00", "mon-fri", "2025-03-10T21:00:00", False),
    ("America/New_York", "01:00-02:00", "sun", "2025-11-02T05:59:59", True),  # 01:59:59 EDT
    ("America/New_York", "01:00-02:00", "sun", "2025-11-02T06:00:00", True),  # 01:00 EST
    ("America/New_York", "01:00-02:00", "sun", "2025-11-02T06:59:59", True),
    ("America/New_York", "01:00-02:00", "sun", "2025-11-02T07:00:00", False),  # 02:00 EST
    ("America/New_York", "09:00-17:00", "mon-fri", "2025-11-03T13:59:59", False),
    ("America/New_York", "09:00-17:00", "mon-fri", "2025-11-03T14:00:00", True),
    ("America/New_York", "09:00-17:00", "mon-fri", "2025-11-03T21:59:59", True),
    ("America/New_York", "09:00-17:00", "mon-fri", "2025-11-03T22:00:00", False),
    ("Australia/Lord_Howe", "01:30-02:00", "sun", "2025-04-05T14:59:59", True),  # 01:59:59
    ("Australia/Lord_Howe", "01:30-02:00", "sun", "2025-04-05T15:00:00", True),  # 01:30 again
    ("Australia/Lord_Howe", "01:30-02:00", "sun", "2025-04-05T15:29:59", True),
    ("Australia/Lord_Howe", "01:30-02:00", "sun", "2025-04-05T15:30:00", False),  # 02:00
    ("Australia/Lord_Howe", "02:00-03:00", "sun", "2025-10-04T15:29:59", False),  # 01:59:59
    ("Australia/Lord_Howe", "02:00-03:00", "sun", "2025-10-04T15:30:00", True),  # 02:30
    ("Australia/Lord_Howe", "02:00-03:00", "sun", "2025-10-04T15:59:59", True),
    ("Australia/Lord_Howe", "02:00-03:00", "sun", "2025-10-04T16:00:00", False),
]


@pytest.mark.parametrize(("zone", "hours", "days", "instant", "allowed"), DST_CASES)
def test_window_edges_follow_the_local_clock_across_a_dst_change(
    zone: str, hours: str, days: str, instant: str, allowed: bool
) -> None:
    assert judge(window(hours, zone, days), at(utc(instant))) is allowed


def test_window_edges_hold_whatever_the_offset_cache_already_holds() -> None:
    """The cached-offset fast path reads the offset of the request's own 15-minute bucket:
    with 1970's first buckets cached (Berlin was at +01:00 then) and Mondays in winter and
    summer, and the ones after each DST change, each Monday's edges are still exact."""
    zone = "Europe/Berlin"
    clock = clock_for(zone)
    for moment in range(0, 900 * BUCKET, BUCKET):  # every bucket key below 900
        clock.local(moment)
    rule = window("09:00-17:00", zone, days="mon")
    first = datetime.fromisoformat("2025-01-06T00:00:00").date().toordinal()
    mondays = [date.fromordinal(first + 7 * week).isoformat() for week in range(0, 52, 4)]
    for day in [*mondays, "2025-10-27"]:  # week 12 is 2025-03-31
        for clock_time, allowed in [
            ("08:59:59", False),
            ("09:00:00", True),
            ("16:59:59", True),
            ("17:00:00", False),
        ]:
            assert judge(rule, at(local(f"{day}T{clock_time}", zone))) is allowed, day


def test_a_window_judges_a_fractional_second_before_1970_by_the_second_it_is_in() -> None:
    rule = window("23:59-24:00", "UTC", days="wed")  # 1969-12-31 was a Wednesday
    assert judge(rule, at(-0.5))
    assert judge(rule, at(-60.0))
    assert not judge(rule, at(-60.5))
    assert not judge(rule, at(0.0))


def test_outside_the_window_says_when_access_is_allowed_and_the_local_time_now() -> None:
    rule = window("09:00-17:00", "Europe/Berlin")
    saturday = at(local("2025-11-22T10:14:30", "Europe/Berlin"))
    decision = denial(rule, saturday)
    (reason,) = decision.reasons
    assert reason.code == "time.window"
    assert reason.message == (
        "outside the allowed hours (Mon-Fri 09:00-17:00 Europe/Berlin);"
        " it is now Sat 10:14 Europe/Berlin"
    )
    assert reason.hint == "try again during the allowed hours"
    assert decision.obligations == ()
    seen = trace(rule, saturday)
    assert seen.expected == "Mon-Fri 09:00-17:00 Europe/Berlin"
    assert seen.observed == "Sat 10:14 Europe/Berlin"
