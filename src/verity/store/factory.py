"""``open_stores``: the backends named by the configuration, behind the protocols.

``store.url`` chooses where durable state lives (``sqlite:///PATH`` or
``postgresql://...``); ``store.redis_url``, if set, moves what is shared and
short-lived to Redis: revocation fan-out, counters and the verified-token cache.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from urllib.parse import unquote, urlsplit

from ..config import StoreConfig
from . import postgres, sqlite
from . import redis as backend
from .delivery import DeliveryStats, TimedRevocations
from .errors import StoreUnavailableError
from .fanout import FanoutRevocations
from .memory import MemoryTokenCache
from .migrations import MigrationStatus
from .postgres import idp_schema as postgres_idp
from .protocols import (
    CounterStore,
    DeviceStore,
    GrantStore,
    KeyStore,
    RevocationStore,
    RiskStore,
    SessionStore,
    TokenCache,
)
from .redis.client import ping
from .sqlite import idp_schema as sqlite_idp


@dataclass
class Stores:
    """Every store of one node; ``close()`` (or ``with``) releases them."""

    backend: str
    sessions: SessionStore
    revocations: RevocationStore
    devices: DeviceStore
    risk: RiskStore
    grants: GrantStore
    counters: CounterStore
    keys: KeyStore
    token_cache: TokenCache
    shared: str | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)
    _probes: dict[str, Callable[[], bool | None]] = field(default_factory=dict, repr=False)
    deliveries: DeliveryStats = field(default_factory=DeliveryStats, repr=False)
    """How long revocations took to reach this node (``TimedRevocations``)."""

    def health(self) -> dict[str, bool]:
        """Whether each shared channel works right now, by name: ``postgresql`` (the
        NOTIFY listener that delivers revocations) and ``redis`` (the pub/sub subscriber, or
        without one the last publish). A channel nobody subscribed to is left out. Reads state the
        background listeners keep (no I/O), so a metrics scrape never blocks on it."""
        report = {name: probe() for name, probe in self._probes.items()}
        return {name: up for name, up in report.items() if up is not None}

    @property
    def degraded(self) -> bool:
        """True while any shared channel is down (the node still decides)."""
        return not all(self.health().values())

    def close(self) -> None:
        """Stop subscriptions and close connections (idempotent)."""
        closers, self._closers = self._closers, []
        for closer in reversed(closers):
            closer()

    def __enter__(self) -> Stores:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def backend_of(url: str) -> str:
    """``"sqlite"`` or ``"postgresql"`` for a store URL (``ValueError`` otherwise)."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        return "sqlite"
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    raise ValueError("a store URL is sqlite:///PATH or postgresql://...")


def sqlite_path(url: str) -> Path:
    """The file of ``sqlite:///relative.db`` or ``sqlite:////absolute.db``."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite" or parts.netloc or not parts.path.startswith("/"):
        raise ValueError("a SQLite URL is sqlite:///PATH (three slashes; four for /absolute)")
    return Path(unquote(parts.path[1:]))


def open_stores(
    config: StoreConfig,
    *,
    schema: str | None = None,
    redis_prefix: str = "verity:",
    migrate: bool = True,
) -> Stores:
    """Open the stores ``config`` names, applying pending migrations unless ``migrate=False``.

    ``schema`` confines PostgreSQL to one schema (``search_path``); ``redis_prefix``
    namespaces every Redis key and channel.
    """
    if backend_of(config.url) == "sqlite":
        stores = _open_sqlite(sqlite_path(config.url), migrate=migrate)
    else:
        stores = _open_postgres(config.url, schema=schema, migrate=migrate)
    if config.redis_url is not None:
        try:
            _add_redis(stores, config.redis_url, redis_prefix)
        except BaseException:
            stores.close()
            raise
    stores.revocations = TimedRevocations(stores.revocations, stores.deliveries)
    return stores


def _open_sqlite(path: Path, *, migrate: bool) -> Stores:
    db = sqlite.SqliteDatabase(path)
    try:
        if migrate:
            sqlite.migrate(db)
    except BaseException:
        db.close()
        raise
    revocations = sqlite.SqliteRevocations(db)
    return Stores(
        backend="sqlite",
        sessions=sqlite.SqliteSessions(db),
        revocations=revocations,
        devices=sqlite.SqliteDevices(db),
        risk=sqlite.SqliteRisk(db),
        grants=sqlite.SqliteGrants(db),
        counters=sqlite.SqliteCounters(db),
        keys=sqlite.SqliteKeys(db),
        token_cache=MemoryTokenCache(),
        _closers=[db.close, revocations.close],
    )


def _open_postgres(url: str, *, schema: str | None, migrate: bool) -> Stores:
    db = postgres.PostgresDatabase(url, schema=schema)
    try:
        if migrate:
            postgres.migrate(db)
    except BaseException:
        db.close()
        raise
    revocations = postgres.PostgresRevocations(db)
    return Stores(
        backend="postgresql",
        sessions=postgres.PostgresSessions(db),
        revocations=revocations,
        devices=postgres.PostgresDevices(db),
        risk=postgres.PostgresRisk(db),
        grants=postgres.PostgresGrants(db),
        counters=postgres.PostgresCounters(db),
        keys=postgres.PostgresKeys(db),
        token_cache=MemoryTokenCache(),
        _closers=[db.close, revocations.close],
        _probes={"postgresql": lambda: revocations.connected if revocations.subscribed else None},
    )


def _add_redis(stores: Stores, url: str, prefix: str) -> None:
    client = backend.connect(url)
    stores._closers.append(client.close)
    ping(client, url)
    bus = backend.RedisRevocations(client, url=url, prefix=prefix)
    stores._closers.append(bus.close)
    fanout = FanoutRevocations(stores.revocations, bus)
    stores.revocations = fanout
    # the subscriber's live connection says it best; without one, the last publish
    stores._probes["redis"] = lambda: bus.connected if bus.subscribed else not fanout.degraded
    stores.counters = backend.RedisCounters(client, url=url, prefix=prefix)
    stores.token_cache = backend.RedisTokenCache(client, prefix=prefix)
    stores.shared = "redis"


def migration_status(
    url: str, *, schema: str | None = None, track: str = "store"
) -> MigrationStatus:
    """Applied and pending migrations of the database at ``url`` (read-only), for the
    store's own ``track`` or the embedded IdP's (``track="idp"``)."""
    if track not in ("store", "idp"):
        raise ValueError("track is 'store' or 'idp'")
    if backend_of(url) == "sqlite":
        path = sqlite_path(url)
        if not path.exists():
            raise StoreUnavailableError(url, "the database file does not exist")
        sdb = sqlite.SqliteDatabase(path)
        try:
            return sqlite.status(sdb) if track == "store" else sqlite_idp.status(sdb)
        finally:
            sdb.close()
    pdb = postgres.PostgresDatabase(url, schema=schema, max_size=1)
    try:
        return postgres.status(pdb) if track == "store" else postgres_idp.status(pdb)
    finally:
        pdb.close()


def apply_migrations(url: str, *, schema: str | None = None) -> list[int]:
    """Apply pending migrations to the database at ``url``; returns the store track's
    versions applied. The embedded IdP's own track (its users and flow state) is brought
    up to date as well, so one ``verity db migrate`` prepares every table a node opens."""
    if backend_of(url) == "sqlite":
        sdb = sqlite.SqliteDatabase(sqlite_path(url))
        try:
            done = sqlite.migrate(sdb)
            sqlite_idp.migrate(sdb)
            return done
        finally:
            sdb.close()
    pdb = postgres.PostgresDatabase(url, schema=schema, max_size=1)
    try:
        done = postgres.migrate(pdb)
        postgres_idp.migrate(pdb)
        return done
    finally:
        pdb.close()
