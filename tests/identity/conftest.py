"""Keys, token forging helpers and a controllable clock for the identity tests."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import get_default_algorithms

from verity.identity import (
    IssuerConfig,
    KeySet,
    TokenError,
    TokenVerifier,
    VerifiedToken,
    keyset_from_jwks,
)
from verity.identity.dev import public_jwk

ISSUER = "https://idp.example"
AUDIENCE = "api://verity"
NOW = 1_800_000_000.0
ASYMMETRIC = ("RS256", "ES256", "EdDSA")


class Clock:
    """A settable clock (UNIX seconds)."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class SigningKey:
    """A private key, its algorithm and key id, and its public JWK."""

    private: Any
    alg: str
    kid: str

    @property
    def jwk(self) -> dict[str, Any]:
        return public_jwk(self.private, self.alg, self.kid)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: Any) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid claims at NOW; ``None`` values remove a claim."""
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": int(NOW),
        "exp": int(NOW) + 300,
        "jti": "jti-1",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: SigningKey, payload: dict[str, Any] | None = None, **header: Any) -> str:
    """A token signed by PyJWT's JWS layer (so claims may be anything), with ``kid`` and
    ``typ`` set; header overrides apply and ``None`` removes a header."""
    headers: dict[str, Any] = {"kid": key.kid, "typ": "JWT", **header}
    headers = {k: v for k, v in headers.items() if v is not None}
    if "typ" not in headers:
        headers["typ"] = None  # PyJWT adds typ=JWT otherwise
    body = json.dumps(claims() if payload is None else payload).encode()
    return jwt.api_jws.encode(body, key.private, algorithm=key.alg, headers=headers)


def forge(
    header: dict[str, Any],
    payload: dict[str, Any] | None = None,
    signer: Callable[[bytes], bytes] | None = None,
) -> str:
    """A token built by hand (any header, any alg), signed by ``signer`` or unsigned."""
    signing_input = f"{b64json(header)}.{b64json(payload or claims())}".encode()
    signature = signer(signing_input) if signer else b""
    return f"{signing_input.decode()}.{b64(signature)}"


def signer_for(key: SigningKey, alg: str | None = None) -> Callable[[bytes], bytes]:
    implementation = get_default_algorithms()[alg or key.alg]
    return lambda data: implementation.sign(data, key.private)


@pytest.fixture(scope="session")
def rsa_key() -> SigningKey:
    return SigningKey(
        rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256", "rsa-1"
    )


@pytest.fixture(scope="session")
def ec_key() -> SigningKey:
    return SigningKey(ec.generate_private_key(ec.SECP256R1()), "ES256", "ec-1")


@pytest.fixture(scope="session")
def ed_key() -> SigningKey:
    return SigningKey(ed25519.Ed25519PrivateKey.generate(), "EdDSA", "ed-1")


@pytest.fixture(scope="session")
def attacker_key() -> SigningKey:
    return SigningKey(
        rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256", "rsa-1"
    )


@pytest.fixture
def signing_keys(rsa_key: SigningKey, ec_key: SigningKey, ed_key: SigningKey) -> list[SigningKey]:
    return [rsa_key, ec_key, ed_key]


@pytest.fixture
def keyset(signing_keys: list[SigningKey]) -> KeySet:
    return keyset_from_jwks({"keys": [k.jwk for k in signing_keys]}, ASYMMETRIC)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_config(**overrides: Any) -> IssuerConfig:
    settings: dict[str, Any] = {"issuer": ISSUER, "audiences": [AUDIENCE], "algorithms": ASYMMETRIC}
    settings.update(overrides)
    return IssuerConfig(**settings)


@pytest.fixture
def verifier(keyset: KeySet, clock: Clock) -> TokenVerifier:
    return TokenVerifier(make_config(), keys=keyset, clock=clock)


def rejects(verifier: TokenVerifier, token: str, error: type[TokenError]) -> TokenError:
    """Assert that ``token`` is rejected with exactly ``error`` and that no message leaks it."""
    with pytest.raises(TokenError) as caught:
        verifier.verify(token)
    exc = caught.value
    assert type(exc) is error, f"expected {error.__name__}, got {type(exc).__name__}: {exc}"
    signature = token.rsplit(".", 1)[-1]
    for text in (str(exc), exc.detail, exc.operator_message, exc.public_message):
        assert len(token) < 16 or token not in text
        assert len(signature) < 16 or signature not in text
    assert len(exc.public_message) < 80
    return exc


def accepts(verifier: TokenVerifier, token: str) -> VerifiedToken:
    return verifier.verify(token)
