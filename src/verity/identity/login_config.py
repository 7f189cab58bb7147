"""``LoginConfig``: the browser-login (OIDC relying party) settings, one ``ProviderConfig``
per identity provider. Every setting is typed, documented and validated here."""

from __future__ import annotations

import re
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from .config import Algorithm, ClaimMapping, JwksPolicy, require_secure_url

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_HOST = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$|^\[[0-9a-f:.]+\]$")
_COOKIE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderConfig(_Frozen):
    """One OpenID Provider the browser can log in with (metadata from OIDC discovery)."""

    name: str = Field(description="Short id used in URLs (`/verity/login?provider=NAME`).")
    display_name: str | None = Field(default=None, description="Label on the chooser page.")
    issuer: str = Field(description="The provider's exact issuer URL (discovery base).")
    client_id: str = Field(min_length=1, description="This relying party's client id.")
    client_secret: SecretStr | None = Field(
        default=None, description="Client secret; omit for a public client (PKCE only)."
    )
    token_auth_method: Literal["client_secret_basic", "client_secret_post"] = Field(
        default="client_secret_basic", description="How the secret is sent to the token endpoint."
    )
    scopes: tuple[str, ...] = Field(
        default=("openid", "email", "profile"), description="Scopes requested (with openid)."
    )
    algorithms: tuple[Algorithm, ...] = Field(
        default=("RS256", "ES256"), min_length=1, description="Allowed ID-token `alg` values."
    )
    claims: ClaimMapping = Field(
        default_factory=ClaimMapping, description="Claims -> Principal (groups, roles, ...)."
    )
    leeway_seconds: float = Field(default=30, ge=0, le=300, description="Clock skew allowed.")
    jwks: JwksPolicy = Field(default_factory=JwksPolicy, description="Key cache settings.")
    refresh: bool = Field(default=True, description="Use refresh tokens when the IdP issues one.")
    extra_authorize_params: dict[str, str] = Field(
        default_factory=dict, description="Added to the authorization request (e.g. prompt)."
    )
    timeout_seconds: float = Field(default=10, gt=0, le=60, description="HTTP timeout to IdP.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use lower-case letters, digits, '-' and '_' (max 64)")
        return value

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        return require_secure_url(value)

    @field_validator("scopes")
    @classmethod
    def _openid(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if "openid" not in value:
            raise ValueError("scopes must include 'openid'")
        return value

    @field_validator("extra_authorize_params")
    @classmethod
    def _no_protocol_params(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = {
            "state",
            "nonce",
            "code_challenge",
            "code_challenge_method",
            "redirect_uri",
            "client_id",
            "response_type",
            "scope",
            "response_mode",
        }
        clash = sorted(reserved & set(value))
        if clash:
            raise ValueError(f"{clash} are set by Verity and cannot be overridden")
        return value

    @property
    def label(self) -> str:
        """What the chooser page shows."""
        return self.display_name or self.name


class LoginConfig(_Frozen):
    """The ``login:`` section: browser login through one or more OpenID Providers."""

    providers: tuple[ProviderConfig, ...] = Field(default=(), description="Identity providers.")
    public_url: str | None = Field(
        default=None,
        description="External base URL of the gateway (redirect_uri is built from it); "
        "default: the request's scheme and Host.",
    )
    path_prefix: str = Field(default="/verity", description="Where the login routes live.")
    cookie_name: str = Field(
        default="verity_session", description="Session cookie ('__Host-' added when Secure)."
    )
    cookie_key: SecretStr | None = Field(
        default=None,
        description="Cookie signing key (>= 32 bytes); default: generated once in the key store.",
    )
    session_lifetime_seconds: float = Field(
        default=8 * 3600, ge=60, le=30 * 86400, description="Absolute session lifetime."
    )
    login_timeout_seconds: float = Field(
        default=600, ge=30, le=3600, description="How long a started login may take."
    )
    refresh_margin_seconds: float = Field(
        default=60, ge=0, description="Refresh tokens this long before they expire."
    )
    cache_seconds: float = Field(
        default=5, ge=0, le=60, description="Per-node cache of session lookups."
    )
    allowed_redirect_hosts: tuple[str, ...] = Field(
        default=(),
        description="Hosts allowed after login besides relative paths ('*.example.com' ok).",
    )
    default_redirect: str = Field(default="/", description="Where to go when `rd` is unusable.")
    post_logout_path: str = Field(
        default="/", description="Path (on public_url) the IdP sends the browser to after logout."
    )
    logout_token_max_age_seconds: float = Field(
        default=300, ge=10, le=3600, description="Oldest back-channel logout token accepted."
    )

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
            raise ValueError("public_url is http(s)://HOST[:PORT][/PATH] without a query")
        return value.rstrip("/")

    @field_validator("path_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not re.match(r"^(/[A-Za-z0-9_-]+)+$", value):
            raise ValueError("path_prefix is like /verity (no trailing slash)")
        return value

    @field_validator("cookie_name")
    @classmethod
    def _cookie_name(cls, value: str) -> str:
        if not _COOKIE_NAME.match(value) or value.startswith("__"):
            raise ValueError("cookie_name: letters, digits, '-' and '_', not starting with '__'")
        return value

    @field_validator("cookie_key")
    @classmethod
    def _cookie_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < 32:
            raise ValueError("cookie_key must be at least 32 bytes")
        return value

    @field_validator("allowed_redirect_hosts")
    @classmethod
    def _hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        hosts = tuple(host.lower().rstrip(".") for host in value)
        bad = [host for host in hosts if not _HOST.match(host)]
        if bad:
            raise ValueError(f"{bad} are not host names (no scheme, port or path)")
        return hosts

    @field_validator("default_redirect", "post_logout_path")
    @classmethod
    def _relative(cls, value: str) -> str:
        if not value.startswith("/") or value.startswith("//") or "\\" in value:
            raise ValueError("must be a relative path starting with a single '/'")
        return value

    @model_validator(mode="after")
    def _unique(self) -> Self:
        names = [provider.name for provider in self.providers]
        if len(set(names)) != len(names):
            raise ValueError("a provider name is used twice")
        return self

    def provider(self, name: str) -> ProviderConfig | None:
        """The provider called ``name``, if configured."""
        return next((p for p in self.providers if p.name == name), None)
