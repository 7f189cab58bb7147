"""Checks about what is asked for: HTTP host/method/path/headers, application resource
type, attributes and action, and relations between request parts."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from typing import Any

from ..model import AccessRequest
from . import ast, values
from .attrs import MISSING, getter, strict_equal
from .checks import Check, Test, fmt_set


def host_matcher(patterns: tuple[str, ...]) -> Test:
    """Exact hosts, plus ``*.example.com`` for any sub-domain of example.com."""
    exact = frozenset(p for p in patterns if not p.startswith("*."))
    suffixes = tuple(p[1:] for p in patterns if p.startswith("*."))
    if not suffixes:
        return lambda r: r.http is not None and r.http.host in exact
    return lambda r: (
        r.http is not None
        and (r.http.host in exact or any(r.http.host.endswith(s) for s in suffixes))
    )


def path_matcher(patterns: tuple[str, ...]) -> Test:
    regex = re.compile("|".join(f"(?:{values.glob_regex(p).pattern})" for p in patterns))
    return lambda r: r.http is not None and regex.match(r.http.path) is not None


class ActionsCheck(Check):
    code = "request.action"
    hint = "request access"
    node: ast.Actions

    def build(self) -> Test:
        actions = self.node.values
        return lambda r: r.action in actions

    def inline(self, name: str) -> tuple[str, Mapping[str, object]]:
        return f"r.action in {name}", {name: self.node.values}

    def expected(self) -> str:
        return f"action {' or '.join(sorted(self.node.values))}"

    def observed(self, request: AccessRequest) -> str:
        return request.action or "(none)"


class MethodsCheck(Check):
    code = "http.method"
    node: ast.Methods

    def build(self) -> Test:
        methods = self.node.values
        return lambda r: r.http is not None and r.http.method in methods

    def expected(self) -> str:
        return f"HTTP method {fmt_set(self.node.values)}"

    def observed(self, request: AccessRequest) -> str:
        return request.http.method if request.http else "(not HTTP)"


class PathsCheck(Check):
    code = "http.path"
    node: ast.Paths

    def build(self) -> Test:
        return path_matcher(self.node.patterns)

    def expected(self) -> str:
        return f"path {' or '.join(self.node.patterns)}"

    def observed(self, request: AccessRequest) -> str:
        return request.http.path if request.http else "(not HTTP)"


class HostsCheck(Check):
    code = "http.host"
    node: ast.Hosts

    def build(self) -> Test:
        return host_matcher(self.node.patterns)

    def expected(self) -> str:
        return f"host {' or '.join(self.node.patterns)}"

    def observed(self, request: AccessRequest) -> str:
        return request.http.host if request.http else "(not HTTP)"


class HeaderCheck(Check):
    code = "http.header"
    node: ast.Header

    def build(self) -> Test:
        regex = re.compile("|".join(fnmatch.translate(p) for p in self.node.patterns))
        name = self.node.name

        def test(r: AccessRequest) -> bool:
            value = None if r.http is None else r.http.headers.get(name)
            return value is not None and regex.match(value) is not None

        return test

    def expected(self) -> str:
        return f"header {self.node.name} matching {' or '.join(self.node.patterns)}"

    def observed(self, request: AccessRequest) -> str:
        value = request.http.headers.get(self.node.name) if request.http else None
        return "(absent)" if value is None else repr(value[:80])


class ResourceTypesCheck(Check):
    code = "resource.type"
    node: ast.ResourceTypes

    def build(self) -> Test:
        types = self.node.values
        return lambda r: r.resource.type in types

    def inline(self, name: str) -> tuple[str, Mapping[str, object]]:
        return f"r.resource.type in {name}", {name: self.node.values}

    def expected(self) -> str:
        return f"resource type {' or '.join(sorted(self.node.values))}"

    def observed(self, request: AccessRequest) -> str:
        return request.resource.type or "(none)"


class ResourceAttrCheck(Check):
    code = "resource.attribute"
    node: ast.ResourceAttr

    def build(self) -> Test:
        read = getter(("resource", self.node.name))
        accepted = self.node.values

        def test(r: AccessRequest) -> bool:
            value = read(r)
            return value is not MISSING and any(strict_equal(value, want) for want in accepted)

        return test

    def expected(self) -> str:
        return f"resource {self.node.name} = {' or '.join(map(str, self.node.values))}"

    def observed(self, request: AccessRequest) -> str:
        value = getter(("resource", self.node.name))(request)
        return "(absent)" if value is MISSING else str(value)

    def message(self, request: AccessRequest) -> str:
        return f"requires {self.expected()}"  # the resource's own value is not for the requester


def _relate(op: str, left: Any, right: Any) -> bool:
    if left is MISSING or right is MISSING:
        return False
    if op == "==":
        return strict_equal(left, right)
    if op == "!=":
        return not strict_equal(left, right)
    container, item = (right, left) if op == "in" else (left, right)
    if isinstance(container, str):
        return isinstance(item, str) and item in container
    if isinstance(container, tuple | list | frozenset | set):
        return any(strict_equal(item, member) for member in container)
    if isinstance(container, Mapping):
        return item in container
    return False


class RelationCheck(Check):
    code = "relation"
    node: ast.Relation

    def build(self) -> Test:
        left, right, op = getter(self.node.left), getter(self.node.right), self.node.op
        if op == "==":

            def equal(r: AccessRequest) -> bool:
                a, b = left(r), right(r)
                return a is not MISSING and b is not MISSING and strict_equal(a, b)

            return equal
        return lambda r: _relate(op, left(r), right(r))

    def expected(self) -> str:
        return self.node.text

    def observed(self, request: AccessRequest) -> str:
        left, right = getter(self.node.left)(request), getter(self.node.right)(request)
        return f"{'.'.join(self.node.left)}={left!r}, {'.'.join(self.node.right)}={right!r}"

    def message(self, request: AccessRequest) -> str:
        # No observed values: they describe the resource (its owner, its team), which the
        # person denied may not see. ``explain`` shows them to the operator.
        return f"requires {self.node.text}"
