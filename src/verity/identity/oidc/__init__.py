"""Browser login: an OpenID Connect relying party with server-side sessions.

    service = LoginService.from_stores(config.login, stores)
    app = build_login_app(service)            # mount: /verity/login, /callback, /logout, ...
    principal = await service.authenticate_cookie(scope["headers"])   # None: log in

Authorization code flow with PKCE (S256), ``state`` and ``nonce``; ID tokens verified by
``verity.identity.TokenVerifier``; sessions in the ``SessionStore`` behind a signed,
HttpOnly, SameSite=Lax cookie; refresh; RP-initiated and back-channel logout.
"""

from .app import build_login_app as build_login_app
from .backchannel import BACKCHANNEL_EVENT as BACKCHANNEL_EVENT
from .backchannel import LogoutRequest as LogoutRequest
from .backchannel import verify_logout_token as verify_logout_token
from .config import LoginConfig as LoginConfig
from .config import ProviderConfig as ProviderConfig
from .cookies import CookieSigner as CookieSigner
from .errors import IdTokenError as IdTokenError
from .errors import LoginError as LoginError
from .errors import LoginStateError as LoginStateError
from .errors import LogoutTokenError as LogoutTokenError
from .errors import NonceMismatchError as NonceMismatchError
from .errors import ProviderError as ProviderError
from .errors import UnknownProviderError as UnknownProviderError
from .provider import Provider as Provider
from .redirects import safe_return_url as safe_return_url
from .service import LoginService as LoginService
from .sessions import SessionManager as SessionManager

__all__ = [
    "BACKCHANNEL_EVENT",
    "CookieSigner",
    "IdTokenError",
    "LoginConfig",
    "LoginError",
    "LoginService",
    "LoginStateError",
    "LogoutRequest",
    "LogoutTokenError",
    "NonceMismatchError",
    "Provider",
    "ProviderConfig",
    "ProviderError",
    "SessionManager",
    "UnknownProviderError",
    "build_login_app",
    "safe_return_url",
    "verify_logout_token",
]
