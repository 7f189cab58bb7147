"""Which reason explains a default deny, and what it tells the person denied.

When no allow rule matched, the reason must be one that, satisfied, would change the
answer. A criterion is *fixable* when the person can change it: a role, group or claim an
administrator can give, a second factor, a fresh sign-in, a device setting, the network,
the hour, a just-in-time grant. Criteria about the request itself (its path, method,
host, headers, resource, relations), about *which* user or service asks, negations and
CEL conditions are not. An allow rule that covers the request explains the deny when every
criterion it fails is fixable; its reason names all of them (satisfying only the first
would not be enough). When no rule covering the request qualifies, the reason says
plainly that no rule grants this to anyone in the person's position.

Each reason also gets a sentence for a person (``Reason.summary``) and its
machine-readable remedies (``Reason.remedies``); the engine words stay in
``Reason.message`` for operators (``verity policy explain``, the audit log). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..errors import CelError
from ..model import AccessRequest, Remedy
from .checks import Check, fmt_set
from .combinators import AllCheck, AnyCheck, LevelCheck
from .compiler import NOT_APPLICABLE, PASSED, CompiledRule
from .leaves_context import (
    DeviceFlagCheck,
    DeviceMinOsCheck,
    DeviceOsCheck,
    IpRangesCheck,
    JitGrantCheck,
    MinTrustCheck,
    RegionsCheck,
    TimeWindowCheck,
)
from .leaves_identity import (
    AuthenticatedCheck,
    AuthMethodsCheck,
    ClaimCheck,
    GroupsCheck,
    MaxAgeCheck,
    MfaCheck,
    RolesCheck,
)
from .values import claim_path_text

NO_GRANT = "no_matching_rule"
"""The reason code of a deny that no change in the person's position would lift."""
ASK_ADMIN = "if your work needs it, ask your administrator and quote the decision id"
_CONTEXT = (
    DeviceFlagCheck, DeviceOsCheck, DeviceMinOsCheck, IpRangesCheck, RegionsCheck,
    TimeWindowCheck, MinTrustCheck,
)  # fmt: skip


def _leaf_remedy(check: Check) -> Remedy | None:
    """The remedy for a failing leaf criterion, or None when the person cannot fix it."""
    if isinstance(check, RolesCheck | GroupsCheck | AuthMethodsCheck):
        return Remedy(check.code, tuple(sorted(check.node.values)))
    if isinstance(check, MfaCheck):
        return Remedy(check.code) if check.node.required else None
    if isinstance(check, AuthenticatedCheck):
        return Remedy(check.code) if check.node.value else None
    if isinstance(check, JitGrantCheck):
        return Remedy(check.code, (check.node.grant,))
    if isinstance(check, ClaimCheck):  # an attribute of the account an administrator sets
        name = claim_path_text(check.node.claim)
        return Remedy(check.code, tuple(f"{name}={value}" for value in check.node.values))
    if isinstance(check, DeviceFlagCheck):
        return Remedy(check.code) if check.node.value else None
    if isinstance(check, (MaxAgeCheck, *_CONTEXT)):
        return Remedy(check.code)
    return None


Fix = tuple[Check, Remedy]


def fixes_of(check: Check, request: AccessRequest) -> list[Fix] | None:
    """What satisfies the failing ``check`` for ``request`` (the failing leaves and their
    remedies), or None when the person cannot. A passing check needs nothing."""
    if check.test(request):
        return []
    if isinstance(check, LevelCheck):
        return fixes_of(check.level, request)
    if isinstance(check, AnyCheck):
        for child in check.children:  # the first alternative the person can satisfy
            found = fixes_of(child, request)
            if found:
                return found
        return None
    if isinstance(check, AllCheck):
        return rule_fixes(check.children, request)
    remedy = _leaf_remedy(check)
    return None if remedy is None else [(check, remedy)]


def rule_fixes(checks: Sequence[Check], request: AccessRequest) -> list[Fix] | None:
    """Every fix a rule with ``checks`` needs for ``request`` (None: not fixable; a CEL
    error makes a rule unfixable, as the person cannot repair a condition)."""
    out: list[Fix] = []
    try:
        for check in checks:
            found = fixes_of(check, request)
            if found is None:
                return None
            out += found
    except CelError:
        return None
    return out


ALTERNATIVES_SCANNED = 256
"""Allow rules of a slot searched for an alternative explanation: a deny is cheap to cause,
so its explanation must not cost a scan of a 10,000-rule slot; past this many rules the deny
is explained as one no rule grants (its effect never depends on the search)."""


def alternative(
    allows: Sequence[tuple[CompiledRule, tuple[bool, bool]]], request: AccessRequest
) -> tuple[CompiledRule, list[Fix]] | None:
    """The allow rule covering ``request`` that needs the fewest fixes (the first in
    policy order on a tie), among the first ``ALTERNATIVES_SCANNED`` of ``allows`` (a
    slot's allow rules and pins)."""
    best: tuple[CompiledRule, list[Fix]] | None = None
    for rule, pin in allows[:ALTERNATIVES_SCANNED]:
        try:
            if rule.variants[pin](request) in (NOT_APPLICABLE, PASSED):
                continue
        except CelError:
            pass  # it covers the request; rule_fixes finds the condition unfixable
        found = rule_fixes(rule.shape.checks, request)
        if not found:
            continue
        if best is None or (len(found), rule.index) < (len(best[1]), best[0].index):
            best = (rule, found)
    return best


def operator_message(fixes: Sequence[Fix], request: AccessRequest) -> str:
    """The engine's words for the failing criteria (for operators)."""
    return "; ".join(check.failure_message(request) for check, _ in fixes)


def hint_of(fixes: Sequence[Fix], shape_hint: str | None) -> str | None:
    """The next step: the rule's own hint, else each fix's hint, once each."""
    if shape_hint:
        return shape_hint
    hints: list[str] = []
    for check, remedy in fixes:
        step = _STEPS.get(remedy.code)
        hint = step.format(" or ".join(remedy.values)) if step else check.hint
        if hint and hint not in hints:
            hints.append(hint)
    return "; ".join(hints) or None


def _have(values: frozenset[str], noun: str) -> str:
    if not values:
        return f"you have no {noun}"
    return f"you have: {fmt_set(values)}"


def _sentence(check: Check, remedy: Remedy, request: AccessRequest) -> str:
    p = request.principal
    wanted = " or ".join(remedy.values)
    code = remedy.code
    if code == "principal.roles":
        return f"This is open to people with the role {wanted} ({_have(p.roles, 'role')})."
    if code == "principal.groups":
        return f"This is open to members of the group {wanted} ({_have(p.groups, 'group')})."
    if code == "auth.mfa":
        return "This needs a sign-in with a second factor (MFA); this session has none."
    if code == "auth.methods":
        return f"This needs a sign-in with {wanted}."
    if code == "principal.authenticated":
        return "This needs you to be signed in."
    if code == "principal.claim":
        return f"This is open to accounts with {wanted} in their profile."
    if code == "jit.grant":
        return f"This needs an approved just-in-time grant '{wanted}', which you do not hold."
    text = check.failure_message(request)
    return text[:1].upper() + text[1:] + "."


_STEPS = {
    "principal.roles": "ask your administrator for the role {} if your work needs it",
    "principal.groups": "ask your administrator to add you to the group {} if your work needs it",
    "auth.mfa": "sign in again with your second factor",
    "principal.authenticated": "sign in",
    "principal.claim": "ask your administrator to set {} on your account if your work needs it",
}


def summary(fixes: Sequence[Fix], request: AccessRequest) -> Callable[[], str]:
    """The deferred sentence for a person: what each fix is about."""
    return lambda: " ".join(_sentence(check, remedy, request) for check, remedy in fixes)


def position(request: AccessRequest) -> str:
    """The person's position in words (roles and groups), for the plain reason."""
    p = request.principal
    if not p.authenticated:
        return "anyone who is not signed in"
    parts = []
    if p.roles:
        parts.append(f"role {fmt_set(p.roles)}")
    if p.groups:
        parts.append(f"group {fmt_set(p.groups)}")
    return "anyone in your position" + (f" ({'; '.join(parts)})" if parts else "")


def nobody_summary(request: AccessRequest, target: str) -> Callable[[], str]:
    """The plain sentence: no rule grants this to anyone in the person's position."""
    return lambda: f"No rule of your organisation's policy grants {target} to {position(request)}."


def deny_rule_summary(message: str | None, description: str) -> str:
    """The sentence for a deny rule: its own message, else its description."""
    if message:
        return message
    about = f" ({description.rstrip('.')})" if description else ""
    return f"Your organisation's policy forbids this request{about}."


__all__ = [
    "ASK_ADMIN",
    "NO_GRANT",
    "Fix",
    "alternative",
    "deny_rule_summary",
    "fixes_of",
    "hint_of",
    "nobody_summary",
    "operator_message",
    "position",
    "rule_fixes",
    "summary",
]
