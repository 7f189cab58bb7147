"""Canonical JSON (RFC 8785): the test vectors of the RFC, and the fast path for events
gives the same bytes as the checked walk."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from verity.audit import EventKind, UserRef, canonical_json, session_event
from verity.audit.canonical import canonical_event, format_number

from .conftest import sample_events


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0"),
        (-0.0, "0"),
        (1.0, "1"),
        (4.5, "4.5"),
        (0.002, "0.002"),
        (1e-7, "1e-7"),
        (0.000001, "0.000001"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1e30, "1e+30"),
        (333333333.33333329, "333333333.3333333"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (-1.5, "-1.5"),
        (295147905179352830000.0, "295147905179352830000"),
    ],
)
def test_numbers_use_the_ecmascript_form(value: float, text: str) -> None:
    assert format_number(value) == text


def test_rfc8785_sorts_keys_by_utf16_code_units() -> None:
    value = {"\u20ac": "Euro", "\r": "CR", "\ufb33": "Hebrew", "1": "One", "\U0001f600": "Emoji"}
    value |= {"\u0080": "Control", "\u00f6": "Latin"}
    expected = '{"\\r":"CR","1":"One","\u0080":"Control","\u00f6":"Latin","\u20ac":"Euro","\U0001f600":"Emoji","\ufb33":"Hebrew"}'
    assert canonical_json(value) == expected.encode("utf-8")


def test_rfc8785_example_structure() -> None:
    value = {"numbers": [333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001]}
    value |= {
        "string": "\u20ac$\u000f\u000aA'\u0042\u0022\u005c\\\"/",
        "literals": [None, True, False],
    }
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonical_json(value) == expected.encode("utf-8")


@pytest.mark.parametrize("bad", [math.nan, math.inf, {1: "x"}, b"bytes", "\ud800", {"k": object()}])
def test_values_without_a_canonical_form_are_refused(bad: object) -> None:
    with pytest.raises((ValueError, TypeError, UnicodeEncodeError)):
        canonical_json(bad)


def test_fast_path_matches_the_checked_walk_for_events() -> None:
    for event in sample_events(20):
        document = event.to_ocsf()
        assert canonical_event(document) == canonical_json(document)


@given(
    message=st.text(max_size=40),
    detail=st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True),
        st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(max_size=20)),
        max_size=5,
    ),
)
def test_fast_path_matches_for_any_text(message: str, detail: dict[str, object]) -> None:
    try:
        message.encode("utf-8")
    except UnicodeEncodeError:
        return
    event = session_event(EventKind.LOGIN, user=UserRef("u"), message=message, detail=detail)
    document = event.to_ocsf()
    assert canonical_event(document) == canonical_json(document)
