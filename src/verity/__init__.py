"""Verity: a zero-trust access platform.

The public facade: the values that flow through Verity, its errors, and the policy
engine. Everything else is reached through its package (``verity.policy``, ...).
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from .errors import CelError as CelError
from .errors import ConfigError as ConfigError
from .errors import PolicyError as PolicyError
from .errors import PolicyLoadError as PolicyLoadError
from .errors import Problem as Problem
from .errors import RequestError as RequestError
from .errors import VerityError as VerityError
from .model import AccessRequest as AccessRequest
from .model import Decision as Decision
from .model import Device as Device
from .model import Effect as Effect
from .model import HttpTarget as HttpTarget
from .model import NetworkContext as NetworkContext
from .model import Obligation as Obligation
from .model import ObligationKind as ObligationKind
from .model import Principal as Principal
from .model import PrincipalKind as PrincipalKind
from .model import Reason as Reason
from .model import Remedy as Remedy
from .model import Resource as Resource
from .policy import Engine as Engine
from .policy import LivePolicy as LivePolicy
from .policy import compile_policy as compile_policy
from .policy import load_policy as load_policy
from .policy import load_policy_file as load_policy_file

try:
    __version__ = _version("verity")
except _PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "AccessRequest",
    "CelError",
    "ConfigError",
    "Decision",
    "Device",
    "Effect",
    "Engine",
    "HttpTarget",
    "LivePolicy",
    "NetworkContext",
    "Obligation",
    "ObligationKind",
    "PolicyError",
    "PolicyLoadError",
    "Principal",
    "PrincipalKind",
    "Problem",
    "Reason",
    "Remedy",
    "RequestError",
    "Resource",
    "VerityError",
    "__version__",
    "compile_policy",
    "load_policy",
    "load_policy_file",
]
