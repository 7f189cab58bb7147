"""Safe YAML: duplicate keys rejected, YAML 1.2 scalars, merges, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from verity import yamlio


def test_only_true_and_false_are_booleans() -> None:
    data = yamlio.loads("a: [yes, no, on, off, y, n, true, False, NO]")
    assert data == {"a": ["yes", "no", "on", "off", "y", "n", True, False, "NO"]}


def test_numbers_and_times() -> None:
    data = yamlio.loads(
        "i: 12\nneg: -3\nf: 1.5\ne: 1e3\noctal: 0o17\nsexa: 08:00\nhex: 0x1F\nz: ~\n"
    )
    assert data == {
        "i": 12,
        "neg": -3,
        "f": 1.5,
        "e": 1000.0,
        "octal": "0o17",
        "sexa": "08:00",
        "hex": "0x1F",
        "z": None,
    }


def test_dates_stay_strings() -> None:
    assert yamlio.loads("d: 2026-11-23") == {"d": "2026-11-23"}


def test_duplicate_keys_are_errors_at_every_depth() -> None:
    with pytest.raises(yamlio.YamlProblem) as caught:
        yamlio.loads("a:\n  b: 1\n  c: 2\n  b: 3\n")
    assert "duplicate key 'b'" in str(caught.value)
    assert caught.value.problem.path == "line 4, column 3"


def test_merge_keys_may_be_overridden_but_not_duplicated() -> None:
    assert yamlio.loads("x: &x {a: 1, b: 2}\ny: {<<: *x, b: 3}") == {
        "x": {"a": 1, "b": 2},
        "y": {"a": 1, "b": 3},
    }


def test_python_tags_are_refused() -> None:
    with pytest.raises(yamlio.YamlProblem):
        yamlio.loads("a: !!python/object/apply:os.system ['true']")


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(yamlio.YamlProblem, match="cannot read file"):
        yamlio.load_file(tmp_path / "missing.yaml")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(yamlio.YamlProblem, match="cannot read file"):
        yamlio.load_file(binary)


def test_loads_all_reads_every_document_with_the_same_strict_rules() -> None:
    text = "a: [yes, NO, 08:00, 0o17, 12, 1.5, ~]\n---\n---\nb: {c: true}\n"
    assert list(yamlio.loads_all(text)) == [
        {"a": ["yes", "NO", "08:00", "0o17", 12, 1.5, None]},
        None,
        {"b": {"c": True}},
    ]
    assert list(yamlio.loads_all(text)) == [yamlio.loads(t) for t in text.split("---\n")]


def test_loads_all_rejects_duplicate_keys_with_their_lines() -> None:
    documents = yamlio.loads_all("a: 1\n---\nallow: x\nallow: y\n")
    assert next(documents) == {"a": 1}
    with pytest.raises(yamlio.YamlProblem) as caught:
        next(documents)
    assert caught.value.problem.path == "line 4, column 1"
    assert "duplicate key 'allow' (first on line 3)" in caught.value.problem.message


def test_loads_all_reports_a_syntax_error_after_the_documents_before_it() -> None:
    documents = yamlio.loads_all("a: 1\n---\nb: [\n")
    assert next(documents) == {"a": 1}
    with pytest.raises(yamlio.YamlProblem) as caught:
        next(documents)
    assert caught.value.problem.path.startswith("line 4")
