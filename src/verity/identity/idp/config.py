"""The embedded IdP's configuration models (defined in ``verity.identity.idp_config`` so
that ``verity.identity.config`` can embed them without importing the IdP itself)."""

from ..idp_config import IdpClient, IdpConfig, LockoutPolicy, SigningKeyPolicy, TokenLifetimes

__all__ = ["IdpClient", "IdpConfig", "LockoutPolicy", "SigningKeyPolicy", "TokenLifetimes"]
