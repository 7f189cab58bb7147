"""Safe YAML reading for security documents (policies, config, test files).

Two YAML 1.1 traps are closed here: duplicate keys (which PyYAML silently resolves to the
last one, so a second ``allow:`` would quietly replace the first) are an error, and only
``true``/``false`` are booleans and only plain decimal numbers are numbers (YAML 1.2 core
schema), so ``regions: [NO]`` stays Norway and ``hours: 08:00`` stays a string.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from .errors import Problem


class YamlProblem(Exception):
    """A YAML document could not be read; carries a located problem."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(str(problem))


class _StrictMappings(yaml.constructor.SafeConstructor):
    """Duplicate-key detection, shared by the pure-Python and the libyaml loaders."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults` merges; explicit keys may override merged ones
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a scalar", key_node.start_mark
                ) from None
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"duplicate key {key!r} (first on line {seen[key].start_mark.line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


class _StrictLoader(_StrictMappings, yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core scalars and duplicate-key detection."""

    yaml_implicit_resolvers = {}  # noqa: RUF012 - PyYAML's per-class registry, filled below


# The same rules over libyaml's parser (about 7x faster on large manifests), when PyYAML
# was built with it; the scalar resolvers and mapping construction are the Python ones.
_CSafeLoader: type[yaml.SafeLoader] | None = getattr(yaml, "CSafeLoader", None)
_FastStrictLoader: type[yaml.SafeLoader] = _StrictLoader
if _CSafeLoader is not None:

    class _CStrictLoader(_StrictMappings, _CSafeLoader):  # type: ignore[misc,valid-type]
        yaml_implicit_resolvers: dict[Any, Any] = {}  # noqa: RUF012 - PyYAML's registry

    _FastStrictLoader = _CStrictLoader


def _add(tag: str, pattern: str, first: list[str]) -> None:
    loaders: list[type[yaml.SafeLoader]] = [_StrictLoader]
    if _FastStrictLoader is not _StrictLoader:
        loaders.append(_FastStrictLoader)
    for loader in loaders:
        loader.add_implicit_resolver(tag, re.compile(pattern, re.X), first)


_add("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF"))
_add("tag:yaml.org,2002:int", r"^[-+]?[0-9]+$", list("-+0123456789"))
_add(
    "tag:yaml.org,2002:float",
    r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$",
    list("-+.0123456789"),
)
_add("tag:yaml.org,2002:merge", r"^(?:<<)$", ["<"])
_add("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""])


def loads(text: str) -> Any:
    """Parse one YAML (or JSON) document; raises YamlProblem with a line number."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise YamlProblem(Problem(where, str(exc.problem or exc))) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(Problem("", f"not valid YAML: {exc}")) from None


def loads_all(text: str) -> Iterator[Any]:
    """Parse a multi-document YAML stream (``---`` separated), one document at a time.

    Documents before a syntax error are yielded; the error then raises YamlProblem with its
    line, so a caller can say which document failed and keep the ones read before it. Uses
    libyaml's parser when available (same scalars and duplicate-key rule; its syntax error
    wording differs).
    """
    try:
        yield from yaml.load_all(text, Loader=_FastStrictLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise YamlProblem(Problem(where, str(exc.problem or exc))) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(Problem("", f"not valid YAML: {exc}")) from None


def load_file(path: str | Path) -> Any:
    """Read and parse a YAML/JSON file; unreadable files raise YamlProblem too."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise YamlProblem(Problem("", f"cannot read file: {exc}")) from None
    return loads(text)
