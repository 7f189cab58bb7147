"""Every malformed token is refused with a message naming its actual defect (not "got 3
segment(s)" for a token that has 3). Payload defects are signed with the trusted key, so
they reach the payload check after the signature verified."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from verity.identity import (
    AlgorithmNotAllowedError,
    BadSignatureError,
    KeySet,
    TokenMalformedError,
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
    make_config,
    rejects,
    sign,
    signer_for,
)

HEADER = {"alg": "RS256", "kid": "rsa-1", "typ": "JWT"}
Build = Callable[[SigningKey], str]


def _signed(header: str, payload: str) -> Build:
    def build(key: SigningKey) -> str:
        signing_input = f"{header}.{payload}".encode()
        return f"{header}.{payload}.{b64(signer_for(key)(signing_input))}"

    return build


def _raw(token: str) -> Build:
    return lambda _key: token


H, P = b64json(HEADER), b64json(claims())
CASES: list[tuple[str, Build, str]] = [
    ("empty token", _raw(""), "the token is empty"),
    ("two segments", _raw(f"{H}.{P}"), "expected 3 dot-separated segments .* got 2"),
    ("four segments", _raw(f"{H}.{P}.AA.AA"), "expected 3 dot-separated segments .* got 4"),
    ("JWE", _raw("eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d"), r"encrypted tokens \(JWE"),
    ("empty header", _raw(f".{P}.AAAA"), "the header segment is empty"),
    ("empty payload", _raw(f"{H}..AAAA"), "the payload segment is empty"),
    ("empty signature", _raw(f"{H}.{P}."), "the signature segment is empty"),
    ("padding in header", _raw(f"{H}=.{P}.AAAA"), "header segment has '=' padding"),
    ("standard base64 payload", _raw(f"{H}.{P}+/.AAAA"), "payload segment uses '\\+'"),
    ("space in signature", _raw(f"{H}.{P}.AA AA"), "signature segment contains ' ' at offset 2"),
    ("impossible header length", _raw(f"{H}{'A' * ((1 - len(H)) % 4)}.{P}.AAAA"), "header is not valid base64url: .* length"),
    ("non-canonical header", _raw("e31.e30.AAAA"), "header is not canonical base64url"),
    ("non-JSON header", _raw(f"{b64(b'alg')}.{P}.AAAA"), "header is not valid JSON"),
    ("non-UTF-8 header", _raw(f"{b64(bytes([0xFF, 0xFE]))}.{P}.AAAA"), "header is not UTF-8"),
    ("array header", _raw(f"{b64json([HEADER])}.{P}.AAAA"), "header is JSON array, not a JSON object"),
    ("null header", _raw(f"{b64json(None)}.{P}.AAAA"), "header is JSON null, not a JSON object"),
    ("whitespace header", _raw(f"{b64(b'  ')}.{P}.AAAA"), "header decodes to nothing"),
    ("non-JSON payload", _signed(H, b64(b"sub=alice")), "payload is not valid JSON"),
    ("string payload", _signed(H, b64json("alice")), "payload is JSON string, not a JSON object"),
    ("array payload", _signed(H, b64json([claims()])), "payload is JSON array, not a JSON object"),
    ("non-UTF-8 payload", _signed(H, b64(b"\xc3\x28")), "payload is not UTF-8"),
    ("impossible payload length", _signed(H, P + "A" * ((1 - len(P)) % 4)), "payload is not valid base64url"),
]  # fmt: skip


@pytest.mark.parametrize(("build", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_token_message_names_the_actual_defect(
    verifier: TokenVerifier, rsa_key: SigningKey, build: Build, message: str
) -> None:
    exc = rejects(verifier, build(rsa_key), TokenMalformedError)
    assert re.search(message, exc.detail), exc.detail
    assert "got 3 segment" not in exc.detail


def test_empty_payload_is_not_reported_as_a_segment_count(verifier: TokenVerifier) -> None:
    exc = rejects(verifier, f"{H}..AAAA", TokenMalformedError)
    assert exc.detail == "the payload segment is empty"


def test_alg_none_with_empty_signature_still_names_alg_none(verifier: TokenVerifier) -> None:
    exc = rejects(verifier, f"{b64json({'alg': 'none'})}.{P}.", AlgorithmNotAllowedError)
    assert "none" in exc.detail


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b64json(7), "header is JSON number, not a JSON object"),
        (b64json(1.5), "header is JSON number, not a JSON object"),
        (b64json(True), "header is JSON true/false, not a JSON object"),
        (b64json("x"), "header is JSON string, not a JSON object"),
        ("ex", "header is not canonical base64url"),  # 2 characters: 4 unused bits
        ("ew", "header is not valid JSON"),  # canonical: "{"
        (b64(b'{"alg":NaN}'), "header is not valid JSON"),
        (b64(b'{"alg":"RS256","alg":"RS256"}'), "header is not valid JSON: duplicate"),
    ],
)
def test_header_defects_are_named(verifier: TokenVerifier, header: str, message: str) -> None:
    exc = rejects(verifier, f"{header}.{P}.AAAA", TokenMalformedError)
    assert re.search(message, exc.detail), exc.detail


@pytest.mark.parametrize("alg", ["", 7, None, ["RS256"]])
def test_alg_must_be_a_non_empty_string(verifier: TokenVerifier, alg: object) -> None:
    header = {"kid": "rsa-1"} if alg is None else {"alg": alg, "kid": "rsa-1"}
    exc = rejects(verifier, f"{b64json(header)}.{P}.AAAA", TokenMalformedError)
    assert exc.detail == "header has no 'alg' string"


def test_kid_is_a_lookup_up_to_256_characters(verifier: TokenVerifier, rsa_key: SigningKey) -> None:
    longest = SigningKey(rsa_key.private, "RS256", "k" * 256)
    rejects(verifier, sign(longest), UnknownKeyError)
    for kid in ("k" * 257, ""):
        exc = rejects(
            verifier, sign(SigningKey(rsa_key.private, "RS256", kid)), TokenMalformedError
        )
        assert "'kid' must be a string of 1..256 characters" in exc.detail


def test_typ_comparison_ignores_case_space_and_the_application_prefix(
    keyset: KeySet, rsa_key: SigningKey, clock: Clock
) -> None:
    verifier = TokenVerifier(
        make_config(expected_typ="application/at+jwt"), keys=keyset, clock=clock
    )
    for typ in ("at+jwt", " AT+JWT ", "Application/At+Jwt"):
        assert verifier.verify(sign(rsa_key, claims(jti=typ), typ=typ)).subject == "alice"
    for typ in ("jwt", "at+jwt2", "application/jwt", "applicationat+jwt"):
        rejects(verifier, sign(rsa_key, claims(jti=typ), typ=typ), WrongTokenTypeError)


def test_crit_messages_name_the_defect(verifier: TokenVerifier, rsa_key: SigningKey) -> None:
    cases = [
        ([], "'crit' must be a non-empty list of names"),
        ("ext", "'crit' must be a non-empty list of names"),
        (["ext", 1], "'crit' must be a non-empty list of names"),
        (["ext", "ext"], "'crit' lists a name twice"),
        (["alg"], "'crit' may not list registered header 'alg'"),
    ]
    for crit, message in cases:
        exc = rejects(verifier, sign(rsa_key, crit=crit, ext=1), TokenMalformedError)
        assert exc.detail == message
    exc = rejects(verifier, sign(rsa_key, crit=["ext"], ext=1), UnsupportedCriticalHeaderError)
    assert exc.detail == "critical extension 'ext' is not supported"


def test_a_signature_over_another_split_of_the_same_bytes_fails(
    verifier: TokenVerifier, rsa_key: SigningKey
) -> None:
    """The signing input is exactly ``header.payload`` as sent."""
    token = sign(rsa_key)
    header, payload, signature = token.split(".")
    assert verifier.verify(token).subject == "alice"
    rejects(verifier, f"{header}.{payload[:-4]}.{signature}", BadSignatureError)


def test_signature_encoding_defects_name_the_signature(verifier: TokenVerifier) -> None:
    exc = rejects(verifier, f"{H}.{P}.AAAAA", TokenMalformedError)
    assert exc.detail.startswith("signature is not valid base64url: 5 characters")
    exc = rejects(verifier, f"{H}.{P}.AB", TokenMalformedError)
    assert (
        exc.detail == "signature is not canonical base64url (its last character sets unused bits)"
    )
