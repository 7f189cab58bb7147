"""Workload identity (SPIFFE): SPIFFE IDs, a built-in CA, X.509- and JWT-SVIDs, mTLS.

    from verity.identity.workload import CertificateAuthority, TrustBundle, verify_x509_svid

    ca = CertificateAuthority.create(trust_domain="prod.example")
    svid = ca.issue_x509_svid("spiffe://prod.example/ns/web/sa/api")
    verified = verify_x509_svid(svid.chain, TrustBundle.of_authority(ca))
    principal = principal_from_svid(verified)   # kind=SERVICE, spiffe_id set

The verification functions are pure (time is an argument); ``tls`` and ``SvidSource``
are the adapters for live connections and renewal.

The light parts (``WorkloadConfig``, ``SpiffeId``, errors) load at once; the rest loads
on first use, so that ``verity.identity.config`` can import ``WorkloadConfig`` without
an import cycle through the key and token modules.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import WorkloadConfig as WorkloadConfig
from .errors import CertificateAuthorityError as CertificateAuthorityError
from .errors import InvalidSpiffeIdError as InvalidSpiffeIdError
from .errors import JwtSvidError as JwtSvidError
from .errors import SvidRejectedError as SvidRejectedError
from .errors import SvidRejection as SvidRejection
from .errors import TrustBundleError as TrustBundleError
from .errors import WorkloadIdentityError as WorkloadIdentityError
from .spiffe import SpiffeId as SpiffeId

if TYPE_CHECKING:
    from .bundle import TrustBundle as TrustBundle
    from .ca import CertificateAuthority as CertificateAuthority
    from .jwt_svid import JWT_SVID_ALGORITHMS as JWT_SVID_ALGORITHMS
    from .jwt_svid import VerifiedJwtSvid as VerifiedJwtSvid
    from .jwt_svid import issue_jwt_svid as issue_jwt_svid
    from .jwt_svid import principal_from_jwt_svid as principal_from_jwt_svid
    from .jwt_svid import verify_jwt_svid as verify_jwt_svid
    from .rotation import SvidIssuer as SvidIssuer
    from .rotation import SvidSource as SvidSource
    from .svid import X509Svid as X509Svid
    from .tls import client_context as client_context
    from .tls import load_svid as load_svid
    from .tls import peer_svid as peer_svid
    from .tls import server_context as server_context
    from .verify import VerifiedX509Svid as VerifiedX509Svid
    from .verify import load_chain_pem as load_chain_pem
    from .verify import principal_from_svid as principal_from_svid
    from .verify import verify_x509_svid as verify_x509_svid

_LAZY = {
    "TrustBundle": ".bundle",
    "CertificateAuthority": ".ca",
    "JWT_SVID_ALGORITHMS": ".jwt_svid",
    "VerifiedJwtSvid": ".jwt_svid",
    "issue_jwt_svid": ".jwt_svid",
    "principal_from_jwt_svid": ".jwt_svid",
    "verify_jwt_svid": ".jwt_svid",
    "SvidIssuer": ".rotation",
    "SvidSource": ".rotation",
    "X509Svid": ".svid",
    "client_context": ".tls",
    "load_svid": ".tls",
    "peer_svid": ".tls",
    "server_context": ".tls",
    "VerifiedX509Svid": ".verify",
    "load_chain_pem": ".verify",
    "principal_from_svid": ".verify",
    "verify_x509_svid": ".verify",
}


def __getattr__(name: str) -> Any:
    """Load the heavier parts of the facade on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "JWT_SVID_ALGORITHMS",
    "CertificateAuthority",
    "CertificateAuthorityError",
    "InvalidSpiffeIdError",
    "JwtSvidError",
    "SpiffeId",
    "SvidIssuer",
    "SvidRejectedError",
    "SvidRejection",
    "SvidSource",
    "TrustBundle",
    "TrustBundleError",
    "VerifiedJwtSvid",
    "VerifiedX509Svid",
    "WorkloadConfig",
    "WorkloadIdentityError",
    "X509Svid",
    "client_context",
    "issue_jwt_svid",
    "load_chain_pem",
    "load_svid",
    "peer_svid",
    "principal_from_jwt_svid",
    "principal_from_svid",
    "server_context",
    "verify_jwt_svid",
    "verify_x509_svid",
]
