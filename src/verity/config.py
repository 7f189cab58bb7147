"""``verity.yaml``: the typed configuration schema, loading, and safe dumping.

One pydantic model is the single source of truth for every setting: its type, default
and documentation. Unknown keys are errors (a typo must not silently fall back to a
default), every error names its key path (``server.port: Input should be ...``), and
secrets are ``SecretStr`` or URLs whose passwords are masked in dumps and reprs.

Each later subsystem adds its own section model here (identity, audit, ...).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from . import yamlio
from ._urls import mask_url
from .errors import ConfigError, Problem
from .gateway.settings import GatewayConfig
from .identity.config import IdentityConfig
from .identity.login_config import LoginConfig
from .observability.config import MetricsConfig
from .request_io import problems_of

CONFIG_ENV = "VERITY_CONFIG"
DEFAULT_FILE = "verity.yaml"
DEMO_FILE = ".verity-demo/verity.yaml"
# Secrets are better kept out of files: these variables, when set, replace the file's value.
SECRET_ENV = {"VERITY_STORE_URL": ("store", "url"), "VERITY_REDIS_URL": ("store", "redis_url")}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Section):
    """Where the gateway listens and which proxies in front of it are trusted."""

    host: str = Field(default="127.0.0.1", description="Address to bind.")
    port: int = Field(default=8080, ge=1, le=65535, description="TCP port to bind.")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="CIDRs of reverse proxies whose X-Forwarded-For is believed (none by default).",
    )
    trusted_hops: int = Field(default=0, ge=0, le=10, description="Trusted proxy hops in front.")

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=True)
        return value


class PolicyConfig(_Section):
    """The policy file in force."""

    path: Path = Field(default=Path("policy.yaml"), description="Policy file (YAML).")
    reload_seconds: float = Field(default=5.0, ge=0, description="Poll interval; 0 = never.")


class StoreConfig(_Section):
    """Durable and shared state (see docs)."""

    url: str = Field(
        default="sqlite:///verity.db", description="sqlite:///PATH or postgresql://..."
    )
    redis_url: str | None = Field(default=None, description="redis://... for many nodes.")

    @field_validator("url")
    @classmethod
    def _store_url(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme not in ("sqlite", "postgresql", "postgres"):
            raise ValueError("use sqlite:///PATH or postgresql://USER@HOST/DB")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("redis", "rediss"):
            raise ValueError("use redis://HOST:PORT/DB or rediss://...")
        return value

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, mask_url(value) if isinstance(value, str) else value


class AuditConfig(_Section):
    """The tamper-evident audit log (see docs/audit.md)."""

    url: str | None = Field(
        default=None, description="sqlite:///PATH or postgresql://...; default: store.url."
    )
    pg_schema: str | None = Field(
        default=None, description="PostgreSQL schema for the audit tables."
    )
    signing_key: Path | None = Field(
        default=None, description="Ed25519 key for signed checkpoints."
    )
    checkpoint_every: int = Field(default=10_000, ge=1, description="Events between checkpoints.")
    checkpoint_seconds: float = Field(default=5.0, gt=0, description="Seconds between checkpoints.")
    fail_closed: bool = Field(
        default=True, description="Answer 503 for an allow the audit log did not acknowledge."
    )
    timeout_seconds: float = Field(
        default=5.0, gt=0, le=60, description="Longest wait for an audit acknowledgement."
    )
    allow_commit_window_seconds: float = Field(
        default=0.05,
        ge=0,
        le=1.0,
        description=(
            "Repeated allows of a (subject, route) are answered before their commit, which "
            "follows within this window; a crash can lose that window of them. 0: every "
            "allow waits for its commit. Denies and first allows always wait."
        ),
    )

    @field_validator("url")
    @classmethod
    def _audit_url(cls, value: str | None) -> str | None:
        return None if value is None else StoreConfig._store_url(value)

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, mask_url(value) if isinstance(value, str) else value


class VerityConfig(_Section):
    """The whole configuration; every section has safe defaults."""

    server: ServerConfig = Field(default_factory=ServerConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    login: LoginConfig = Field(default_factory=LoginConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)

    @model_validator(mode="after")
    def _route_issuers_are_configured(self) -> Self:
        """A route's ``issuers:`` names configured issuers, compared exactly like ``iss``:
        a spelling that no token or session can carry (``.../idp/`` for ``.../idp``)
        would refuse every caller of the route, so it is refused here, with the near
        match."""
        known = [issuer.issuer for issuer in self.identity.issuers]
        known += [provider.issuer for provider in self.login.providers]
        problems = []
        for route in self.gateway.routes:
            for name in route.issuers:
                if name in known:
                    continue
                near = [k for k in known if k.rstrip("/").lower() == name.rstrip("/").lower()]
                hint = f" (did you mean {near[0]!r}? issuers are compared exactly)" if near else ""
                problems.append(
                    f"route {route.name!r}: issuer {name!r} is neither an identity.issuers "
                    f"entry nor a login provider's issuer{hint}"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self


def parse_config(data: Any, *, source: str = "<config>") -> VerityConfig:
    """Validate a configuration mapping; raises ``ConfigError`` naming every problem."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, [Problem("", "the configuration is a mapping of sections")])
    data = _with_env(data)
    try:
        return VerityConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, problems_of(exc)) from None


def _with_env(data: dict[str, Any]) -> dict[str, Any]:
    """Apply ``SECRET_ENV`` overrides (``VERITY_STORE_URL``, ``VERITY_REDIS_URL``)."""
    merged = dict(data)
    for variable, (section, key) in SECRET_ENV.items():
        value = os.environ.get(variable)
        if value:
            body = merged.get(section)
            merged[section] = {**(body if isinstance(body, dict) else {}), key: value}
    return merged


def default_config_path() -> str | None:
    """``./verity.yaml`` if present, else the demo's ``./.verity-demo/verity.yaml`` (what
    ``make run`` writes), so that ``verity audit tail`` works where ``make run`` ran."""
    for candidate in (DEFAULT_FILE, DEMO_FILE):
        if Path(candidate).is_file():
            return candidate
    return None


def load_config(path: str | Path | None = None) -> VerityConfig:
    """Load ``path``, else ``$VERITY_CONFIG``, else ``default_config_path()``, else defaults.

    ``VERITY_STORE_URL`` and ``VERITY_REDIS_URL``, when set, replace ``store.url`` and
    ``store.redis_url`` (so database passwords need not be written into the file).

    Relative paths inside the file (``policy.path``, issuers' ``jwks_file``, the gateway's
    assertion ``signing_key``, SQLite ``store.url`` and ``audit.url``) are resolved
    against its folder.
    """
    chosen = path or os.environ.get(CONFIG_ENV) or default_config_path()
    if chosen is None:
        return parse_config({}, source="<environment>")
    source = str(chosen)
    try:
        data = yamlio.load_file(chosen)
    except yamlio.YamlProblem as exc:
        raise ConfigError(source, [exc.problem]) from None
    return _resolve_paths(parse_config(data, source=source), Path(chosen).resolve().parent)


def _resolve_paths(config: VerityConfig, base: Path) -> VerityConfig:
    """Relative file paths in the configuration are relative to the configuration file."""

    def resolved(path: Path) -> Path:
        return path if path.is_absolute() else base / path

    policy = config.policy.model_copy(update={"path": resolved(config.policy.path)})
    issuers = tuple(
        issuer.model_copy(update={"jwks_file": resolved(issuer.jwks_file)})
        if issuer.jwks_file is not None
        else issuer
        for issuer in config.identity.issuers
    )
    workload = config.identity.workload
    workload = workload.model_copy(
        update={
            "ca_dir": resolved(workload.ca_dir),
            "bundle_path": None if workload.bundle_path is None else resolved(workload.bundle_path),
        }
    )
    identity = config.identity.model_copy(update={"issuers": issuers, "workload": workload})
    gateway = config.gateway
    routes = tuple(
        route.model_copy(
            update={"assertion_companion_key_file": resolved(route.assertion_companion_key_file)}
        )
        if route.assertion_companion_key_file is not None
        else route
        for route in gateway.routes
    )
    gateway = gateway.model_copy(update={"routes": routes})
    if gateway.assertion.signing_key is not None:
        assertion = gateway.assertion.model_copy(
            update={"signing_key": resolved(gateway.assertion.signing_key)}
        )
        gateway = gateway.model_copy(update={"assertion": assertion})
    audit = config.audit
    if audit.signing_key is not None:
        audit = audit.model_copy(update={"signing_key": resolved(audit.signing_key)})
    if audit.url is not None:
        audit = audit.model_copy(update={"url": _sqlite_url_under(audit.url, base)})
    store = config.store
    if "VERITY_STORE_URL" not in os.environ:  # from the environment: relative to the cwd
        store = store.model_copy(update={"url": _sqlite_url_under(store.url, base)})
    update = {
        "policy": policy, "identity": identity, "gateway": gateway, "audit": audit,
        "store": store,
    }  # fmt: skip
    return config.model_copy(update=update)


def _sqlite_url_under(url: str, base: Path) -> str:
    """``sqlite:///relative.db`` -> ``sqlite:////<base>/relative.db`` (every command that
    reads this file then opens the same database, whatever its working directory)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return url
    rest = url[len(prefix) :]
    if not rest or rest.startswith("/"):
        return url
    return prefix + str(base / rest)


def dump_config(config: VerityConfig) -> dict[str, Any]:
    """The configuration as plain data with every secret masked (for logs and `config show`).

    ``SecretStr`` fields dump as ``**********``; URLs keep everything but the password."""
    data = config.model_dump(mode="json")
    store = data["store"]
    store["url"] = mask_url(store["url"])
    if store.get("redis_url"):
        store["redis_url"] = mask_url(store["redis_url"])
    if data["audit"].get("url"):
        data["audit"]["url"] = mask_url(data["audit"]["url"])
    return data
