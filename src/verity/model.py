"""Immutable values that flow through Verity: who asks, from what, for what, and the answer.

The enforcement points gather every fact into one `AccessRequest`; the policy engine turns
it into a `Decision`. Both are frozen values, so a decision can be audited, replayed and
explained later. Constructors normalise what they are given (lower-case hosts, IPv4-mapped
IPv6 addresses, upper-case region codes) so that a policy cannot be bypassed by spelling.

Two ways in, one value:

- the constructors (``AccessRequest(...)``, ``Principal(...)``) are for untrusted input:
  they copy, freeze and normalise everything they are given;
- ``X.trusted(...)`` is for callers whose values are already canonical (built by a
  constructor, by ``AccessRequest.from_dict``, or from another request): it stores them
  as given, without copying or normalising again, so building a request costs about as
  much as deciding it. Each ``trusted`` states its preconditions. With ``CHECK_TRUSTED``
  true (environment ``VERITY_CHECK_TRUSTED=1``; the test-suite sets it) every trusted
  value is rebuilt by the checking constructor and a difference raises ``ValueError``,
  so a caller that breaks a precondition fails its tests instead of weakening a check.

``AccessRequest.from_dict`` validates a request as JSON would give it (``verity.request_dict``).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import ipaddress
import os
import posixpath
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple, TypeVar
from urllib.parse import unquote

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_T = TypeVar("_T")
_NONE: frozenset[str] = frozenset()

CHECK_TRUSTED = os.environ.get("VERITY_CHECK_TRUSTED") == "1"
"""Rebuild every ``trusted`` value with the checking constructor and compare (tests)."""


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


_new_object = object.__new__
_SHADOWS: dict[type, type] = {}
"""For each frozen value class, a plain class with the same slots. A ``trusted``
constructor fills a shadow instance with plain attribute stores and then sets its
``__class__`` to the frozen class (CPython allows it: the layouts are identical), which
costs a quarter of ``object.__setattr__`` per field. The result is an ordinary frozen
instance."""


def _shadowed(cls: type[_T]) -> type[_T]:
    slots = cls.__dict__["__slots__"]
    _SHADOWS[cls] = type(f"_{cls.__name__}Shadow", (), {"__slots__": slots})
    return cls


def _verify_trusted(value: Any, rebuilt: Any) -> None:
    """``CHECK_TRUSTED`` mode: a trusted value must equal what the constructor builds."""
    if value != rebuilt:
        raise ValueError(
            f"{type(value).__name__}.trusted() was given non-canonical values: "
            f"{value!r} (canonical: {rebuilt!r})"
        )


def _is_frozen(value: Any) -> bool:
    """Deeply read-only, as ``_freeze`` builds it."""
    if isinstance(value, MappingProxyType):
        return all(isinstance(k, str) and _is_frozen(v) for k, v in value.items())
    if isinstance(value, tuple):
        return all(_is_frozen(v) for v in value)
    return not isinstance(value, Mapping | list | set | bytearray)


def _check_frozen(owner: str, name: str, value: Any) -> None:
    if not (value is _EMPTY or (isinstance(value, MappingProxyType) and _is_frozen(value))):
        raise ValueError(f"{owner}.trusted(): {name} must be a deeply read-only mapping")


def _check_strings(owner: str, name: str, value: Any) -> None:
    if type(value) is not frozenset or not all(type(v) is str for v in value):
        raise ValueError(f"{owner}.trusted(): {name} must be a frozenset of str")


def parse_ip(untrusted: str | IPAddress) -> IPAddress:
    """Parse an IP address; IPv4-mapped IPv6 (``::ffff:10.0.0.1``) becomes plain IPv4.

    Raises ``ValueError`` for anything that is not an address.
    """
    if isinstance(untrusted, str):
        return _parse_ip_text(untrusted)
    if isinstance(untrusted, ipaddress.IPv6Address) and untrusted.ipv4_mapped is not None:
        return untrusted.ipv4_mapped
    return untrusted


@functools.lru_cache(maxsize=4096)
def _parse_ip_text(text: str) -> IPAddress:
    """Addresses are immutable, so the parse of a text is cached (bounded: an attacker
    sending new addresses only evicts entries)."""
    ip = ipaddress.ip_address(text.strip())
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


@_shadowed
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
    def trusted(
        cls,
        id: str,
        kind: PrincipalKind = PrincipalKind.USER,
        email: str | None = None,
        groups: frozenset[str] = _NONE,
        roles: frozenset[str] = _NONE,
        claims: Mapping[str, Any] = _EMPTY,
        auth_methods: frozenset[str] = _NONE,
        mfa: bool = False,
        auth_time: float | None = None,
        mfa_time: float | None = None,
        spiffe_id: str | None = None,
        session_id: str | None = None,
    ) -> Principal:
        """A principal from canonical values, stored as given (see the module docstring).

        Preconditions: ``groups``, ``roles`` and ``auth_methods`` are frozensets of
        ``str``; ``claims`` is deeply read-only (``MappingProxyType`` of frozen values,
        as a constructor or ``from_dict`` built it).
        """
        self: Any = _new_object(_SHADOWS[cls])
        self.id = id
        self.kind = kind
        self.email = email
        self.groups = groups
        self.roles = roles
        self.claims = claims
        self.auth_methods = auth_methods
        self.mfa = mfa
        self.auth_time = auth_time
        self.mfa_time = mfa_time
        self.spiffe_id = spiffe_id
        self.session_id = session_id
        self.__class__ = cls
        if CHECK_TRUSTED:
            for name in ("groups", "roles", "auth_methods"):
                _check_strings("Principal", name, getattr(self, name))
            _check_frozen("Principal", "claims", claims)
            _verify_trusted(self, dataclasses.replace(self))
        return self  # type: ignore[no-any-return]  # a Principal now

    @classmethod
    def anonymous(cls) -> Principal:
        return cls(id="anonymous", kind=PrincipalKind.ANONYMOUS)


@_shadowed
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

    @classmethod
    def trusted(
        cls,
        id: str,
        managed: bool = False,
        disk_encrypted: bool = False,
        screen_lock: bool = False,
        firewall: bool = False,
        os_type: str = "unknown",
        os_version: str = "",
    ) -> Device:
        """A device from canonical values. Precondition: ``os_type`` is stripped and
        lower-case."""
        self: Any = _new_object(_SHADOWS[cls])
        self.id = id
        self.managed = managed
        self.disk_encrypted = disk_encrypted
        self.screen_lock = screen_lock
        self.firewall = firewall
        self.os_type = os_type
        self.os_version = os_version
        self.__class__ = cls
        if CHECK_TRUSTED:
            _verify_trusted(self, dataclasses.replace(self))
        return self  # type: ignore[no-any-return]  # a Device now


@_shadowed
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

    @classmethod
    def trusted(cls, ip: IPAddress | None = None, region: str | None = None) -> NetworkContext:
        """A network context from canonical values. Preconditions: ``ip`` is an address
        object (not text) and not IPv4-mapped IPv6 (``parse_ip`` gives one); ``region``
        is stripped and upper-case."""
        self: Any = _new_object(_SHADOWS[cls])
        self.ip = ip
        self.region = region
        self.__class__ = cls
        if CHECK_TRUSTED:
            if ip is not None and not isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address):
                raise ValueError("NetworkContext.trusted(): ip must be an address object")
            _verify_trusted(self, dataclasses.replace(self))
        return self  # type: ignore[no-any-return]  # a NetworkContext now


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


@_shadowed
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

    @classmethod
    def trusted(
        cls,
        type: str | None = None,
        id: str | None = None,
        attributes: Mapping[str, Any] = _EMPTY,
    ) -> Resource:
        """A resource from canonical values (``type`` is interned here). Precondition:
        ``attributes`` is deeply read-only, as a constructor or ``from_dict`` built it."""
        self: Any = _new_object(_SHADOWS[cls])
        self.type = None if type is None else sys.intern(type)
        self.id = id
        self.attributes = attributes
        self.__class__ = cls
        if CHECK_TRUSTED:
            _check_frozen("Resource", "attributes", attributes)
            _verify_trusted(self, dataclasses.replace(self))
        return self  # type: ignore[no-any-return]  # a Resource now


_NO_RESOURCE = Resource()
_NO_NETWORK = NetworkContext()


@_shadowed
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

    @classmethod
    def trusted(
        cls,
        principal: Principal,
        time: float,
        action: str | None = None,
        resource: Resource = _NO_RESOURCE,
        http: HttpTarget | None = None,
        device: Device | None = None,
        network: NetworkContext = _NO_NETWORK,
        trust_score: int | None = None,
        grants: Mapping[str, float] = _EMPTY,
        context: Mapping[str, Any] = _EMPTY,
    ) -> AccessRequest:
        """A request from canonical parts, stored as given (see the module docstring).

        Preconditions: every part was built by its constructor or its ``trusted``;
        ``grants`` and ``context`` are read-only mappings (``MappingProxyType``; the
        values of ``context`` deeply frozen) that no one else can change.
        """
        self: Any = _new_object(_SHADOWS[cls])
        self.principal = principal
        self.time = time
        self.action = action
        self.resource = resource
        self.http = http
        self.device = device
        self.network = network
        self.trust_score = trust_score
        self.grants = grants
        self.context = context
        self.__class__ = cls
        if CHECK_TRUSTED:
            _check_frozen("AccessRequest", "grants", grants)
            _check_frozen("AccessRequest", "context", context)
            _verify_trusted(self, dataclasses.replace(self))
        return self  # type: ignore[no-any-return]  # a AccessRequest now

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<request>") -> AccessRequest:
        """Validate a request as JSON gives it (the keys of a request file; see
        ``verity.request_dict``). Raises ``RequestError`` naming every problem."""
        return _request_from_dict(data, source=source)


class Remedy(NamedTuple):
    """One change in the person's position that a deny's reason asks for.

    ``code`` names the criterion (``principal.roles``, ``principal.groups``, ``auth.mfa``,
    ``jit.grant``, ``device.disk_encrypted``...); ``values`` what it accepts (any one of
    them: the roles, groups or grant name), empty when there is nothing to choose.
    """

    code: str
    values: tuple[str, ...] = ()


class Reason:
    """Why a decision went the way it did, for the person and for the operator.

    ``code`` is stable and machine-readable (``device.disk_encrypted``); ``message`` is
    the operator's account (the engine's words: expected and observed values); ``summary``
    is the sentence for the person denied (``message`` when none was written);
    ``hint`` says what would change the outcome, and ``remedies`` the changes themselves
    (empty when no change in the person's position would).

    The engine may defer writing the sentence: it then keeps a pure function of the
    (immutable) request that renders it on first read, so a deny on the hot path costs no
    string formatting that nobody reads. The value is the same either way; a Reason is
    read-only.
    """

    __slots__ = ("_arg", "_code", "_hint", "_message", "_remedies", "_render", "_rule", "_summary")

    def __init__(
        self,
        code: str,
        message: str,
        rule: str | None = None,
        hint: str | None = None,
        render: Callable[[Any], str] | None = None,
        arg: Any = None,
        *,
        summary: str | Callable[[], str] | None = None,
        remedies: tuple[Remedy, ...] = (),
    ) -> None:
        """With ``render``, ``message`` is ignored and becomes ``render(arg)`` when first
        read; a callable ``summary`` is likewise called once, when first read."""
        self._code = code
        self._message = message
        self._rule = rule
        self._hint = hint
        self._render = render
        self._arg = arg
        self._summary = summary
        self._remedies = remedies

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

    @property
    def summary(self) -> str:
        """The sentence for the person denied (``message`` when none was written)."""
        summary = self._summary
        if summary is None:
            return self.message
        if not isinstance(summary, str):
            try:
                summary = summary()
            except Exception as exc:  # noqa: BLE001 - a deny stays a deny; only words are lost
                summary = f"Access denied (the reason could not be rendered: {type(exc).__name__})."
            self._summary = summary
        return summary

    @property
    def remedies(self) -> tuple[Remedy, ...]:
        return self._remedies

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


# Last: verity.request_dict builds on every name above (a cycle Python resolves here).
from .request_dict import request_from_dict as _request_from_dict  # noqa: E402
