"""Errors: one class and reason per rejection, safe public messages; the facade."""

from __future__ import annotations

import re

from verity import identity
from verity.errors import VerityError
from verity.identity import errors


def _token_errors() -> list[type[errors.TokenError]]:
    return [
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type)
        and issubclass(cls, errors.TokenError)
        and cls is not errors.TokenError
    ]


def test_every_rejection_has_its_own_class_and_reason() -> None:
    classes = _token_errors()
    reasons = [cls.reason for cls in classes]
    assert len(set(reasons)) == len(reasons) == len(errors.RejectionReason)


def test_identity_errors_are_verity_errors() -> None:
    for cls in (
        *_token_errors(),
        errors.KeyBindingError,
        errors.JwksError,
        errors.InsecureUrlError,
    ):
        assert issubclass(cls, errors.IdentityError)
        assert issubclass(cls, VerityError)


def test_public_messages_are_short_and_generic() -> None:
    for cls in _token_errors():
        message = cls.public_message
        assert message.endswith(".")
        assert len(message) < 60
        assert not re.search(r"\b(kid|alg|key|iss|aud|exp|nbf|iat)\b|[{}'\"]", message)


def test_operator_message_has_detail_and_fingerprint_only() -> None:
    exc = errors.BadSignatureError("signature does not verify", token_hash="ab" * 32)
    assert exc.operator_message == (
        "token rejected (bad_signature): signature does not verify [token sha256:abababababababab]"
    )
    assert str(exc) == exc.operator_message


def test_untrusted_values_are_quoted_and_truncated() -> None:
    shown = errors.shown("x" * 500 + "\nFAKE LOG LINE")
    assert len(shown) <= 64
    assert "\n" not in shown


def test_www_authenticate() -> None:
    value = errors.www_authenticate(errors.TokenExpiredError("x"))
    assert (
        value == 'Bearer error="invalid_token", error_description="The access token has expired."'
    )


def test_all_matches_the_namespace() -> None:
    public = {name for name in vars(identity) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(identity, name)).__name__ == "module"}
    assert set(identity.__all__) == public - modules
    assert sorted(identity.__all__) == identity.__all__
