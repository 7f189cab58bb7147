"""Verity's state: typed protocols, and backends for SQLite, PostgreSQL and Redis.

``open_stores(config.store)`` returns a :class:`Stores` whose members implement the
protocols of :mod:`verity.store.protocols`; callers never know which backend is behind
them. See ``docs/store.md``.
"""

from __future__ import annotations

from .errors import ConcurrentUpdateError as ConcurrentUpdateError
from .errors import DuplicateSessionError as DuplicateSessionError
from .errors import GrantError as GrantError
from .errors import GrantNotFoundError as GrantNotFoundError
from .errors import GrantStateError as GrantStateError
from .errors import MigrationError as MigrationError
from .errors import SelfApprovalError as SelfApprovalError
from .errors import StoreError as StoreError
from .errors import StoreUnavailableError as StoreUnavailableError
from .errors import UnknownDeviceError as UnknownDeviceError
from .factory import Stores as Stores
from .factory import apply_migrations as apply_migrations
from .factory import migration_status as migration_status
from .factory import open_stores as open_stores
from .migrations import MigrationStatus as MigrationStatus
from .protocols import CounterStore as CounterStore
from .protocols import DeviceStore as DeviceStore
from .protocols import GrantStore as GrantStore
from .protocols import KeyStore as KeyStore
from .protocols import RevocationCallback as RevocationCallback
from .protocols import RevocationStore as RevocationStore
from .protocols import RiskStore as RiskStore
from .protocols import SessionStore as SessionStore
from .protocols import Subscription as Subscription
from .protocols import TokenCache as TokenCache
from .protocols import store_revision as store_revision
from .records import DeviceRecord as DeviceRecord
from .records import Grant as Grant
from .records import GrantStatus as GrantStatus
from .records import KeyVersion as KeyVersion
from .records import PostureReport as PostureReport
from .records import Revocation as Revocation
from .records import RevocationKind as RevocationKind
from .records import RiskSignal as RiskSignal
from .records import ScoreFactor as ScoreFactor
from .records import SessionRecord as SessionRecord
from .records import TrustScore as TrustScore
from .records import token_hash as token_hash

__all__ = [
    "ConcurrentUpdateError",
    "CounterStore",
    "DeviceRecord",
    "DeviceStore",
    "DuplicateSessionError",
    "Grant",
    "GrantError",
    "GrantNotFoundError",
    "GrantStateError",
    "GrantStatus",
    "GrantStore",
    "KeyStore",
    "KeyVersion",
    "MigrationError",
    "MigrationStatus",
    "PostureReport",
    "Revocation",
    "RevocationCallback",
    "RevocationKind",
    "RevocationStore",
    "RiskSignal",
    "RiskStore",
    "ScoreFactor",
    "SelfApprovalError",
    "SessionRecord",
    "SessionStore",
    "StoreError",
    "StoreUnavailableError",
    "Stores",
    "Subscription",
    "TokenCache",
    "TrustScore",
    "UnknownDeviceError",
    "apply_migrations",
    "migration_status",
    "open_stores",
    "store_revision",
    "token_hash",
]
