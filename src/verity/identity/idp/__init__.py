"""The embedded OpenID Connect provider: local users, password + TOTP login, tokens.

    provider = IdentityProvider(config, users=SqliteUserStore(db), keys=stores.keys,
                                counters=stores.counters, revocations=stores.revocations)
    app.mount("/idp", create_app(provider))    # config.issuer = "https://host/idp"

Authorization code flow only, PKCE (S256) always, exact redirect URIs, ES256/EdDSA
tokens with key rotation and overlap, brute-force lockout, rotated refresh tokens.
"""

from .app import create_app as create_app
from .config import IdpClient as IdpClient
from .config import IdpConfig as IdpConfig
from .config import LockoutPolicy as LockoutPolicy
from .config import SigningKeyPolicy as SigningKeyPolicy
from .config import TokenLifetimes as TokenLifetimes
from .errors import IdpError as IdpError
from .errors import OAuthError as OAuthError
from .errors import UnknownUserError as UnknownUserError
from .errors import UserExistsError as UserExistsError
from .factory import open_user_store as open_user_store
from .keys import SigningKeys as SigningKeys
from .passwords import hash_password as hash_password
from .passwords import verify_password as verify_password
from .provider import IdentityProvider as IdentityProvider
from .sqlite_users import SqliteUserStore as SqliteUserStore
from .state import FlowState as FlowState
from .state import MemoryFlowState as MemoryFlowState
from .users import User as User
from .users import UserStore as UserStore

__all__ = [
    "FlowState",
    "IdentityProvider",
    "IdpClient",
    "IdpConfig",
    "IdpError",
    "LockoutPolicy",
    "MemoryFlowState",
    "OAuthError",
    "SigningKeyPolicy",
    "SigningKeys",
    "SqliteUserStore",
    "TokenLifetimes",
    "UnknownUserError",
    "User",
    "UserExistsError",
    "UserStore",
    "create_app",
    "hash_password",
    "open_user_store",
    "verify_password",
]
