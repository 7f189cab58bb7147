"""Typed reading of parsed YAML with key paths: each helper returns a value or raises
``Invalid(path, message)``, which the loader turns into a located ``ManifestError``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class Invalid(Exception):
    """A field of a document is malformed at ``path``."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}")


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def mapping(value: Any, path: str, *, optional: bool = True) -> Mapping[str, Any]:
    """A mapping (``None`` reads as empty when ``optional``)."""
    if value is None and optional:
        return {}
    if not isinstance(value, Mapping):
        raise Invalid(path, f"expected a mapping, got {_kind(value)}")
    return value


def items(value: Any, path: str) -> list[Any]:
    """A list (``None`` reads as empty)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise Invalid(path, f"expected a list, got {_kind(value)}")
    return value


def string(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise Invalid(path, f"expected a non-empty string, got {_kind(value)}")
    return value


def optional_string(value: Any, path: str, default: str) -> str:
    return default if value is None else string(value, path)


def port_number(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise Invalid(path, f"expected a port number 1-65535, got {value!r}")
    return value


def labels(value: Any, path: str) -> dict[str, str]:
    """A label map: string keys and string values (Kubernetes rejects numbers there)."""
    result: dict[str, str] = {}
    for key, item in mapping(value, path).items():
        if not isinstance(key, str) or not key:
            raise Invalid(path, f"label key {key!r} is not a string")
        if not isinstance(item, str):
            raise Invalid(join(path, key), f"label value must be a string, got {_kind(item)}")
        result[key] = item
    return result


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return "an empty string" if not value else "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return type(value).__name__
