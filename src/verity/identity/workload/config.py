"""``identity.workload`` in ``verity.yaml``: the trust domain, CA files and SVID lifetimes."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .spiffe import trust_domain_problem

CaKeyType = Literal["ec-p256", "ed25519"]


class WorkloadConfig(BaseModel):
    """Workload identity (SPIFFE): the built-in CA and the SVIDs it issues and accepts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trust_domain: str = Field(
        default="verity.internal", description="This deployment's SPIFFE trust domain."
    )
    ca_dir: Path = Field(
        default=Path("verity-ca"),
        description="Folder of the CA (root/intermediate certificates and 0600 keys).",
    )
    bundle_path: Path | None = Field(
        default=None,
        description="Trust bundle (PEM or SPIFFE JWKS) to verify peers; default: the CA's own.",
    )
    default_ttl_seconds: int = Field(
        default=3600, ge=60, description="Lifetime of an X.509-SVID unless asked otherwise."
    )
    max_ttl_seconds: int = Field(
        default=86400, ge=60, le=30 * 86400, description="Longest X.509-SVID the CA issues."
    )
    jwt_default_ttl_seconds: int = Field(
        default=300, ge=10, description="Lifetime of a JWT-SVID unless asked otherwise."
    )
    jwt_max_ttl_seconds: int = Field(
        default=3600, ge=10, le=86400, description="Longest JWT-SVID issued or accepted."
    )
    backdate_seconds: int = Field(
        default=30, ge=0, le=600, description="not-before is set this far back (clock skew)."
    )
    leeway_seconds: float = Field(
        default=30, ge=0, le=300, description="Clock-skew leeway when verifying JWT-SVIDs."
    )

    @field_validator("trust_domain")
    @classmethod
    def _trust_domain(cls, value: str) -> str:
        problem = trust_domain_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _ttls(self) -> Self:
        if self.default_ttl_seconds > self.max_ttl_seconds:
            raise ValueError("default_ttl_seconds exceeds max_ttl_seconds")
        if self.jwt_default_ttl_seconds > self.jwt_max_ttl_seconds:
            raise ValueError("jwt_default_ttl_seconds exceeds jwt_max_ttl_seconds")
        return self
