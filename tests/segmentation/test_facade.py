"""The package facade re-exports exactly what ``__all__`` lists."""

from __future__ import annotations

import types

from verity import segmentation


def test_all_matches_the_public_namespace() -> None:
    public = {
        name
        for name, value in vars(segmentation).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and getattr(value, "__module__", "").startswith(segmentation.__name__ + ".")
    }
    assert set(segmentation.__all__) == public
    assert all(getattr(segmentation, name) is not None for name in segmentation.__all__)
