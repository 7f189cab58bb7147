"""The parsed form of a policy: plain frozen values, no behaviour.

The loader turns YAML into these nodes (reporting every problem with its key path); the
compiler turns them into fast checks; the test-suite's reference interpreter evaluates
them directly. Every node keeps ``path``, the key path it came from, for explanations.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import Problem
from ..model import Effect

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEVICE_FLAGS = ("managed", "disk_encrypted", "screen_lock", "firewall")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class Node:
    path: str


@dataclass(frozen=True, slots=True)
class Authenticated(Node):
    value: bool


@dataclass(frozen=True, slots=True)
class Users(Node):
    values: frozenset[str]


@dataclass(frozen=True, slots=True)
class Groups(Node):
    values: frozenset[str]


@dataclass(frozen=True, slots=True)
class Roles(Node):
    values: frozenset[str]


@dataclass(frozen=True, slots=True)
class Services(Node):
    """SPIFFE ID patterns: ``*`` matches one path segment, ``**`` any number."""

    patterns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Claim(Node):
    """A claim at a path (one name per nesting level, taken literally) equals one of
    ``values`` (or, for list claims, contains one)."""

    claim: tuple[str, ...]
    values: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Mfa(Node):
    required: bool


@dataclass(frozen=True, slots=True)
class AuthMethods(Node):
    values: frozenset[str]


@dataclass(frozen=True, slots=True)
class MaxAge(Node):
    """Authentication (``what="auth"``) or MFA (``what="mfa"``) no older than ``seconds``."""

    what: str
    seconds: int


@dataclass(frozen=True, slots=True)
class DeviceFlag(Node):
    flag: str
    value: bool


@dataclass(frozen=True, slots=True)
class DeviceOs(Node):
    types: frozenset[str]


@dataclass(frozen=True, slots=True)
class DeviceMinOs(Node):
    """Minimum OS version per OS type; a device of an unlisted OS type fails."""

    minimums: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class IpRanges(Node):
    networks: tuple[Network, ...]


@dataclass(frozen=True, slots=True)
class Regions(Node):
    values: frozenset[str]


@dataclass(frozen=True, slots=True)
class TimeWindow(Node):
    """Local ``days`` (0 = Monday) and minutes ``[start, end)``; end < start wraps midnight."""

    days: frozenset[int]
    start: int
    end: int
    tz: str
    text: str


@dataclass(frozen=True, slots=True)
class MinTrust(Node):
    value: int


@dataclass(frozen=True, slots=True)
class JitGrant(Node):
    grant: str


@dataclass(frozen=True, slots=True)
class Actions(Node):
    values: frozenset[str]


@dataclass(frozen=True, slots=True)
class Methods(Node):
    values: frozenset[str]


@dataclass(frozen=True, slots=True)
class Paths(Node):
    """Path globs: ``*`` matches within one segment, ``**`` across segments."""

    patterns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Hosts(Node):
    """Host names; ``*.example.com`` matches any sub-domain (not the apex)."""

    patterns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Header(Node):
    name: str
    patterns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ResourceTypes(Node):
    values: frozenset[str]


@dataclass(frozen=True, slots=True)
class ResourceAttr(Node):
    name: str
    values: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Relation(Node):
    """``left op right`` between two request paths (``resource.owner == principal.id``)."""

    left: tuple[str, ...]
    op: str
    right: tuple[str, ...]
    text: str


@dataclass(frozen=True, slots=True)
class Cel(Node):
    expression: str


@dataclass(frozen=True, slots=True)
class LevelRef(Node):
    name: str


@dataclass(frozen=True, slots=True)
class All(Node):
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class AnyOf(Node):
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not(Node):
    child: Node


@dataclass(frozen=True, slots=True)
class Target:
    """Which requests a rule is about; an absent field matches anything."""

    path: str
    hosts: tuple[str, ...] = ()
    methods: frozenset[str] = frozenset()
    paths: tuple[str, ...] = ()
    types: frozenset[str] = frozenset()
    actions: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Rule:
    index: int
    name: str
    effect: Effect
    targets: tuple[Target, ...]
    condition: All
    path: str
    description: str = ""
    message: str | None = None
    hint: str | None = None


@dataclass(frozen=True, slots=True)
class TableRow:
    """One row of a permission table: ``role`` may do ``actions`` on resources of ``type``.
    ``where`` locates it (``grants.csv:12`` or ``rules[3].table.rows[0]``)."""

    role: str
    type: str
    actions: frozenset[str]
    where: str


@dataclass(frozen=True, slots=True)
class PermissionTable:
    """A permission table (RBAC as data): an allow construct in policy order.

    It sits before the rule of index ``position`` (the number of rules above it). A row
    grants when the caller has its role, the resource has its type, the action is one of
    its actions, and ``condition`` plus the role's ``role_conditions`` entry all hold.
    ``files`` are the data files it was read from (their content is part of the
    policy version)."""

    name: str
    position: int
    path: str
    rows: tuple[TableRow, ...]
    condition: All
    role_conditions: Mapping[str, All]
    files: tuple[str, ...] = ()
    description: str = ""
    message: str | None = None
    hint: str | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """A whole validated policy. ``version`` is the SHA-256 of its canonical content
    (with the content of every table file); ``warnings`` are what loaded but is probably
    not what the author meant. ``tables`` are its permission tables, each placed among
    ``rules`` by its ``position``."""

    rules: tuple[Rule, ...]
    access_levels: Mapping[str, All] = field(default_factory=dict)
    source: str = "<memory>"
    version: str = ""
    warnings: tuple[Problem, ...] = ()
    tables: tuple[PermissionTable, ...] = ()
