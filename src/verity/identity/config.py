"""Per-issuer verification settings: one frozen, validated ``IssuerConfig`` per issuer.

The allowed algorithms, the key source and every check come from here, never from a
token. The ``identity:`` section of ``verity.yaml`` is an ``IdentityConfig``.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from .workload.config import WorkloadConfig

Algorithm = Literal[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
    "EdDSA",
    "HS256", "HS384", "HS512",
]  # fmt: skip
HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
_HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}

# Header parameters registered by RFC 7515/7516/7519: never valid inside ``crit``.
REGISTERED_HEADERS = frozenset(
    {"alg", "jku", "jwk", "kid", "x5u", "x5c", "x5t", "x5t#S256", "typ", "cty", "crit"}
    | {"enc", "zip", "epk", "apu", "apv", "iv", "tag", "p2s", "p2c"}
)


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost`` and literal loopback addresses (127.0.0.0/8, ::1)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def require_secure_url(url: str) -> str:
    """``url`` if it is HTTPS, or HTTP to a loopback host; raises ``ValueError`` otherwise."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and is_loopback_host(parts.hostname):
        return url
    raise ValueError(f"{url!r}: key sources must use https:// (http:// only for loopback)")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClaimMapping(_Frozen):
    """Which claims become the ``Principal``'s id, email, groups, roles and session.

    Dotted names reach into objects (``realm_access.roles`` for Keycloak).
    """

    subject: str = Field(default="sub", description="Claim holding the principal id.")
    email: str = Field(default="email", description="Claim holding the e-mail address.")
    groups: str = Field(default="groups", description="Claim with a list of groups.")
    roles: str = Field(default="roles", description="Claim with a list of roles.")
    session_id: str = Field(default="sid", description="Claim with the IdP session id.")
    mfa_amr_values: frozenset[str] = Field(
        default=frozenset({"mfa"}),
        description="`amr` values (RFC 8176) that mean multi-factor authentication.",
    )


class JwksPolicy(_Frozen):
    """How keys fetched from a JWKS URL are cached and refreshed."""

    min_ttl_seconds: float = Field(default=60, ge=1, description="Lower clamp for max-age.")
    max_ttl_seconds: float = Field(default=86400, le=604800, description="Upper clamp.")
    default_ttl_seconds: float = Field(default=300, gt=0, description="Without max-age.")
    refetch_interval_seconds: float = Field(
        default=30, ge=0, description="Least time between two fetches (unknown kid, errors)."
    )
    stale_if_error_seconds: float = Field(
        default=86400, ge=0, le=604800, description="Keep stale keys this long if fetches fail."
    )
    timeout_seconds: float = Field(default=5, gt=0, le=60, description="HTTP timeout.")
    max_bytes: int = Field(default=262144, ge=1024, description="Largest accepted document.")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.min_ttl_seconds <= self.default_ttl_seconds <= self.max_ttl_seconds:
            raise ValueError("need min_ttl_seconds <= default_ttl_seconds <= max_ttl_seconds")
        return self


class IssuerConfig(_Frozen):
    """Everything needed to verify the tokens of one issuer.

    Exactly one key source: ``jwks_uri``, ``jwks_file``, ``shared_secret`` (HMAC), or
    none of them, which means OIDC discovery at ``{issuer}/.well-known/openid-configuration``.
    """

    issuer: str = Field(description="The exact `iss` value of this issuer's tokens.")
    audiences: tuple[str, ...] = Field(min_length=1, description="Accepted `aud` values.")
    algorithms: tuple[Algorithm, ...] = Field(
        default=("RS256",), min_length=1, description="Allowed `alg` values."
    )
    jwks_uri: str | None = Field(default=None, description="JWKS URL (skips discovery).")
    jwks_file: Path | None = Field(default=None, description="Local JWKS file.")
    shared_secret: SecretStr | None = Field(
        default=None, description="HMAC secret (HS* only), at least as long as the hash."
    )
    leeway_seconds: float = Field(default=30, ge=0, le=300, description="Clock skew allowed.")
    required_claims: tuple[str, ...] = Field(
        default=(), description="Claims required besides exp, iss and aud (always required)."
    )
    expected_typ: str | None = Field(default=None, description="Required `typ`, e.g. at+jwt.")
    max_token_bytes: int = Field(default=8192, ge=256, le=65536, description="Size cap.")
    critical_headers: frozenset[str] = Field(
        default=frozenset(),
        description="`crit` extensions the application processes itself (others rejected).",
    )
    token_cache_size: int = Field(default=10000, ge=0, description="Verified tokens cached.")
    claims: ClaimMapping = Field(default_factory=ClaimMapping)
    jwks: JwksPolicy = Field(default_factory=JwksPolicy)

    @field_validator("audiences", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value

    @field_validator("algorithms")
    @classmethod
    def _no_duplicates(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("an algorithm is listed twice")
        return value

    @field_validator("jwks_uri")
    @classmethod
    def _secure_jwks_uri(cls, value: str | None) -> str | None:
        return None if value is None else require_secure_url(value)

    @field_validator("critical_headers")
    @classmethod
    def _extensions_only(cls, value: frozenset[str]) -> frozenset[str]:
        registered = sorted(value & (REGISTERED_HEADERS | {"b64"}))
        if registered:
            raise ValueError(f"{registered} cannot be handled as critical extensions")
        return value

    @model_validator(mode="after")
    def _key_source(self) -> Self:
        sources = [self.jwks_uri, self.jwks_file, self.shared_secret]
        if sum(source is not None for source in sources) > 1:
            raise ValueError("give at most one of jwks_uri, jwks_file, shared_secret")
        hmac = HMAC_ALGORITHMS & set(self.algorithms)
        if hmac:
            self._check_hmac(hmac)
        elif self.shared_secret is not None:
            raise ValueError("shared_secret needs an HS256/HS384/HS512 algorithm")
        if self.uses_discovery:
            require_secure_url(self.discovery_url)
        return self

    def _check_hmac(self, hmac: frozenset[str]) -> None:
        if len(self.algorithms) != 1:
            raise ValueError("an HMAC algorithm cannot be mixed with others (one key, one alg)")
        if self.shared_secret is None:
            raise ValueError("HMAC algorithms need an explicit shared_secret")
        secret = self.shared_secret.get_secret_value().encode()
        needed = _HMAC_MIN_BYTES[next(iter(hmac))]
        if len(secret) < needed:
            raise ValueError(f"shared_secret must be at least {needed} bytes for this algorithm")

    @property
    def uses_discovery(self) -> bool:
        """True when keys come from OIDC discovery (no other key source configured)."""
        return self.jwks_uri is None and self.jwks_file is None and self.shared_secret is None

    @property
    def discovery_url(self) -> str:
        """``{issuer}/.well-known/openid-configuration`` (OpenID Connect Discovery 4)."""
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"


class IdentityConfig(_Frozen):
    """The ``identity:`` section of ``verity.yaml``: the trusted issuers."""

    issuers: tuple[IssuerConfig, ...] = Field(default=(), description="Trusted issuers.")
    idp: IdpConfig | None = Field(
        default=None, description="Embedded OIDC provider (off when absent)."
    )
    workload: WorkloadConfig = Field(
        default_factory=WorkloadConfig, description="Workload identity (SPIFFE CA, SVIDs)."
    )

    @field_validator("issuers")
    @classmethod
    def _unique(cls, value: tuple[IssuerConfig, ...]) -> tuple[IssuerConfig, ...]:
        names = [issuer.issuer for issuer in value]
        if len(set(names)) != len(names):
            raise ValueError("an issuer is configured twice")
        return value


from .idp_config import IdpConfig  # noqa: E402 - idp_config imports this module's helpers

IdentityConfig.model_rebuild()
