"""The ``gateway:`` section of ``verity.yaml``: routes, identity assertion, forward-auth.

Bearer-token issuers are the ``identity:`` section (``verity.identity.IdentityConfig``);
a route may restrict which of them it accepts. Client-IP trust comes from ``server:``
(``trusted_proxies`` and ``trusted_hops``). Unknown keys are errors, every error names
its key path, and every value has a safe default.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

_HOST = re.compile(
    r"^(\*|[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*)$"
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_ORIGIN = re.compile(
    r"^(\*|https?://[a-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9a-f:.]+\](:[0-9]{1,5})?)$"
)
_MIB = 1024 * 1024
MAX_WORKERS = 64  # gateway.workers: a process each; more is a configuration mistake
MtlsMode = Literal["off", "optional", "required"]
MethodOverride = Literal["refuse", "decide"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _http_url(value: str, what: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} must be an http:// or https:// URL with a host")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{what} must not carry a query, fragment or credentials")
    return value.rstrip("/")


class PathMatching(_Section):
    """How a route reads spellings that upstream frameworks disagree on (docs/gateway.md,
    "The canonical target rule"). Ambiguous targets are always refused; these choices
    cover what depends on the upstream."""

    case: Literal["consistent", "sensitive", "insensitive"] = Field(
        default="consistent",
        description="`consistent` (default): a path with upper-case letters is allowed "
        "only if its lower-cased form is allowed too, so an upstream that ignores case "
        "cannot serve what the policy denies (`/ADMIN` where `/admin` is refused); the "
        "path is decided and forwarded as sent. `sensitive`: only the path as sent is "
        "decided (for upstreams known to route case-sensitively, when the policy tells "
        "paths apart by case). `insensitive`: the policy, the audit and the upstream see "
        "the path lower-cased (for upstreams that route case-insensitively, e.g. Express).",
    )
    parameters: Literal["refuse", "strip"] = Field(
        default="refuse",
        description="`;` path parameters (`/a;x=1/b`): `refuse` answers 400; `strip` "
        "removes them before the policy and the upstream (as Tomcat and Spring do).",
    )


class RouteConfig(_Section):
    """One protected application: requests for ``host`` under ``path_prefix``."""

    name: str = Field(description="Unique route name; the default assertion audience.")
    host: str = Field(description="Host name as clients send it (no port), or `*` for any.")
    path_prefix: str = Field(default="/", description="Path prefix; longest prefix wins.")
    upstream: str | None = Field(
        default=None, description="Upstream base URL; none = forward-auth only."
    )
    audience: str | None = Field(
        default=None, description="`aud` of the identity assertion (default: the route name)."
    )
    policy_host: str | None = Field(
        default=None, description="Host the policy sees instead of the request's Host."
    )
    issuers: tuple[str, ...] = Field(
        default=(), description="Accepted token issuers (`iss`); empty = every configured one."
    )
    forward_authorization: bool = Field(
        default=False, description="Pass the client's Authorization header to the upstream."
    )
    preserve_host: bool = Field(
        default=False, description="Send the client's Host upstream (default: the upstream's)."
    )
    connect_timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    read_timeout_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="Longest wait for upstream bytes."
    )
    max_body_bytes: int = Field(
        default=10 * _MIB, ge=0, description="Largest request body; larger is 413."
    )
    mtls: MtlsMode = Field(
        default="off",
        description="Client certificates (X.509-SVIDs): `off` ignores them; `optional` makes "
        "a verified SVID the principal; `required` answers 403 without one.",
    )
    websocket: bool = Field(
        default=True, description="Proxy WebSocket upgrades (decided like a GET)."
    )
    path_matching: PathMatching = Field(default_factory=PathMatching)
    method_override: MethodOverride = Field(
        default="refuse",
        description="Requests with X-HTTP-Method-Override, X-Method-Override, X-HTTP-Method "
        "or ?_method=: `refuse` (400), or `decide`: the policy decides the overriding method.",
    )
    websocket_origins: tuple[str, ...] = Field(
        default=(),
        description="Origins allowed to open WebSockets besides the request's own host "
        "(`https://app.example.com`; `*` = any). Applies to requests without a bearer token.",
    )
    assertion_companion_key_file: Path | None = Field(
        default=None,
        description="A secret shared with the upstream (at least 32 bytes; surrounding "
        "whitespace ignored): reuse one signed assertion per caller for up to 30 s and bind "
        "each request with an HMAC'd X-Verity-Request companion. None = a new assertion "
        "per request.",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use letters, digits and _ . : - (at most 128)")
        return value

    @field_validator("host", "policy_host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host = value.strip().lower().rstrip(".")
        if not _HOST.match(host):
            raise ValueError(f"{value!r} is not a host name (no scheme, port or path)")
        return host

    @field_validator("path_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if (
            not value.startswith("/")
            or any(c in value for c in "?#%\\;")
            or "//" in value
            or re.search(r"[. ](/|$)", value)
        ):
            raise ValueError(
                "a path prefix starts with / and has no ? # % \\ ; //, dot segment or "
                "segment ending in a dot or space"
            )
        return value

    @field_validator("upstream")
    @classmethod
    def _upstream(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value, "upstream")

    @field_validator("websocket_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        origins = tuple(origin.strip().lower().rstrip("/") for origin in value)
        for origin in origins:
            if not _ORIGIN.match(origin):
                raise ValueError(f"{origin!r} is not an origin (scheme://host[:port]) or *")
        return origins

    @property
    def assertion_audience(self) -> str:
        """The ``aud`` of assertions minted for this route."""
        return self.audience or self.name


class AssertionConfig(_Section):
    """The signed identity assertion (``X-Verity-Assertion``, ES256 JWT) sent upstream."""

    signing_key: Path | None = Field(
        default=None,
        description="PEM EC P-256 private key; none = a new key per process (one node only).",
    )
    ttl_seconds: int = Field(default=60, ge=5, le=3600, description="Assertion lifetime.")


class DecisionCacheConfig(_Section):
    """The node's decision cache (``gateway.decision_cache``): a policy answer reused for
    requests whose every input is the same, dropped at once on any revocation, policy
    reload, grant or posture change reaching the node (docs/gateway.md)."""

    ttl_seconds: float = Field(
        default=1.0, ge=0, le=1.0,
        description="How long a decision is reused at most; 0 turns the cache off. An "
        "entry also ends at the next whole second and at authentication-age boundaries, so "
        "time windows and maximum ages are obeyed exactly.",
    )  # fmt: skip
    max_entries: int = Field(
        default=100_000, ge=1, le=10_000_000,
        description="Decisions kept at most (least recently used dropped first).",
    )  # fmt: skip


class ForwardAuthConfig(_Section):
    """The forward-auth endpoints for nginx auth_request, Traefik and Envoy ext_authz."""

    enabled: bool = Field(default=True, description="Serve the forward-auth endpoints.")
    path: str = Field(
        default="/verity/auth",
        description="nginx auth_request path: reads only X-Original-URI/-Method.",
    )
    traefik_path: str = Field(
        default="/verity/auth/traefik",
        description="Traefik ForwardAuth path: reads only X-Forwarded-Uri/-Method/-Host.",
    )
    envoy_path_prefix: str = Field(
        default="/verity/ext_authz", description="Envoy ext_authz HTTP service path_prefix."
    )
    require_trusted_caller: bool = Field(
        default=True,
        description="Answer only callers inside server.trusted_proxies (the proxy itself).",
    )

    @field_validator("path", "traefik_path", "envoy_path_prefix")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or value.endswith("/") or "?" in value:
            raise ValueError("an absolute path without a trailing slash or query")
        return value

    @field_validator("traefik_path")
    @classmethod
    def _distinct(cls, value: str, info: ValidationInfo) -> str:
        if value == info.data.get("path"):
            raise ValueError("must differ from path: each dialect has its own endpoint")
        return value


class UpstreamPoolConfig(_Section):
    """The keep-alive connection pool shared by every route."""

    max_connections: int = Field(default=512, ge=1, description="Open connections at most.")
    max_keepalive_connections: int = Field(
        default=128, ge=0,
        description="0 turns keep-alive off; otherwise idle connections (at most "
        "max_connections) are kept for keepalive_expiry_seconds.",
    )  # fmt: skip
    keepalive_expiry_seconds: float = Field(default=30.0, ge=0, description="Idle lifetime.")
    client: Literal["lean", "aiohttp"] = Field(
        default="lean",
        description="lean: HTTP/1.1 on asyncio with httptools (verity.gateway.upstream_client); "
        "aiohttp: the aiohttp client (verity.gateway.pool).",
    )


class TlsConfig(_Section):
    """TLS termination (``gateway.tls``): certificate, HSTS, and the plain-HTTP redirect.

    Relative paths are relative to the configuration file; ``verity serve`` checks that
    the certificate and key load (a clean error names the key path otherwise).
    """

    cert_file: Path = Field(description="PEM certificate chain, leaf first.")
    key_file: Path = Field(description="PEM private key of the certificate (unencrypted).")
    client_ca_file: Path | None = Field(
        default=None,
        description="PEM CA bundle for client certificates (mTLS); none = not requested.",
    )
    min_version: Literal["1.2", "1.3"] = Field(
        default="1.2", description="Oldest TLS version accepted (never below 1.2)."
    )
    hsts_max_age: int = Field(
        default=31536000, ge=0, le=63072000, description="Strict-Transport-Security max-age."
    )
    hsts_include_subdomains: bool = Field(default=True, description="HSTS includeSubDomains.")
    redirect_http_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Also listen on this plain-HTTP port, answering 308 to the https URL.",
    )

    @property
    def hsts_header(self) -> str:
        """The ``Strict-Transport-Security`` value sent on every TLS response."""
        value = f"max-age={self.hsts_max_age}"
        return value + "; includeSubDomains" if self.hsts_include_subdomains else value


class WebSocketConfig(_Section):
    """WebSocket pass-through (``gateway.websocket``): limits shared by every route."""

    max_message_bytes: int = Field(
        default=_MIB,
        ge=1024,
        le=64 * _MIB,
        description="Largest message either way; larger closes the connection with 1009.",
    )
    ping_interval_seconds: float | None = Field(
        default=20.0, gt=0, le=3600, description="Keep-alive pings to clients; none = off."
    )
    ping_timeout_seconds: float | None = Field(
        default=20.0, gt=0, le=3600, description="A ping unanswered this long closes (1011)."
    )
    reauthorize_seconds: float = Field(
        default=30.0, gt=0, le=3600,
        description="An open WebSocket is decided again this often; a deny (expired or "
        "revoked credentials, a new policy, an ended grant) closes it with 1008.",
    )  # fmt: skip
    max_lifetime_seconds: float | None = Field(
        default=None, gt=0, description="Close any WebSocket this old (1008); none = no cap."
    )


class GatewayConfig(_Section):
    """The ``gateway:`` section: public URL, routes, assertion, forward-auth, limits."""

    public_url: str = Field(
        default="http://127.0.0.1:8080", description="The gateway's URL; the assertion `iss`."
    )
    realm: str = Field(default="verity", description="`realm` of WWW-Authenticate challenges.")
    routes: tuple[RouteConfig, ...] = Field(default=(), description="Protected applications.")
    assertion: AssertionConfig = Field(default_factory=AssertionConfig)
    decision_cache: DecisionCacheConfig = Field(default_factory=DecisionCacheConfig)
    forward_auth: ForwardAuthConfig = Field(default_factory=ForwardAuthConfig)
    upstream_pool: UpstreamPoolConfig = Field(default_factory=UpstreamPoolConfig)
    tls: TlsConfig | None = Field(
        default=None, validate_default=True, description="TLS termination; none = plain HTTP."
    )
    websocket: WebSocketConfig = Field(default_factory=WebSocketConfig)
    max_header_bytes: int = Field(
        default=32768, ge=1024, le=1048576, description="Request headers larger: 431."
    )
    max_header_count: int = Field(default=100, ge=10, le=1000, description="More: 431.")
    header_timeout_seconds: float = Field(
        default=15.0, gt=0, le=300,
        description="A request head (line and headers) not complete this long after the "
        "connection opened or the request's first byte: 408 and closed (slowloris).",
    )  # fmt: skip
    body_timeout_seconds: float = Field(
        default=30.0, gt=0, le=3600,
        description="A request body (forwarded, or read by the login and IdP apps) must "
        "arrive within this long plus one second per KiB received (1 KiB/s on average); "
        "otherwise 408, the upstream request is aborted and the connection closed.",
    )  # fmt: skip
    max_connections: int = Field(
        default=2048, ge=1, le=1_000_000,
        description="Open client connections (WebSockets included) at most; one more is "
        "answered 503 and closed before anything is read.",
    )  # fmt: skip
    max_concurrent_requests: int = Field(
        default=1024, ge=1, le=1_000_000,
        description="While this many connections are open or requests in progress, a new "
        "request is answered 503 (uvicorn's limit_concurrency); at most max_connections.",
    )  # fmt: skip
    fast_path: bool = Field(
        default=True,
        description="Answer forward-auth checks and bodiless proxied requests in the HTTP "
        "protocol itself (one write per response, no ASGI cycle); false = every request "
        "through the ASGI application. Same decisions, audit and answers either way.",
    )
    jwks_max_stale_seconds: float = Field(
        default=3600, ge=0, description="/readyz fails once issuer keys are stale this long."
    )
    workers: int = Field(
        default=1, ge=1, le=MAX_WORKERS,
        description="Worker processes of `verity serve` sharing the listening sockets "
        "(a supervisor binds them, forks the workers and restarts one that dies); "
        "limits such as max_connections apply per worker.",
    )  # fmt: skip

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        return _http_url(value, "public_url")

    @field_validator("realm")
    @classmethod
    def _realm(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9 ._:/-]{1,64}", value):
            raise ValueError("letters, digits, space and . _ : / - (at most 64)")
        return value

    @field_validator("routes")
    @classmethod
    def _unique_routes(cls, value: tuple[RouteConfig, ...]) -> tuple[RouteConfig, ...]:
        names = [route.name for route in value]
        if len(set(names)) != len(names):
            raise ValueError("two routes share a name")
        places = [(route.host, route.path_prefix) for route in value]
        if len(set(places)) != len(places):
            raise ValueError("two routes share a host and path prefix")
        audiences: dict[str, str] = {}  # an assertion for one route must not open another
        for route in value:
            other = audiences.setdefault(route.assertion_audience, route.name)
            if other != route.name:
                raise ValueError(
                    f"routes {other!r} and {route.name!r} share the assertion audience "
                    f"{route.assertion_audience!r}: give each route its own `audience`"
                )
        return value

    @field_validator("max_concurrent_requests")
    @classmethod
    def _concurrency(cls, value: int, info: ValidationInfo) -> int:
        connections = info.data.get("max_connections")
        if connections is not None and value > connections:
            raise ValueError(f"at most max_connections ({connections})")
        return value

    @field_validator("tls")
    @classmethod
    def _mtls_needs_client_ca(
        cls, value: TlsConfig | None, info: ValidationInfo
    ) -> TlsConfig | None:
        routes: tuple[RouteConfig, ...] = info.data.get("routes", ())
        mtls = [route.name for route in routes if route.mtls != "off"]
        if mtls and (value is None or value.client_ca_file is None):
            raise ValueError(
                f"route {mtls[0]!r} sets mtls: set tls.cert_file, tls.key_file and "
                "tls.client_ca_file (the CA bundle that client certificates must chain to)"
            )
        return value

    @property
    def max_head_bytes(self) -> int:
        """The bytes of a request head (request line, headers, line ends) the HTTP layer
        reads at most: ``max_header_bytes`` plus 8 KiB for the request line."""
        return self.max_header_bytes + 8192

    @property
    def mtls_enabled(self) -> bool:
        """True when some route reads client certificates."""
        return any(route.mtls != "off" for route in self.routes)
