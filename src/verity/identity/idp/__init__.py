"""The embedded OpenID Connect provider: local users, password + TOTP login, tokens.

    storage = open_idp_storage(config.store.url)   # users + flow state: SQLite or PostgreSQL
    provider = IdentityProvider(config.identity.idp, users=storage.users, state=storage.state,
                                keys=stores.keys, counters=stores.counters,
                                revocations=stores.revocations)
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
from .factory import IdpStorage as IdpStorage
from .factory import open_idp_storage as open_idp_storage
from .factory import open_user_store as open_user_store
from .keys import SigningKeys as SigningKeys
from .passwords import hash_password as hash_password
from .passwords import verify_password as verify_password
from .postgres_users import PostgresUserStore as PostgresUserStore
from .provider import IdentityProvider as IdentityProvider
from .sql_state import PostgresFlowState as PostgresFlowState
from .sql_state import SqliteFlowState as SqliteFlowState
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
    "IdpStorage",
    "LockoutPolicy",
    "MemoryFlowState",
    "OAuthError",
    "PostgresFlowState",
    "PostgresUserStore",
    "SigningKeyPolicy",
    "SigningKeys",
    "SqliteFlowState",
    "SqliteUserStore",
    "TokenLifetimes",
    "UnknownUserError",
    "User",
    "UserExistsError",
    "UserStore",
    "create_app",
    "hash_password",
    "open_idp_storage",
    "open_user_store",
    "verify_password",
]
