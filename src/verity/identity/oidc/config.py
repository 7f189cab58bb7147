"""Login configuration models (defined in ``verity.identity.login_config`` so that
``verity.config`` can embed them without importing the relying party itself)."""

from ..login_config import LoginConfig, ProviderConfig

__all__ = ["LoginConfig", "ProviderConfig"]
