"""``IdpConfig``: the embedded identity provider's settings (``identity.idp`` in verity.yaml).

Clients are registered here, with their exact redirect URIs; a client without a secret
is public and must use PKCE (which every client must anyway).
"""

from __future__ import annotations

from typing import Any, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from .config import require_secure_url

_MIN_SECRET_BYTES = 32

# What each scope releases (OIDC Core 5.4, plus Verity's ``groups`` and ``roles``);
# ``openid`` gives ``sub`` and the login's ``amr``/``acr``/``auth_time``, ``offline_access``
# a refresh token. No other scope is known.
SCOPE_CLAIMS: dict[str, tuple[str, ...]] = {
    "openid": (),
    "profile": ("name",),
    "email": ("email", "email_verified"),
    "groups": ("groups",),
    "roles": ("roles",),
    "offline_access": (),
}
SUPPORTED_SCOPES = tuple(SCOPE_CLAIMS)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_redirect_uri(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.fragment or "#" in uri:
        raise ValueError(f"{uri!r}: a redirect URI has no fragment")
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{uri!r}: a redirect URI is an absolute http(s) URL")
    return require_secure_url(uri)


class IdpClient(_Frozen):
    """A relying party allowed to log users in through this provider."""

    client_id: str = Field(min_length=1, max_length=128, description="The `client_id`.")
    display_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="What the sign-in form says a person continues to (default: the "
        "`client_id`), e.g. `the Acme wiki`.",
    )
    client_secret: SecretStr | None = Field(
        default=None, description="Shared secret (>= 32 bytes); none for a public client."
    )
    redirect_uris: tuple[str, ...] = Field(
        min_length=1, description="Exact redirect URIs (compared character by character)."
    )
    scopes: tuple[str, ...] = Field(
        default=SUPPORTED_SCOPES,
        description="Scopes this client may request (`offline_access`: refresh tokens).",
    )
    audiences: tuple[str, ...] = Field(
        default=(),
        description="`aud` of this client's access tokens; default: the client_id alone. "
        "List the gateway's audience (e.g. `verity`) only for clients whose tokens the "
        "gateway should accept.",
    )

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(SUPPORTED_SCOPES))
        if unknown:
            raise ValueError(f"unknown scopes {unknown}; supported: {list(SUPPORTED_SCOPES)}")
        if "openid" not in value:
            raise ValueError("a client's scopes must include 'openid'")
        return value

    @field_validator("audiences")
    @classmethod
    def _audiences(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not aud or len(aud) > 256 for aud in value):
            raise ValueError("an audience has 1 to 256 characters")
        return tuple(dict.fromkeys(value))

    @property
    def token_audiences(self) -> tuple[str, ...]:
        """The ``aud`` of this client's access tokens (the client itself by default)."""
        return self.audiences or (self.client_id,)

    @field_validator("redirect_uris")
    @classmethod
    def _redirects(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_check_redirect_uri(uri) for uri in value)

    @field_validator("client_secret")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < _MIN_SECRET_BYTES:
            raise ValueError(f"client_secret must be at least {_MIN_SECRET_BYTES} bytes")
        return value

    @property
    def public(self) -> bool:
        """True for a client without a secret (PKCE is its only proof)."""
        return self.client_secret is None


class LockoutPolicy(_Frozen):
    """Brute-force protection: failures counted in a sliding window, per account and IP.

    An account at ``max_account_failures`` is locked (every attempt refused unchecked)
    until failures age out. An IP (an IPv6 client's /64) at ``max_ip_failures`` is only
    slowed down: each further attempt from it waits ``ip_delay_seconds`` more than the one
    before, up to ``ip_max_delay_seconds``, and is then checked normally (a correct
    password for an account that is not locked is accepted)."""

    window_seconds: float = Field(default=900, gt=0, le=86400, description="Failure window.")
    max_account_failures: int = Field(
        default=5, ge=1, description="Per account, in window: then locked."
    )
    max_ip_failures: int = Field(
        default=50, ge=1, description="Per client IP, in window: then slowed down."
    )
    ip_delay_seconds: float = Field(
        default=1.0, gt=0, le=60, description="Added wait per attempt from a throttled IP."
    )
    ip_max_delay_seconds: float = Field(
        default=10.0, gt=0, le=60, description="Longest wait of an attempt from a throttled IP."
    )


class SigningKeyPolicy(_Frozen):
    """Signing keys: algorithm, rotation period, and how long a new key is published
    before it signs (so verifiers' JWKS caches learn it first)."""

    algorithm: str = Field(default="ES256", pattern="^(ES256|EdDSA)$", description="Alg.")
    key_name: str = Field(default="idp-signing", min_length=1, description="KeyStore name.")
    rotate_after_seconds: float = Field(
        default=30 * 86400, gt=0, description="Age at which a new key is generated."
    )
    publish_before_use_seconds: float = Field(
        default=3600, ge=0, description="A new key is in the JWKS this long before it signs."
    )


class PasswordHashing(_Frozen):
    """Bounds on password hashing (argon2id, 19 MiB each): ``identity.idp.password_hashing``."""

    max_concurrent: int | None = Field(
        default=None, ge=1, le=256,
        description="Hashes computed at once in a process; none = the CPUs (at most 8).",
    )  # fmt: skip
    wait_seconds: float = Field(
        default=10.0, ge=0, le=120,
        description="A login waits this long for a hashing slot, then gets 503.",
    )  # fmt: skip


class TokenLifetimes(_Frozen):
    """How long each artefact lives, in seconds. ``refresh_token`` is the life of one
    refresh token (each rotation starts a new one); ``refresh_family`` caps the whole chain
    of rotations from one login."""

    authorization_code: float = Field(default=60, gt=0, le=600)
    access_token: float = Field(default=600, gt=0, le=86400)
    id_token: float = Field(default=600, gt=0, le=86400)
    refresh_token: float = Field(default=8 * 3600, gt=0, le=90 * 86400)
    refresh_family: float = Field(
        default=86400,
        gt=0,
        le=90 * 86400,
        description="Absolute cap on a chain of rotated refresh tokens, counted from the "
        "login it came from; past it the user must log in again.",
    )
    login_transaction: float = Field(default=600, gt=0, le=3600)


class IdpConfig(_Frozen):
    """The embedded OIDC provider (``identity.idp``)."""

    issuer: str = Field(description="Issuer URL, including the mount prefix (e.g. /idp).")
    clients: tuple[IdpClient, ...] = Field(default=(), description="Registered clients.")
    lifetimes: TokenLifetimes = Field(default_factory=TokenLifetimes)
    lockout: LockoutPolicy = Field(default_factory=LockoutPolicy)
    password_hashing: PasswordHashing = Field(default_factory=PasswordHashing)
    keys: SigningKeyPolicy = Field(default_factory=SigningKeyPolicy)
    max_body_bytes: int = Field(default=16384, ge=1024, le=1048576, description="Form cap.")

    @model_validator(mode="before")
    @classmethod
    def _removed_options(cls, data: Any) -> Any:
        if isinstance(data, dict) and "access_token_audience" in data:
            raise ValueError(
                "access_token_audience was removed: it gave every client's access tokens "
                "the gateway's audience. Set `audiences: [<gateway audience>]` on the "
                "clients whose access tokens the gateway should accept (the others get "
                "their client_id)"
            )
        return data

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.query or parts.fragment or value.endswith("/"):
            raise ValueError("the issuer URL has no query, fragment or trailing slash")
        return require_secure_url(value)

    @model_validator(mode="after")
    def _unique_clients(self) -> Self:
        ids = [client.client_id for client in self.clients]
        if len(set(ids)) != len(ids):
            raise ValueError("a client_id is registered twice")
        return self

    @property
    def access_token_audiences(self) -> tuple[str, ...]:
        """Every audience any client's access tokens carry (what ``/userinfo`` accepts)."""
        audiences = (aud for client in self.clients for aud in client.token_audiences)
        return tuple(dict.fromkeys(audiences))

    def client(self, untrusted_client_id: str) -> IdpClient | None:
        """The registered client with this id, or ``None``."""
        for client in self.clients:
            if client.client_id == untrusted_client_id:
                return client
        return None

    @property
    def secure_cookies(self) -> bool:
        """Cookies get ``Secure`` unless the issuer is plain HTTP on loopback."""
        return urlsplit(self.issuer).scheme == "https"

    @property
    def cookie_path(self) -> str:
        """The issuer's path: cookies are scoped to the provider."""
        return urlsplit(self.issuer).path or "/"
