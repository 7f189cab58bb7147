"""Verity's exception hierarchy: one root, one class per failure, each carrying its data.

VerityError
 ├── ConfigError            a verity.yaml problem (key path + message)
 ├── PolicyError
 │    ├── PolicyLoadError   a policy file is invalid (file + every problem found)
 │    └── CelError          a CEL expression failed to compile or evaluate
 ├── RequestError           an access request (file or mapping) is malformed
 ├── PolicyTestError        a policy test file is malformed
 ├── IdentityError          verity.identity.errors: TokenError (one class per rejection
 │                          reason), KeyBindingError, JwksError; verity.identity.idp.errors:
 │                          IdpError (UserExistsError, UnknownUserError, OAuthError);
 │                          verity.identity.oidc.errors: LoginError (UnknownProviderError,
 │                          LoginStateError, NonceMismatchError, IdTokenError, ProviderError,
 │                          LogoutTokenError);
 │                          verity.identity.workload.errors: WorkloadIdentityError
 │                          (InvalidSpiffeIdError, SvidRejectedError, JwtSvidError,
 │                          TrustBundleError, CertificateAuthorityError)
 ├── GatewayError           verity.gateway.errors: BadRequestError (status, public_message),
 │                          AssertionKeyError
 ├── AssertionVerificationError  verity.integrations.assertion (one subclass per reason)
 ├── AuditError             verity.audit.errors: AuditKeyError, AuditStoreError,
 │                          AuditWriteError, AuditClosedError, ChainConflictError,
 │                          AuditTamperedError, AuditExportError
 ├── StoreError             verity.store.errors: StoreUnavailableError, MigrationError,
 │                          DuplicateSessionError, UnknownDeviceError, ConcurrentUpdateError,
 │                          GrantError (GrantNotFoundError, GrantStateError, SelfApprovalError)
 └── RlsIdentityError       verity.integrations.postgres_rls

Each subsystem keeps its own classes in its package (``verity.<package>.errors``), all
subclasses of ``VerityError``.
"""

from __future__ import annotations

from dataclasses import dataclass


class VerityError(Exception):
    """Root of every error Verity raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem found in an input document, located by its key path."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class _ProblemsError(VerityError):
    """An input document had one or more problems; all of them are kept."""

    kind = "input"

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        lines = "\n".join(f"  {source}: {p}" for p in self.problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"invalid {self.kind} {source} ({count} {noun}):\n{lines}")


class ConfigError(_ProblemsError):
    """verity.yaml (or another configuration source) is invalid."""

    kind = "configuration"


class PolicyError(VerityError):
    """Something is wrong with a policy."""


class PolicyLoadError(_ProblemsError, PolicyError):
    """A policy document is invalid; nothing of it was loaded."""

    kind = "policy"


class CelError(PolicyError):
    """A CEL expression could not be compiled or evaluated."""

    def __init__(self, expression: str, message: str) -> None:
        self.expression = expression
        self.message = message
        super().__init__(f"CEL expression {expression!r}: {message}")


class RequestError(_ProblemsError):
    """An access request document is malformed."""

    kind = "request"


class PolicyTestError(_ProblemsError):
    """A policy test file is malformed."""

    kind = "policy test file"
