"""Errors of ``verity.segmentation``: every one a ``VerityError``.

SegmentationError
 ├── ManifestError     one Kubernetes document is malformed (file, document index, key path)
 └── QueryError        a query names an unknown workload or an invalid address, port or protocol
"""

from __future__ import annotations

from ..errors import Problem, VerityError, _ProblemsError


class SegmentationError(VerityError):
    """Something is wrong with the input of a segmentation analysis."""


class ManifestError(_ProblemsError, SegmentationError):
    """A Kubernetes document is malformed; it names the file, the document and the key path.

    ``document`` counts from 0 in the order documents appear in ``file`` (``List`` items
    are located by their key path, ``items[3]...``).
    """

    kind = "manifest"

    def __init__(self, file: str, document: int, problems: list[Problem]) -> None:
        self.file = file
        self.document = document
        super().__init__(f"{file} document {document}", problems)


class QueryError(SegmentationError):
    """A query is invalid: an unknown workload, a bad address, port or protocol."""


__all__ = ["ManifestError", "QueryError", "SegmentationError"]
