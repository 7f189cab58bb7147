"""Checks about who is asking and how they signed in: users, services, groups, roles,
claims, MFA, authentication methods and age."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..model import AccessRequest, ObligationKind, PrincipalKind
from . import ast, values
from .attrs import MISSING, dig, strict_equal
from .checks import Check, Test, fmt_set

ANONYMOUS = PrincipalKind.ANONYMOUS


def _who(request: AccessRequest) -> str:
    p = request.principal
    return "not signed in" if p.kind is ANONYMOUS else p.email or p.id


class AuthenticatedCheck(Check):
    code = "principal.authenticated"
    hint = "sign in"
    node: ast.Authenticated

    def build(self) -> Test:
        want = self.node.value
        return lambda r: (r.principal.kind is not ANONYMOUS) is want

    def inline(self, name: str) -> tuple[str, Mapping[str, object]]:
        op = "is not" if self.node.value else "is"
        return f"p.kind {op} {name}", {name: ANONYMOUS}

    def expected(self) -> str:
        return "a signed-in caller" if self.node.value else "an anonymous caller"

    def observed(self, request: AccessRequest) -> str:
        return _who(request)


class _MemberCheck(Check):
    """Principal attribute set intersects the configured values."""

    attribute: str = ""
    noun: str = ""
    node: ast.Groups | ast.Roles | ast.AuthMethods

    def build(self) -> Test:
        wanted, attribute = self.node.values, self.attribute
        return lambda r: not wanted.isdisjoint(getattr(r.principal, attribute))

    def inline(self, name: str) -> tuple[str, Mapping[str, object]]:
        if len(self.node.values) == 1:
            (only,) = self.node.values
            return f"{name} in p.{self.attribute}", {name: only}
        return f"not {name}.isdisjoint(p.{self.attribute})", {name: self.node.values}

    def expected(self) -> str:
        return f"{self.noun} {' or '.join(sorted(self.node.values))}"

    def observed(self, request: AccessRequest) -> str:
        return fmt_set(getattr(request.principal, self.attribute))

    def message(self, request: AccessRequest) -> str:
        return f"requires {self.expected()} (you have: {self.observed(request)})"


class GroupsCheck(_MemberCheck):
    code, attribute, noun, hint = "principal.groups", "groups", "group", "request access"


class RolesCheck(_MemberCheck):
    code, attribute, noun, hint = "principal.roles", "roles", "role", "request access"


class AuthMethodsCheck(_MemberCheck):
    code, attribute, noun = "auth.methods", "auth_methods", "sign-in method"
    hint = "sign in again with an accepted method"
    obligation = ObligationKind.STEP_UP_MFA


class UsersCheck(Check):
    code = "principal.user"
    hint = "request access"
    node: ast.Users

    def build(self) -> Test:
        users = self.node.values
        return lambda r: r.principal.id in users or r.principal.email in users

    def inline(self, name: str) -> tuple[str, Mapping[str, object]]:
        return f"(p.id in {name} or p.email in {name})", {name: self.node.values}

    def expected(self) -> str:
        return f"user {' or '.join(sorted(self.node.values))}"

    def observed(self, request: AccessRequest) -> str:
        return _who(request)

    def message(self, request: AccessRequest) -> str:
        return f"{_who(request)} is not among the users this rule allows"


class ServicesCheck(Check):
    code = "principal.service"
    node: ast.Services

    def build(self) -> Test:
        regex = re.compile(
            "|".join(f"(?:{values.glob_regex(p).pattern})" for p in self.node.patterns)
        )
        return lambda r: (
            r.principal.spiffe_id is not None and regex.match(r.principal.spiffe_id) is not None
        )

    def expected(self) -> str:
        return f"service identity {' or '.join(self.node.patterns)}"

    def observed(self, request: AccessRequest) -> str:
        return request.principal.spiffe_id or "(no service identity)"


class ClaimCheck(Check):
    code = "principal.claim"
    node: ast.Claim

    def build(self) -> Test:
        keys, accepted = self.node.claim, self.node.values

        def test(r: AccessRequest) -> bool:
            value = dig(r.principal.claims, keys)
            if value is MISSING:
                return False
            items: tuple[Any, ...] = value if isinstance(value, tuple) else (value,)
            return any(strict_equal(item, want) for item in items for want in accepted)

        return test

    def expected(self) -> str:
        name = values.claim_path_text(self.node.claim)
        return f"claim {name} = {' or '.join(map(str, self.node.values))}"

    def observed(self, request: AccessRequest) -> str:
        value = dig(request.principal.claims, self.node.claim)
        return "(absent)" if value is MISSING else str(value)


class MfaCheck(Check):
    code = "auth.mfa"
    node: ast.Mfa

    def build(self) -> Test:
        want = self.node.required
        if want:
            self.hint = "sign in again with your second factor"
            self.obligation = ObligationKind.STEP_UP_MFA
        return lambda r: r.principal.mfa is want

    def inline(self, name: str) -> tuple[str, Mapping[str, object]]:
        return f"p.mfa is {self.node.required}", {}

    def expected(self) -> str:
        return "multi-factor sign-in" if self.node.required else "a sign-in without MFA"

    def observed(self, request: AccessRequest) -> str:
        return "MFA" if request.principal.mfa else "no MFA"

    def message(self, request: AccessRequest) -> str:
        if self.node.required:
            return "multi-factor authentication is required"
        return "this rule applies only to sign-ins without MFA"


class MaxAgeCheck(Check):
    node: ast.MaxAge
    skew = 60

    def _stamp(self, request: AccessRequest) -> float | None:
        p = request.principal
        return p.mfa_time if self.node.what == "mfa" else p.auth_time

    def build(self) -> Test:
        mfa = self.node.what == "mfa"
        self.code = f"auth.{self.node.what}_age"
        self.obligation = ObligationKind.STEP_UP_MFA if mfa else ObligationKind.REAUTHENTICATE
        self.hint = "sign in again" + (" with your second factor" if mfa else "")
        limit, skew, stamp = self.node.seconds, self.skew, self._stamp

        def test(r: AccessRequest) -> bool:
            t = stamp(r)
            return t is not None and -skew <= r.time - t <= limit

        return test

    def expected(self) -> str:
        what = "MFA" if self.node.what == "mfa" else "sign-in"
        return f"{what} within the last {_span(self.node.seconds)}"

    def observed(self, request: AccessRequest) -> str:
        t = self._stamp(request)
        return "never" if t is None else f"{_span(int(request.time - t))} ago"

    def message(self, request: AccessRequest) -> str:
        return f"requires a {self.expected()} (last: {self.observed(request)})"


def _span(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if abs(seconds) >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
