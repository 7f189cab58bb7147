"""Canonical JSON (RFC 8785, JSON Canonicalization Scheme): one byte string per value.

Object members are sorted by the UTF-16 code units of their names, there is no
whitespace, strings are UTF-8 with only the mandatory escapes, and numbers use the
ECMAScript shortest round-trip form (``1.0`` -> ``1``, ``1e-7`` -> ``1e-7``). NaN and
infinities, non-string keys and lone surrogates are rejected.

``canonical_json`` walks and checks any value. ``canonical_event`` is the fast path for
values whose keys are all ASCII and which hold no floats (every audit event, by
construction): for those, orjson with sorted keys yields exactly the JCS bytes, ten
times faster than ``json.dumps``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import orjson

_encode_string = json.JSONEncoder(ensure_ascii=False).encode


def _utf16_key(name: str) -> bytes:
    return name.encode("utf-16-be", "surrogatepass")


def format_number(value: float) -> str:
    """A float in the ECMAScript ``Number.prototype.toString`` form that RFC 8785 requires."""
    if not math.isfinite(value):
        raise ValueError(f"{value!r} has no JSON form")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    # repr() gives the shortest round-trip digits; value = 0.DIGITS * 10**n
    parts = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, parts.digits))
    n = len(digits) + int(parts.exponent)
    k = len(digits)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        exponent = n - 1
        mark = "+" if exponent >= 0 else "-"
        head = digits[0] + ("." + digits[1:] if k > 1 else "")
        text = f"{head}e{mark}{abs(exponent)}"
    return sign + text


def _write(value: Any, out: list[str]) -> None:
    if value is None or value is True or value is False:
        out.append("null" if value is None else ("true" if value else "false"))
    elif isinstance(value, str):
        value.encode("utf-8")  # rejects lone surrogates
        out.append(_encode_string(value))
    elif isinstance(value, int):
        out.append(str(int(value)))
    elif isinstance(value, float):
        out.append(format_number(value))
    elif isinstance(value, Mapping):
        _write_object(value, out)
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise TypeError(f"{type(value).__name__} has no canonical JSON form")


def _write_object(value: Mapping[Any, Any], out: list[str]) -> None:
    for key in value:
        if not isinstance(key, str):
            raise TypeError(f"object keys must be strings, not {type(key).__name__}")
    out.append("{")
    for index, key in enumerate(sorted(value, key=_utf16_key)):
        if index:
            out.append(",")
        _write(key, out)
        out.append(":")
        _write(value[key], out)
    out.append("}")


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of a JSON-like value (checks everything)."""
    out: list[str] = []
    _write(value, out)
    return "".join(out).encode("utf-8")


def canonical_event(document: Mapping[str, Any]) -> bytes:
    """Canonical bytes of a float-free document with ASCII keys (the audit hot path).

    orjson with sorted keys emits exactly the JCS bytes for such documents (same escapes,
    no whitespace, UTF-8); the tests cross-check it against ``canonical_json``.
    """
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
