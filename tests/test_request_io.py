"""Access request documents: validated, every problem with its key path."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from pathlib import Path

import pytest

from verity.errors import RequestError
from verity.model import PrincipalKind
from verity.request_io import load_request_file, request_from_mapping


def test_full_request_document() -> None:
    request = request_from_mapping(
        {
            "principal": {
                "id": "carol",
                "roles": ["contractor"],
                "mfa": True,
                "auth_time": "2026-11-23T09:00:00Z",
            },
            "time": "2026-11-23T10:00:00+01:00",
            "http": {"host": "Wiki.Internal:443", "path": "/docs/../a"},
            "device": {"id": "d", "managed": True, "os_type": "macOS", "os_version": "14.2"},
            "network": {"ip": "::ffff:10.0.0.1", "region": "de"},
            "grants": {"db": "2026-11-23T11:00:00Z"},
            "trust_score": 70,
        }
    )
    assert request.time == datetime(2026, 11, 23, 9, 0, tzinfo=UTC).timestamp()
    assert request.principal.auth_time == request.time
    assert request.http is not None
    assert (request.http.host, request.http.path) == ("wiki.internal", "/a")
    assert request.device is not None
    assert request.device.os_type == "macos"
    assert request.network.ip == ipaddress.IPv4Address("10.0.0.1")
    assert request.network.region == "DE"
    assert request.grants == {"db": request.time + 7200}


def test_missing_principal_means_anonymous() -> None:
    request = request_from_mapping({"time": 0})
    assert request.principal.kind is PrincipalKind.ANONYMOUS


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({}, "time"),
        ({"time": "2026-11-23T10:00:00"}, "time"),
        ({"time": 0, "principal": {"id": "a", "mfa": "yes"}}, "principal.mfa"),
        ({"time": 0, "principal": {"id": ""}}, "principal.id"),
        ({"time": 0, "network": {"ip": "10.0.0.999"}}, "network.ip"),
        ({"time": 0, "trust_score": 101}, "trust_score"),
        ({"time": 0, "devise": {}}, "devise"),
        ({"time": 0, "principal": {"id": "a", "kind": "robot"}}, "principal.kind"),
        ({"time": 0, "grants": ["db"]}, "grants"),
    ],
)
def test_bad_request_documents_name_the_key(data: dict[str, object], path: str) -> None:
    with pytest.raises(RequestError) as caught:
        request_from_mapping(data, source="r.yaml")
    assert path in {p.path for p in caught.value.problems}, caught.value.problems
    assert "r.yaml" in str(caught.value)


def test_not_a_mapping() -> None:
    with pytest.raises(RequestError, match="a request is a mapping"):
        request_from_mapping([1, 2])


def test_file_errors_are_request_errors(tmp_path: Path) -> None:
    file = tmp_path / "r.yaml"
    file.write_text("time: [\n")
    with pytest.raises(RequestError):
        load_request_file(file)
    with pytest.raises(RequestError, match="cannot read file"):
        load_request_file(tmp_path / "absent.yaml")
