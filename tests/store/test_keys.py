"""KeyStore behaviour, identical on every backend."""

from __future__ import annotations

from typing import Any

import pytest


def test_versions_are_numbered_and_immutable(keys: Any) -> None:
    first = keys.put("signing", b"k1" * 16, algorithm="HS256", now=1.0)
    second = keys.put("signing", b"k2" * 16, algorithm="HS256", now=2.0)
    keys.put("cookie", b"c1" * 16, algorithm="A256GCM", now=3.0)
    assert (first.version, second.version) == (1, 2)
    assert keys.get("signing") == second
    assert keys.get("signing", 1) == first
    assert keys.get("signing", 3) is None
    assert keys.get("nope") is None
    assert keys.versions("signing") == [first, second]
    assert keys.names() == ["cookie", "signing"]


def test_empty_material_is_refused(keys: Any) -> None:
    with pytest.raises(ValueError, match="empty"):
        keys.put("signing", b"", algorithm="HS256")
