"""Shared setup of the middleware tests: the example apps, a test issuer and its tokens."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from verity.identity import IssuerConfig, TokenVerifier, keyset_from_jwks
from verity.identity.dev import generate_private_key, mint, public_jwk
from verity.policy import compile_policy, load_policy_file

APPS = Path(__file__).resolve().parents[2] / "examples" / "apps"
ISSUER, AUDIENCE, GATEWAY = "https://dev.local", "invoices", "https://gateway.test"
KEY = generate_private_key("ES256")
ENGINE = compile_policy(load_policy_file(APPS / "invoices.policy.yaml"))


def example(name: str) -> ModuleType:
    """Import examples/apps/<name>.py (not an installed package)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, APPS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def verifier(audience: str = AUDIENCE) -> TokenVerifier:
    """A verifier of this module's test issuer (key ``KEY``) for ``audience``."""
    jwks = {"keys": [public_jwk(KEY, "ES256", "k1")]}
    config = IssuerConfig(issuer=ISSUER, audiences=[audience], algorithms=("ES256",))
    return TokenVerifier(config, keys=keyset_from_jwks(jwks, ("ES256",)))


def token(subject: str = "alice", *, roles: tuple[str, ...] = (), **options: Any) -> str:
    claims = {"roles": list(roles), "groups": ["employees"]}
    options = {"issuer": ISSUER, "audience": AUDIENCE, **options}
    return mint(KEY, alg="ES256", kid="k1", subject=subject, claims=claims, **options)


def auth(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}
