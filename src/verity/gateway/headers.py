"""Header hygiene (sans-I/O): what a client sent, cleaned before anything goes upstream.

- Identity headers a client could spoof (``X-Verity-*``, ``X-Forwarded-User``,
  ``Remote-User``, ...) are dropped, in any case and with ``_`` for ``-`` (some servers
  map ``X_Verity_User`` and ``X-Verity-User`` to the same variable).
- Hop-by-hop headers (RFC 9110 7.6.1) and every header named by ``Connection`` are
  dropped; so are the client's forwarding headers, which the gateway sets itself.
- The client IP comes from ``X-Forwarded-For`` only through trusted proxies: walking
  from the right, each address is believed only while the hop that reported it is inside
  ``trusted_proxies``, and at most ``trusted_hops`` entries deep (Werkzeug ProxyFix).

Raw headers are ASGI pairs: lower-case ``bytes`` names, ``bytes`` values.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..model import IPAddress, parse_ip
from .errors import BadRequestError

RawHeaders = Sequence[tuple[bytes, bytes]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

IDENTITY_HEADERS = frozenset(
    {
        "x-forwarded-user", "x-forwarded-email", "x-forwarded-groups",
        "x-forwarded-preferred-username", "x-forwarded-access-token", "x-forwarded-client-cert",
        "remote-user", "remote-email", "remote-groups", "remote-name", "x-remote-user",
        "x-user", "x-email", "x-groups", "x-authenticated-user", "x-authenticated-userid",
        "x-webauth-user", "x-client-cert", "x-client-dn", "x-client-verify", "ssl-client-cert",
        "x-goog-authenticated-user-email", "x-goog-authenticated-user-id",
        "x-goog-iap-jwt-assertion", "x-amzn-oidc-data", "x-amzn-oidc-identity",
        "x-amzn-oidc-accesstoken", "cf-access-jwt-assertion",
        "cf-access-authenticated-user-email",
    }
)  # fmt: skip
IDENTITY_PREFIXES = (
    "x-verity-", "x-auth-request-", "x-pomerium-", "x-ms-client-principal", "x-ssl-client-",
)  # fmt: skip
# What deploy/ examples (nginx, Traefik) must clear or overwrite before an upstream sees
# the request: every identity header above, the known names under each prefix, and the
# standard Forwarded header. tests/deploy checks each example against this one set.
UPSTREAM_CLEARED_HEADERS = IDENTITY_HEADERS | frozenset(
    {
        "x-verity-user", "x-verity-email", "x-verity-groups", "x-verity-roles",
        "x-verity-assertion", "x-verity-decision-id", "x-verity-device-id",
        "x-verity-request",
        "x-auth-request-user", "x-auth-request-email", "x-auth-request-groups",
        "x-auth-request-preferred-username", "x-auth-request-access-token",
        "x-pomerium-jwt-assertion", "x-pomerium-claim-email", "x-pomerium-claim-groups",
        "x-ms-client-principal", "x-ms-client-principal-name", "x-ms-client-principal-id",
        "x-ms-client-principal-idp", "x-ssl-client-cert", "x-ssl-client-dn",
        "x-ssl-client-verify", "forwarded",
    }
)  # fmt: skip
HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
        "upgrade", "proxy-authorization", "proxy-authenticate",
    }
)  # fmt: skip
FORWARDING = frozenset(
    {"forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
     "x-forwarded-port", "x-forwarded-prefix", "x-real-ip", "x-original-uri",
     "x-original-method", "x-original-url", "x-forwarded-method", "x-forwarded-uri"}
)  # fmt: skip
# Every X-Forwarded-* and X-Original-* (X-Forwarded-Ssl and -Scheme set Rack's scheme).
_FORWARDING_PREFIXES = ("x-forwarded-", "x-original-")
# Never forwarded as-is: Host is set per route, Expect is answered by the server.
_REPLACED = frozenset({"host", "expect"})
# Kept from the policy's view of headers: credentials.
SECRET_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})

_HOST = re.compile(
    r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.?"
    r"|\[[0-9a-f:.]{2,45}\])(?::[0-9]{1,5})?$"
)
_METHOD = re.compile(r"^[A-Z]{1,20}$")


def is_identity_header(name: str) -> bool:
    """True for a header that asserts identity (``X-Verity-User``, ``Remote_User``...)."""
    key = name.strip().lower().replace("_", "-")
    return key in IDENTITY_HEADERS or key.startswith(IDENTITY_PREFIXES)


def connection_tokens(raw: RawHeaders) -> frozenset[str]:
    """The header names listed in every ``Connection`` header (lower-case)."""
    named: set[str] = set()
    for name, value in raw:
        if name.lower() == b"connection":
            named.update(t.strip().lower() for t in value.decode("latin-1").split(","))
    named.discard("")
    return frozenset(named)


def without_cookies(value: bytes, names: frozenset[str]) -> bytes:
    """A ``Cookie`` header value without the cookies called ``names`` (b"" if none left)."""
    kept = [
        part
        for part in (p.strip() for p in value.decode("latin-1").split(";"))
        if part and part.split("=", 1)[0].strip() not in names
    ]
    return "; ".join(kept).encode("latin-1")


_DROPPED, _KEPT, _AUTHORIZATION = 0, 1, 2
_NAMES: dict[bytes, tuple[int, bool, bytes, str]] = {}  # raw name -> what to do with it
_MAX_NAMES = 1024  # a client may invent names: the cache starts over when it is full


def _name(raw_name: bytes) -> tuple[int, bool, bytes, str]:
    """How a header name is treated: dropped/kept/authorization, hop-by-hop, lower-case."""
    known = _NAMES.get(raw_name)
    if known is None:
        key = raw_name.decode("latin-1").lower()
        hop = key in HOP_BY_HOP
        read_as = key.replace("_", "-")  # how CGI, WSGI and PHP servers read the name
        if (
            hop
            or read_as in HOP_BY_HOP
            or read_as in FORWARDING
            or read_as.startswith(_FORWARDING_PREFIXES)
            or read_as in _REPLACED
            or is_identity_header(key)
        ):
            kind = _DROPPED
        else:
            kind = _AUTHORIZATION if key == "authorization" else _KEPT
        known = (kind, hop, raw_name.lower(), key)
        if len(_NAMES) >= _MAX_NAMES:
            _NAMES.clear()
        _NAMES[raw_name] = known
    return known


def upstream_headers(
    raw: RawHeaders,
    *,
    forward_authorization: bool = False,
    hidden_cookies: frozenset[str] = frozenset(),
) -> list[tuple[bytes, bytes]]:
    """The client's headers minus identity, hop-by-hop, forwarding and Host headers.

    ``Authorization`` is dropped unless ``forward_authorization``; the cookies named in
    ``hidden_cookies`` (the gateway's own session cookies) never reach an upstream. The
    gateway adds its own forwarding and identity headers afterwards.
    """
    dropped = connection_tokens(raw)
    kept: list[tuple[bytes, bytes]] = []
    for name, value in raw:
        kind, _, lower, key = _name(name)
        if (
            kind == _DROPPED
            or (kind == _AUTHORIZATION and not forward_authorization)
            or (dropped and key in dropped)
        ):
            continue
        if hidden_cookies and key == "cookie":
            value = without_cookies(value, hidden_cookies)  # noqa: PLW2901
            if not value:
                continue
        kept.append((lower, value))
    return kept


def response_headers(raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """An upstream response's headers minus hop-by-hop ones and those ``Connection`` names."""
    pairs = list(raw)
    dropped = connection_tokens(pairs)
    if dropped:
        return [(n, v) for n, v in pairs if not _name(n)[1] and _name(n)[3] not in dropped]
    return [(name, value) for name, value in pairs if not _name(name)[1]]


def policy_headers(raw: RawHeaders) -> dict[str, str]:
    """Headers the policy may match on: cleaned, credentials removed, repeats joined."""
    seen: dict[str, str] = {}
    for name, value in upstream_headers(raw):
        key = name.decode("latin-1")
        if key in SECRET_HEADERS:
            continue
        text = value.decode("latin-1")
        seen[key] = f"{seen[key]}, {text}" if key in seen else text
    return seen


def header_values(raw: RawHeaders, name: bytes) -> list[str]:
    """Every value of header ``name`` (lower-case bytes), in order."""
    return [value.decode("latin-1") for key, value in raw if key == name]


def single_header(raw: RawHeaders, name: bytes) -> str | None:
    """The one value of ``name``; ``None`` if absent; 400 if repeated."""
    values = header_values(raw, name)
    if len(values) > 1:
        raise BadRequestError(400, f"Repeated {name.decode()} header.")
    return values[0] if values else None


def check_limits(raw: RawHeaders, *, max_bytes: int, max_count: int) -> None:
    """431 when the request has too many headers or too many header bytes."""
    if len(raw) > max_count:
        raise BadRequestError(431, "Too many request headers.")
    if sum(len(name) + len(value) + 4 for name, value in raw) > max_bytes:
        raise BadRequestError(431, "Request headers are too large.")


def check_framing(raw: RawHeaders) -> None:
    """400 for a request with both ``Content-Length`` and ``Transfer-Encoding``.

    httptools refuses it; h11 reads the body as chunked, and the gateway would then
    forward the client's ``Content-Length`` with a body of another length, leaving the
    framing of a pooled upstream connection to the client (request smuggling, RFC 9112
    6.1: an intermediary must not forward both). Refused the same under either parser."""
    length = chunked = False
    for name, _ in raw:
        if name == b"content-length":
            length = True
        elif name == b"transfer-encoding":
            chunked = True
    if length and chunked:
        raise BadRequestError(400, "Content-Length and Transfer-Encoding together.")


def valid_host(untrusted: str | None) -> str:
    """The Host value if it is a well-formed host[:port]; 400 otherwise."""
    host = (untrusted or "").strip().lower()
    if not host or not _HOST.match(host):
        raise BadRequestError(400, "Missing or malformed Host header.")
    return host


def valid_method(untrusted: str) -> str:
    """An upper-case HTTP method token; 400 for anything else."""
    method = untrusted.strip().upper()
    if not _METHOD.match(method):
        raise BadRequestError(400, "Malformed request method.")
    return method


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """Networks from configured CIDR strings."""
    return tuple(ipaddress.ip_network(cidr, strict=True) for cidr in cidrs)


@dataclass(frozen=True, slots=True)
class ClientAddress:
    """The resolved client IP, the socket peer, and whether the peer is a trusted proxy."""

    ip: IPAddress | None
    peer: IPAddress | None
    peer_trusted: bool
    chain: tuple[str, ...] = ()  # verified X-Forwarded-For chain to send upstream


def _address(untrusted: str) -> IPAddress | None:
    text = untrusted.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        return parse_ip(text)
    except ValueError:
        return None


def _within(ip: IPAddress, networks: Sequence[Network]) -> bool:
    return any(ip.version == net.version and ip in net for net in networks)


class ClientResolver:
    """Resolves the client IP from the socket peer and trusted ``X-Forwarded-For`` hops.

    Both are pure functions of their inputs, so each is computed once and kept: the
    socket peer's own address per peer, and the resolved address per (trusted peer,
    ``X-Forwarded-For`` values) when those values are short (a proxy in front of the
    gateway sends the same few ones over and over). Each cache holds at most 4,096
    entries and is emptied when full."""

    _CACHED_PEERS = 4096
    _CACHED_FORWARDED_BYTES = 256  # longer X-Forwarded-For values are resolved each time

    def __init__(self, trusted_proxies: Iterable[str], trusted_hops: int) -> None:
        self.networks = parse_networks(trusted_proxies)
        self.hops = trusted_hops
        self._peers: dict[str | None, ClientAddress] = {}  # peer host -> its own address
        self._forwarded: dict[tuple[str, tuple[str, ...]], ClientAddress] = {}

    def is_trusted(self, peer: IPAddress | None) -> bool:
        """True when ``peer`` is a configured trusted proxy."""
        return peer is not None and _within(peer, self.networks)

    def _peer(self, peer_host: str | None) -> ClientAddress:
        """The socket peer as a client address (parsed and checked once per peer)."""
        known = self._peers.get(peer_host)
        if known is None:
            peer = _address(peer_host) if peer_host else None
            known = ClientAddress(peer, peer, self.is_trusted(peer), (str(peer),) if peer else ())
            if len(self._peers) >= self._CACHED_PEERS:
                self._peers.clear()
            self._peers[peer_host] = known
        return known

    def resolve(self, peer_host: str | None, raw: RawHeaders) -> ClientAddress:
        """The client address for a request from ``peer_host`` with headers ``raw``."""
        direct = self._peer(peer_host)
        peer = direct.peer
        if not direct.peer_trusted or self.hops == 0 or peer is None:
            return direct
        forwarded = tuple(header_values(raw, b"x-forwarded-for"))
        if not forwarded or peer_host is None:
            return direct
        if sum(len(value) for value in forwarded) > self._CACHED_FORWARDED_BYTES:
            return self._through(direct, peer, forwarded)
        key = (peer_host, forwarded)
        known = self._forwarded.get(key)
        if known is None:
            known = self._through(direct, peer, forwarded)
            if len(self._forwarded) >= self._CACHED_PEERS:
                self._forwarded.clear()
            self._forwarded[key] = known
        return known

    def _through(
        self, direct: ClientAddress, peer: IPAddress, forwarded: tuple[str, ...]
    ) -> ClientAddress:
        """The client behind trusted ``peer``, walking ``X-Forwarded-For`` from the right."""
        entries = [item for value in forwarded for item in value.split(",")]
        if not entries:
            return direct
        client: IPAddress = peer
        chain = [str(peer)]
        for depth, entry in enumerate(reversed(entries), start=1):
            address = _address(entry)
            if address is None:
                break
            client = address
            chain.insert(0, str(address))
            if depth >= self.hops or not _within(address, self.networks):
                break
        return ClientAddress(client, peer, True, tuple(chain))
