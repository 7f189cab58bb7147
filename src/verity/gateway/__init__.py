"""The policy enforcement point: identity-aware reverse proxy and forward-auth endpoint.

    gateway = build_gateway(config.gateway, server=config.server,
                            identity=config.identity, decider=LivePolicy(path))
    uvicorn.run(gateway, ...)        # or: verity serve --config verity.yaml

See docs/gateway.md for routes, the header contract and the identity assertion.
"""

from .app import Gateway as Gateway
from .assertion import JWKS_PATH as JWKS_PATH
from .assertion import AssertionSigner as AssertionSigner
from .build import build_gateway as build_gateway
from .enforce import Decider as Decider
from .enforce import DecisionListener as DecisionListener
from .enforce import Enforcer as Enforcer
from .enforce import Outcome as Outcome
from .enforce import Verdict as Verdict
from .errors import AssertionKeyError as AssertionKeyError
from .errors import BadRequestError as BadRequestError
from .errors import GatewayError as GatewayError
from .facts import FactQuery as FactQuery
from .facts import Facts as Facts
from .facts import FactSource as FactSource
from .headers import ClientResolver as ClientResolver
from .headers import is_identity_header as is_identity_header
from .settings import AssertionConfig as AssertionConfig
from .settings import ForwardAuthConfig as ForwardAuthConfig
from .settings import GatewayConfig as GatewayConfig
from .settings import RouteConfig as RouteConfig
from .settings import TlsConfig as TlsConfig
from .settings import UpstreamPoolConfig as UpstreamPoolConfig
from .settings import WebSocketConfig as WebSocketConfig

__all__ = [
    "JWKS_PATH",
    "AssertionConfig",
    "AssertionKeyError",
    "AssertionSigner",
    "BadRequestError",
    "ClientResolver",
    "Decider",
    "DecisionListener",
    "Enforcer",
    "FactQuery",
    "FactSource",
    "Facts",
    "ForwardAuthConfig",
    "Gateway",
    "GatewayConfig",
    "GatewayError",
    "Outcome",
    "RouteConfig",
    "TlsConfig",
    "UpstreamPoolConfig",
    "Verdict",
    "WebSocketConfig",
    "build_gateway",
    "is_identity_header",
]
