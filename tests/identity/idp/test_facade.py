"""The package facade exports exactly ``__all__``."""

from __future__ import annotations

from verity.identity import idp


def test_all_matches_public_namespace() -> None:
    public = {name for name in vars(idp) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(idp, name)).__name__ == "module"}
    assert set(idp.__all__) == public - modules
    assert idp.__all__ == sorted(idp.__all__)
