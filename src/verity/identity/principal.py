"""Verified claims -> ``verity.model.Principal`` (id, email, groups, roles, amr/MFA, auth_time)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..model import Principal, PrincipalKind
from .config import ClaimMapping
from .core import VerifiedToken
from .errors import MissingClaimError

_MISSING = object()


def claim(claims: Mapping[str, Any], name: str) -> Any:
    """The value of claim ``name``; a dotted name reaches into objects. Missing -> None."""
    value: Any = claims.get(name, _MISSING)
    if value is not _MISSING:
        return value
    value = claims
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _strings(value: Any) -> frozenset[str]:
    """A list of strings, or one string, as a set; anything else is ignored."""
    if isinstance(value, str):
        return frozenset({value})
    if isinstance(value, list | tuple | frozenset | set):
        return frozenset(item for item in value if isinstance(item, str))
    return frozenset()


def _time(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _email(claims: Mapping[str, Any], mapping: ClaimMapping) -> str | None:
    email = claim(claims, mapping.email)
    if not isinstance(email, str) or claims.get("email_verified") is False:
        return None
    return email


def principal_from_token(token: VerifiedToken, mapping: ClaimMapping | None = None) -> Principal:
    """The ``Principal`` a verified token stands for.

    The id is the configured subject claim (``sub``); ``email`` is dropped when the token
    says ``email_verified: false``; ``amr`` becomes ``auth_methods`` and sets ``mfa``
    when it contains one of ``mapping.mfa_amr_values``; ``auth_time`` is kept, and is
    the ``mfa_time`` of an MFA login. Raises ``MissingClaimError`` without a usable
    subject (verification can require it up front with ``required_claims: [sub]``).
    """
    mapping = mapping or ClaimMapping()
    claims = token.claims
    subject = claim(claims, mapping.subject)
    if not isinstance(subject, str) or not subject:
        raise MissingClaimError(mapping.subject, token_hash=token.token_hash)
    methods = _strings(claims.get("amr"))
    mfa = not methods.isdisjoint(mapping.mfa_amr_values)
    auth_time = _time(claims.get("auth_time"))
    session = claim(claims, mapping.session_id)
    return Principal(
        id=subject,
        kind=PrincipalKind.USER,
        email=_email(claims, mapping),
        groups=_strings(claim(claims, mapping.groups)),
        roles=_strings(claim(claims, mapping.roles)),
        claims=claims,
        auth_methods=methods,
        mfa=mfa,
        auth_time=auth_time,
        mfa_time=auth_time if mfa else None,
        session_id=session if isinstance(session, str) else None,
    )
