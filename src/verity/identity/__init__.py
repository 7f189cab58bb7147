"""Identity: bearer-token verification (RFC 7519 / RFC 8725), JWKS key sources, the
verified-token cache, and claims -> ``Principal`` mapping.

    from verity.identity import IssuerConfig, TokenVerifier

    verifier = TokenVerifier(IssuerConfig(issuer="https://idp.example", audiences=["api"]))
    principal = verifier.principal(verifier.verify(untrusted_bearer))

The pure core (``verify_token``) does no I/O; ``JwksFetcher`` is the HTTP adapter.
"""

from .cache import CacheStats as CacheStats
from .cache import RevocationList as RevocationList
from .cache import VerifiedTokenCache as VerifiedTokenCache
from .config import ClaimMapping as ClaimMapping
from .config import IdentityConfig as IdentityConfig
from .config import IssuerConfig as IssuerConfig
from .config import JwksPolicy as JwksPolicy
from .core import VerificationRules as VerificationRules
from .core import VerifiedToken as VerifiedToken
from .core import token_hash as token_hash
from .core import verify_token as verify_token
from .errors import AlgorithmNotAllowedError as AlgorithmNotAllowedError
from .errors import BadSignatureError as BadSignatureError
from .errors import ForbiddenHeaderError as ForbiddenHeaderError
from .errors import IdentityError as IdentityError
from .errors import InsecureUrlError as InsecureUrlError
from .errors import InvalidAudienceError as InvalidAudienceError
from .errors import InvalidClaimError as InvalidClaimError
from .errors import InvalidIssuerError as InvalidIssuerError
from .errors import JwksError as JwksError
from .errors import KeyBindingError as KeyBindingError
from .errors import KeysUnavailableError as KeysUnavailableError
from .errors import MissingClaimError as MissingClaimError
from .errors import RejectionReason as RejectionReason
from .errors import TokenError as TokenError
from .errors import TokenExpiredError as TokenExpiredError
from .errors import TokenIssuedInFutureError as TokenIssuedInFutureError
from .errors import TokenMalformedError as TokenMalformedError
from .errors import TokenNotYetValidError as TokenNotYetValidError
from .errors import TokenRevokedError as TokenRevokedError
from .errors import TokenTooLargeError as TokenTooLargeError
from .errors import UnknownKeyError as UnknownKeyError
from .errors import UnsupportedCriticalHeaderError as UnsupportedCriticalHeaderError
from .errors import WeakKeyError as WeakKeyError
from .errors import WrongTokenTypeError as WrongTokenTypeError
from .errors import www_authenticate as www_authenticate
from .fetch import JwksFetcher as JwksFetcher
from .jwks import JwksStatus as JwksStatus
from .keys import BoundKey as BoundKey
from .keys import KeySet as KeySet
from .keys import bind_jwk as bind_jwk
from .keys import key_from_pem as key_from_pem
from .keys import key_from_secret as key_from_secret
from .keys import keyset_from_jwks as keyset_from_jwks
from .principal import principal_from_token as principal_from_token
from .source import JwksSource as JwksSource
from .source import KeySource as KeySource
from .source import StaticKeys as StaticKeys
from .verifier import TokenVerifier as TokenVerifier
from .verifier import load_jwks_file as load_jwks_file

__all__ = [
    "AlgorithmNotAllowedError",
    "BadSignatureError",
    "BoundKey",
    "CacheStats",
    "ClaimMapping",
    "ForbiddenHeaderError",
    "IdentityConfig",
    "IdentityError",
    "InsecureUrlError",
    "InvalidAudienceError",
    "InvalidClaimError",
    "InvalidIssuerError",
    "IssuerConfig",
    "JwksError",
    "JwksFetcher",
    "JwksPolicy",
    "JwksSource",
    "JwksStatus",
    "KeyBindingError",
    "KeySet",
    "KeySource",
    "KeysUnavailableError",
    "MissingClaimError",
    "RejectionReason",
    "RevocationList",
    "StaticKeys",
    "TokenError",
    "TokenExpiredError",
    "TokenIssuedInFutureError",
    "TokenMalformedError",
    "TokenNotYetValidError",
    "TokenRevokedError",
    "TokenTooLargeError",
    "TokenVerifier",
    "UnknownKeyError",
    "UnsupportedCriticalHeaderError",
    "VerificationRules",
    "VerifiedToken",
    "VerifiedTokenCache",
    "WeakKeyError",
    "WrongTokenTypeError",
    "bind_jwk",
    "key_from_pem",
    "key_from_secret",
    "keyset_from_jwks",
    "load_jwks_file",
    "principal_from_token",
    "token_hash",
    "verify_token",
    "www_authenticate",
]
