"""Label selectors: matchLabels and every matchExpressions operator, exactly, and the key
path of each malformed selector."""

from __future__ import annotations

import pytest

from verity.segmentation._fields import Invalid
from verity.segmentation.selectors import parse_selector


def _matches(selector: dict[str, object], labels: dict[str, str]) -> bool:
    return parse_selector(selector, "s").matches(labels)


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({}, {}, True),
        ({}, {"a": "1"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        ({"matchLabels": {"a": "1", "b": "2"}}, {"a": "1"}, False),
        (
            {"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]},
            {"a": "2"},
            True,
        ),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
        (
            {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]},
            {"a": "1"},
            False,
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]},
            {"a": "3"},
            True,
        ),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"b": "1"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"b": "1"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": "1"}, False),
        (
            {"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "b", "operator": "Exists"}]},
            {"a": "1"},
            False,
        ),
    ],
)
def test_selector_semantics(
    selector: dict[str, object], labels: dict[str, str], expected: bool
) -> None:
    assert _matches(selector, labels) is expected


@pytest.mark.parametrize(
    ("selector", "path", "message"),
    [
        ({"matchLabels": {"a": 1}}, "s.matchLabels.a", "label value must be a string"),
        (
            {"matchExpressions": [{"key": "a", "operator": "Is"}]},
            "s.matchExpressions[0].operator",
            "expected In",
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "In"}]},
            "s.matchExpressions[0].values",
            "at least one",
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
            "s.matchExpressions[0].values",
            "takes no values",
        ),
        ({"matchLabel": {"a": "1"}}, "s.matchLabel", "unknown selector field"),
        ([], "s", "expected a mapping"),
    ],
)
def test_malformed_selectors_name_their_key_path(selector: object, path: str, message: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_selector(selector, "s")
    assert caught.value.path == path
    assert message in caught.value.message
