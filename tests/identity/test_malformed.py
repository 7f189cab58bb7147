"""Every malformed token is refused with a message naming its actual defect (not "got 3
segment(s)" for a token that has 3). Payload defects are signed with the trusted key, so
they reach the payload check after the signature verified."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from verity.identity import AlgorithmNotAllowedError, TokenMalformedError, TokenVerifier

from .conftest import SigningKey, b64, b64json, claims, rejects, signer_for

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
