"""Strict parsing of compact JWS tokens (RFC 7515) and the header policy of RFC 8725.

Parsing is deliberately narrower than the RFCs allow: unpadded canonical base64url only
(so a token has exactly one encoding and a signature cannot be altered in its unused
bits), UTF-8 JSON objects only, duplicate member names rejected (RFC 7515 4), and no
``NaN``/``Infinity``. Nothing here does cryptography.
"""

from __future__ import annotations

import binascii
import json
import re
from dataclasses import dataclass
from typing import Any, NoReturn

from .config import REGISTERED_HEADERS
from .errors import (
    AlgorithmNotAllowedError,
    ForbiddenHeaderError,
    TokenMalformedError,
    UnsupportedCriticalHeaderError,
    WrongTokenTypeError,
    shown,
)

MAX_KID_LENGTH = 256
# Headers that point at or carry key material: following or trusting them lets the
# token choose its own key (RFC 8725 3.10 / JWT "jku/x5u/jwk" attacks).
FORBIDDEN_HEADERS = ("jku", "x5u", "jwk", "x5c")
_COMPACT = re.compile(rb"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


@dataclass(frozen=True, slots=True)
class CompactJws:
    """A split token: decoded header, raw segments and the decoded signature."""

    header: dict[str, Any]
    signing_input: bytes
    payload_segment: bytes
    signature: bytes


_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_PADDING = (b"", b"", b"==", b"=")
# Bits of the last character that carry no data, by segment length modulo 4: they must be
# zero, or one token would have several encodings (RFC 4648 3.5, canonical encoding).
_UNUSED_BITS = (0, 0, 0x0F, 0x03)
_SEXTET = {
    c: i for i, c in enumerate(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
}


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON for a JWT")


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member name")
    return result


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_members, parse_constant=_reject_constant)


def b64url_decode(segment: bytes, what: str, token_hash: str | None) -> bytes:
    """Decode one unpadded, canonical base64url segment."""
    rest = len(segment) % 4
    if rest == 1:
        raise TokenMalformedError(
            f"{what} is not valid base64url: {len(segment)} characters is an impossible "
            "length (truncated?)",
            token_hash=token_hash,
        )
    if rest and _SEXTET.get(segment[-1], 0xFF) & _UNUSED_BITS[rest]:
        raise TokenMalformedError(
            f"{what} is not canonical base64url (its last character sets unused bits)",
            token_hash=token_hash,
        )
    try:
        return binascii.a2b_base64(
            segment.translate(_TO_STANDARD) + _PADDING[rest], strict_mode=True
        )
    except binascii.Error:
        raise TokenMalformedError(f"{what} is not valid base64url", token_hash=token_hash) from None


def json_object(data: bytes, what: str, token_hash: str | None) -> dict[str, Any]:
    """Parse UTF-8 JSON that must be an object without duplicate members."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise TokenMalformedError(f"{what} is not UTF-8 text", token_hash=token_hash) from None
    if not text.strip():
        raise TokenMalformedError(
            f"{what} decodes to nothing (a JSON object is required)", token_hash=token_hash
        )
    try:
        value = _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        raise TokenMalformedError(
            f"{what} is not valid JSON: {exc}", token_hash=token_hash
        ) from None
    if not isinstance(value, dict):
        raise TokenMalformedError(
            f"{what} is JSON {_JSON_TYPES.get(type(value), type(value).__name__)}, "
            "not a JSON object",
            token_hash=token_hash,
        )
    return value


_JSON_TYPES = {
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "true/false",
    type(None): "null",
}


def split_compact(untrusted: bytes, token_hash: str | None) -> CompactJws:
    """Split and decode ``header.payload.signature``; the payload stays encoded.

    A token that is not well formed is refused with a message naming its defect (see
    ``_diagnose``). The signature may be empty here: ``check_signature_present`` refuses
    that after the header checks, so ``alg: none`` is reported as what it is.
    """
    if not _COMPACT.fullmatch(untrusted):
        _diagnose(untrusted, token_hash)
    header_segment, payload_segment, signature_segment = untrusted.split(b".")
    header = json_object(b64url_decode(header_segment, "header", token_hash), "header", token_hash)
    signature = b64url_decode(signature_segment, "signature", token_hash)
    signing_input = untrusted[: len(header_segment) + 1 + len(payload_segment)]
    return CompactJws(header, signing_input, payload_segment, signature)


def _diagnose(untrusted: bytes, token_hash: str | None) -> NoReturn:
    """Raise the ``TokenMalformedError`` that names what is wrong with a token that does
    not have the shape ``header.payload.signature`` (slow path: rejected tokens only)."""
    if not untrusted.strip():
        raise TokenMalformedError("the token is empty", token_hash=token_hash)
    segments = untrusted.split(b".")
    if len(segments) == 5:
        raise TokenMalformedError(
            "encrypted tokens (JWE, 5 segments) are not accepted", token_hash=token_hash
        )
    if len(segments) != 3:
        raise TokenMalformedError(
            "not a compact JWS: expected 3 dot-separated segments "
            f"(header.payload.signature), got {len(segments)}",
            token_hash=token_hash,
        )
    for what, segment in zip(("header", "payload", "signature"), segments, strict=True):
        if not segment and what != "signature":
            raise TokenMalformedError(f"the {what} segment is empty", token_hash=token_hash)
        bad = _NOT_B64URL.search(segment)
        if bad is not None:
            raise TokenMalformedError(_bad_character(what, bad), token_hash=token_hash)
    raise TokenMalformedError("not a compact JWS", token_hash=token_hash)  # not reached


_NOT_B64URL = re.compile(rb"[^A-Za-z0-9_-]")


def _bad_character(what: str, bad: re.Match[bytes]) -> str:
    char = bad.group()
    if char == b"=":
        return f"the {what} segment has '=' padding (unpadded base64url is required)"
    if char in b"+/":
        return (
            f"the {what} segment uses {char.decode()!r}: standard base64, not base64url "
            "('-' and '_')"
        )
    return (
        f"the {what} segment contains {shown(char.decode('latin-1'))} at offset "
        f"{bad.start()}, which is not a base64url character"
    )


def check_signature_present(jws: CompactJws, token_hash: str | None) -> None:
    """Refuse an empty signature segment (an unsecured token) by name."""
    if not jws.signature:
        raise TokenMalformedError(
            "the signature segment is empty (unsigned tokens are never accepted)",
            token_hash=token_hash,
        )


def check_algorithm(header: dict[str, Any], allowed: frozenset[str], token_hash: str | None) -> str:
    """The header's ``alg``, if it is one of the configured algorithms (never ``none``)."""
    alg = header.get("alg")
    if not isinstance(alg, str) or not alg:
        raise TokenMalformedError("header has no 'alg' string", token_hash=token_hash)
    if alg.lower() == "none":
        raise AlgorithmNotAllowedError(
            "'none' (unsecured JWS) is never accepted", token_hash=token_hash
        )
    if alg not in allowed:
        raise AlgorithmNotAllowedError(
            f"alg {shown(alg)} is not allowed for this issuer (allowed: {sorted(allowed)})",
            token_hash=token_hash,
        )
    return alg


def check_header(
    header: dict[str, Any],
    *,
    expected_typ: str | None,
    understood_crit: frozenset[str],
    token_hash: str | None,
) -> str | None:
    """Apply the header policy; returns the ``kid`` (untrusted, only for a dict lookup)."""
    for name in FORBIDDEN_HEADERS:
        if name in header:
            raise ForbiddenHeaderError(name, token_hash=token_hash)
    if "crit" in header:
        _check_crit(header, understood_crit, token_hash)
    if expected_typ is not None:
        _check_typ(header.get("typ"), expected_typ, token_hash)
    kid = header.get("kid")
    if kid is None:
        return None
    if not isinstance(kid, str) or not kid or len(kid) > MAX_KID_LENGTH:
        raise TokenMalformedError(
            f"'kid' must be a string of 1..{MAX_KID_LENGTH} characters", token_hash=token_hash
        )
    return kid


def _check_crit(header: dict[str, Any], understood: frozenset[str], token_hash: str | None) -> None:
    crit = header["crit"]
    if not isinstance(crit, list) or not crit or not all(isinstance(c, str) for c in crit):
        raise TokenMalformedError("'crit' must be a non-empty list of names", token_hash=token_hash)
    if len(set(crit)) != len(crit):
        raise TokenMalformedError("'crit' lists a name twice", token_hash=token_hash)
    for name in crit:
        if name in REGISTERED_HEADERS:
            raise TokenMalformedError(
                f"'crit' may not list registered header {shown(name)}", token_hash=token_hash
            )
        if name not in understood:
            raise UnsupportedCriticalHeaderError(
                f"critical extension {shown(name)} is not supported", token_hash=token_hash
            )
        if name not in header:
            raise TokenMalformedError(
                f"critical extension {shown(name)} is missing from the header",
                token_hash=token_hash,
            )


def normalize_typ(typ: str) -> str:
    """Media type comparison per RFC 7515 4.1.9: case-insensitive, ``application/`` optional."""
    typ = typ.strip().lower()
    return typ.removeprefix("application/")


def _check_typ(typ: object, expected: str, token_hash: str | None) -> None:
    if not isinstance(typ, str) or normalize_typ(typ) != normalize_typ(expected):
        raise WrongTokenTypeError(
            f"typ {shown(typ)} is not the expected {expected!r}", token_hash=token_hash
        )
