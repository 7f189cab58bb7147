"""Immutable values that flow through Verity: who asks, from what, for what, and the answer.

The enforcement points gather every fact into one `AccessRequest`; the policy engine turns
it into a `Decision`. Both are frozen values, so a decision can be audited, replayed and
explained later. Constructors normalise what they are given (lower-case hosts, IPv4-mapped
IPv6 addresses, upper-case region codes) so that a policy cannot be bypassed by spelling.
"""

from __future__ import annotations

import enum
import ipaddress
import posixpath
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple
from urllib.parse import unquote

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class Effect(enum.Enum):
    """The outcome of a decision."""

    ALLOW = "allow"
    DENY = "deny"


class PrincipalKind(enum.Enum):
    """What kind of caller a principal is."""

    USER = "user"
    SERVICE = "service"
    ANONYMOUS = "anonymous"


class ObligationKind(enum.Enum):
    """What the enforcement point must do besides allowing or denying."""

    STEP_UP_MFA = "step_up_mfa"
    REAUTHENTICATE = "reauthenticate"
    REVOKE_SESSION = "revoke_session"
    REQUEST_ACCESS = "request_access"
    AUTHENTICATE = "authenticate"  # not signed in: send to sign-in (401), not a 403


def _freeze(value: Any) -> Any:
    """Deep read-only copy of claim-like data (mappings and lists become immutable)."""
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): _freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, set | frozenset):
        return frozenset(value)
    return value


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


def parse_ip(untrusted: str | IPAddress) -> IPAddress:
    """Parse an IP address; IPv4-mapped IPv6 (``::ffff:10.0.0.1``) becomes plain IPv4.

    Raises ``ValueError`` for anything that is not an address.
    """
    ip = untrusted if not isinstance(untrusted, str) else ipaddress.ip_address(untrusted.strip())
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def normalize_path(untrusted: str) -> str:
    """Canonical form of a request path, as policy matching sees it.

    Percent-encoding is decoded once, dot segments and repeated slashes are resolved,
    and the query string is dropped, so ``/docs/../admin`` and ``/%61dmin`` both match
    rules written for ``/admin``.
    """
    path = untrusted.split("?", 1)[0].split("#", 1)[0]
    path = unquote(path).replace("\\", "/")
    if not path.startswith("/"):
        path = "/" + path
    trailing = path.endswith("/") and path != "/"
    normal = posixpath.normpath(path)
    if normal.startswith("//"):
        normal = "/" + normal.lstrip("/")
    return normal + "/" if trailing and normal != "/" else normal


def normalize_host(untrusted: str) -> str:
    """Lower-case host name without port or trailing dot (IPv6 literals keep brackets)."""
    host = untrusted.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


@dataclass(frozen=True, slots=True)
class Principal:
    """A verified caller: a person (from a token or session) or a workload (SPIFFE ID)."""

    id: str
    kind: PrincipalKind = PrincipalKind.USER
    email: str | None = None
    groups: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    auth_methods: frozenset[str] = frozenset()
    mfa: bool = False
    auth_time: float | None = None
    mfa_time: float | None = None
    spiffe_id: str | None = None
    session_id: str | None = None

    def __post_init__(self) -> None:
        _set(self, "groups", frozenset(self.groups))
        _set(self, "roles", frozenset(self.roles))
        _set(self, "auth_methods", frozenset(self.auth_methods))
        _set(self, "claims", _freeze(self.claims))

    @property
    def authenticated(self) -> bool:
        return self.kind is not PrincipalKind.ANONYMOUS

    @classmethod
    def anonymous(cls) -> Principal:
        return cls(id="anonymous", kind=PrincipalKind.ANONYMOUS)


@dataclass(frozen=True, slots=True)
class Device:
    """The posture of the device a request comes from, as last verified."""

    id: str
    managed: bool = False
    disk_encrypted: bool = False
    screen_lock: bool = False
    firewall: bool = False
    os_type: str = "unknown"
    os_version: str = ""

    def __post_init__(self) -> None:
        _set(self, "os_type", self.os_type.strip().lower())


@dataclass(frozen=True, slots=True)
class NetworkContext:
    """Where a request comes from: the resolved client IP and its region (ISO 3166-1)."""

    ip: IPAddress | None = None
    region: str | None = None

    def __post_init__(self) -> None:
        if self.ip is not None:
            _set(self, "ip", parse_ip(self.ip))
        if self.region is not None:
            _set(self, "region", self.region.strip().upper())


@dataclass(frozen=True, slots=True)
class HttpTarget:
    """The HTTP request being authorised (host, method, normalised path, headers)."""

    host: str
    method: str = "GET"
    path: str = "/"
    headers: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    def __post_init__(self) -> None:
        _set(self, "host", sys.intern(normalize_host(self.host)))
        _set(self, "method", self.method.strip().upper())
        _set(self, "path", normalize_path(self.path))
        _set(self, "headers", MappingProxyType({k.lower(): v for k, v in self.headers.items()}))

    @classmethod
    def canonical(
        cls, *, host: str, method: str, path: str, headers: Mapping[str, str] = _EMPTY
    ) -> HttpTarget:
        """A target whose ``path`` is already canonical (the gateway's, computed once in
        ``verity.gateway.target``): kept exactly as given, never decoded again, so the
        policy, the audit event and the upstream see one string. Other callers (request
        files, middleware) use the constructor, which normalises."""
        target = cls(host=host, method=method, headers=headers)
        _set(target, "path", path)
        return target


@dataclass(frozen=True, slots=True)
class Resource:
    """An application resource (Cedar/Casbin style): a type, an id and attributes."""

    type: str | None = None
    id: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    def __post_init__(self) -> None:
        _set(self, "attributes", _freeze(self.attributes))
        if self.type is not None:  # interned: the policy index finds it by identity
            _set(self, "type", sys.intern(self.type))


_NO_RESOURCE = Resource()
_NO_NETWORK = NetworkContext()


@dataclass(frozen=True, slots=True)
class AccessRequest:
    """Every fact the policy engine needs for one decision. ``time`` is UNIX seconds (UTC).

    ``trust_score`` is ``None`` when no score is known: a policy that sets a minimum
    trust then denies. ``grants`` maps the name of each just-in-time grant the principal
    holds to the UNIX time it expires.
    """

    principal: Principal
    time: float
    action: str | None = None
    resource: Resource = _NO_RESOURCE
    http: HttpTarget | None = None
    device: Device | None = None
    network: NetworkContext = _NO_NETWORK
    trust_score: int | None = None
    grants: Mapping[str, float] = field(default_factory=lambda: _EMPTY)
    context: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    def __post_init__(self) -> None:
        _set(self, "grants", MappingProxyType(dict(self.grants)))
        _set(self, "context", _freeze(self.context))


class Reason:
    """Why a decision went the way it did, for the person and for the operator.

    ``code`` is stable and machine-readable (``device.disk_encrypted``); ``message`` is
    the sentence shown to a person; ``hint`` says what would change the outcome.

    The engine may defer writing the sentence: it then keeps a pure function of the
    (immutable) request that renders it on first read, so a deny on the hot path costs no
    string formatting that nobody reads. The value is the same either way; a Reason is
    read-only.
    """

    __slots__ = ("_arg", "_code", "_hint", "_message", "_render", "_rule")

    def __init__(
        self,
        code: str,
        message: str,
        rule: str | None = None,
        hint: str | None = None,
        render: Callable[[Any], str] | None = None,
        arg: Any = None,
    ) -> None:
        """With ``render``, ``message`` is ignored and becomes ``render(arg)`` when first read."""
        self._code = code
        self._message = message
        self._rule = rule
        self._hint = hint
        self._render = render
        self._arg = arg

    @property
    def code(self) -> str:
        return self._code

    @property
    def rule(self) -> str | None:
        return self._rule

    @property
    def hint(self) -> str | None:
        return self._hint

    @property
    def message(self) -> str:
        render = self._render
        if render is not None:
            try:
                self._message = render(self._arg)
            except Exception as exc:  # noqa: BLE001 - a deny stays a deny; only words are lost
                self._message = (
                    f"access denied (the reason could not be rendered: {type(exc).__name__})"
                )
            self._render = self._arg = None
        return self._message

    def _key(self) -> tuple[str, str, str | None, str | None]:
        return self._code, self.message, self._rule, self._hint

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Reason) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"Reason(code={self._code!r}, message={self.message!r}, "
            f"rule={self._rule!r}, hint={self._hint!r})"
        )


class Obligation(NamedTuple):
    """An action the enforcement point must take with the decision (e.g. step-up MFA)."""

    kind: ObligationKind
    detail: str = ""


class Decision(NamedTuple):
    """The answer to an AccessRequest: effect, deciding rule, reasons, obligations.

    ``rule`` is ``None`` when no rule matched (default deny) or on an internal error.
    ``decision_id`` is unique per decision and is what a denied person quotes to an
    operator; ``policy_version`` is the hash of the policy that decided. (A NamedTuple,
    not a frozen dataclass: it is built on every request and costs a third as much.)
    """

    effect: Effect
    rule: str | None
    decision_id: str
    policy_version: str
    reasons: tuple[Reason, ...] = ()
    obligations: tuple[Obligation, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.effect is Effect.ALLOW

    @property
    def requires_authentication(self) -> bool:
        """A deny that signing in could change: answer 401 / redirect to sign-in."""
        return any(o.kind is ObligationKind.AUTHENTICATE for o in self.obligations)

    @property
    def reason(self) -> str:
        """The primary human-readable reason ("" for a plain allow)."""
        return self.reasons[0].message if self.reasons else ""
