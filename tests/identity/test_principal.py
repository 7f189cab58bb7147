"""Claims -> Principal: id, email, groups, roles (nested), amr/MFA, auth_time, session."""

from __future__ import annotations

import pytest

from verity.identity import ClaimMapping, KeySet, MissingClaimError, TokenVerifier
from verity.model import PrincipalKind

from .conftest import NOW, Clock, SigningKey, claims, make_config, sign


def test_principal_from_standard_claims(verifier: TokenVerifier, rsa_key: SigningKey) -> None:
    token = verifier.verify(
        sign(
            rsa_key,
            claims(
                email="alice@example.com",
                email_verified=True,
                groups=["eng", "oncall", 7],
                roles="admin",
                amr=["pwd", "mfa", "otp"],
                auth_time=int(NOW) - 60,
                sid="s-1",
            ),
        )
    )
    principal = verifier.principal(token)
    assert principal.id == "alice"
    assert principal.kind is PrincipalKind.USER
    assert principal.email == "alice@example.com"
    assert principal.groups == {"eng", "oncall"}
    assert principal.roles == {"admin"}
    assert principal.auth_methods == {"pwd", "mfa", "otp"}
    assert principal.mfa
    assert principal.auth_time == NOW - 60
    assert principal.mfa_time == NOW - 60
    assert principal.session_id == "s-1"
    assert principal.claims["iss"] == token.issuer


def test_single_factor_login_is_not_mfa(verifier: TokenVerifier, rsa_key: SigningKey) -> None:
    principal = verifier.principal(verifier.verify(sign(rsa_key, claims(amr=["pwd"]))))
    assert not principal.mfa
    assert principal.mfa_time is None
    assert principal.groups == frozenset()


def test_configurable_claim_names(keyset: KeySet, rsa_key: SigningKey, clock: Clock) -> None:
    mapping = ClaimMapping(
        subject="oid",
        email="upn",
        groups="grp",
        roles="realm_access.roles",
        mfa_amr_values=frozenset({"hwk", "otp"}),
    )
    verifier = TokenVerifier(make_config(claims=mapping), keys=keyset, clock=clock)
    token = sign(
        rsa_key,
        claims(oid="u-42", upn="a@x", grp=["g"], realm_access={"roles": ["r1", "r2"]}, amr=["hwk"]),
    )
    principal = verifier.principal(verifier.verify(token))
    assert (principal.id, principal.email) == ("u-42", "a@x")
    assert principal.groups == {"g"}
    assert principal.roles == {"r1", "r2"}
    assert principal.mfa


def test_unverified_email_is_dropped(verifier: TokenVerifier, rsa_key: SigningKey) -> None:
    token = verifier.verify(sign(rsa_key, claims(email="ceo@example.com", email_verified=False)))
    assert verifier.principal(token).email is None


def test_token_without_subject_has_no_principal(
    verifier: TokenVerifier, rsa_key: SigningKey
) -> None:
    token = verifier.verify(sign(rsa_key, claims(sub=None)))
    with pytest.raises(MissingClaimError):
        verifier.principal(token)
