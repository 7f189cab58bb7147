"""WorkloadConfig: defaults and validation with key paths."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from verity.identity.workload import WorkloadConfig


def test_defaults_are_short_lived() -> None:
    config = WorkloadConfig()
    assert config.default_ttl_seconds == 3600
    assert config.max_ttl_seconds == 86400
    assert config.jwt_default_ttl_seconds == 300


@pytest.mark.parametrize(("data", "field"), [
    ({"trust_domain": "Example.org"}, "trust_domain"),
    ({"trust_domain": "example.org:80"}, "trust_domain"),
    ({"default_ttl_seconds": 7200, "max_ttl_seconds": 3600}, "default_ttl_seconds"),
    ({"max_ttl_seconds": 365 * 86400}, "max_ttl_seconds"),
    ({"unknown": 1}, "unknown"),
])  # fmt: skip
def test_invalid_settings_are_rejected(data: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        WorkloadConfig.model_validate(data)
    assert field in str(caught.value)
