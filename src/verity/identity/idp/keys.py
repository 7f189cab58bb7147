"""Signing keys with rotation and overlap, kept in the store's ``KeyStore``.

Each version of the key ``policy.key_name`` is a PKCS#8 PEM private key. Timeline of a
version ``v`` created at ``c``:

- published in the JWKS from ``c`` (verifiers can learn it before it is used);
- signs from ``c + publish_before_use`` (the very first version signs at once) until a
  newer version starts signing;
- stays in the JWKS until ``retire_after`` seconds after its successor started signing,
  so that every token it signed expires before verifiers forget the key.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization

from ...store.protocols import KeyStore
from ...store.records import KeyVersion
from ..dev import PrivateKey, generate_private_key, public_jwk
from .config import SigningKeyPolicy

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class ActiveKey:
    """The key that signs now."""

    private: PrivateKey
    algorithm: str
    kid: str


class SigningKeys:
    """The provider's signing keys: current signer, published JWKS, rotation."""

    def __init__(
        self,
        store: KeyStore,
        *,
        policy: SigningKeyPolicy,
        retire_after: float,
        clock: Clock = time.time,
    ) -> None:
        """``retire_after``: the longest token lifetime plus verifiers' leeway."""
        self._store = store
        self._policy = policy
        self._retire_after = retire_after
        self._clock = clock
        self._lock = threading.Lock()
        self._loaded: dict[int, tuple[PrivateKey, dict[str, Any]]] = {}

    def _activation(self, version: KeyVersion, first: int) -> float:
        if version.version == first:
            return version.created
        return version.created + self._policy.publish_before_use_seconds

    def _load(self, version: KeyVersion) -> tuple[PrivateKey, dict[str, Any]]:
        with self._lock:
            cached = self._loaded.get(version.version)
            if cached is None:
                key = serialization.load_pem_private_key(version.material, password=None)
                private: PrivateKey = key  # type: ignore[assignment]
                cached = (private, public_jwk(private, version.algorithm))
                self._loaded[version.version] = cached
        return cached

    def rotate(self, *, now: float | None = None) -> str:
        """Create a new version now (published at once, signing after the lead time).

        Returns its ``kid``."""
        alg = self._policy.algorithm
        key = generate_private_key(alg)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        at = self._clock() if now is None else now
        version = self._store.put(self._policy.key_name, pem, algorithm=alg, now=at)
        return str(self._load(version)[1]["kid"])

    def ensure(self) -> None:
        """Create the first key, or a new one when the newest is older than the rotation age."""
        newest = self._store.get(self._policy.key_name)
        now = self._clock()
        if newest is None or now - newest.created >= self._policy.rotate_after_seconds:
            self.rotate(now=now)

    def _versions(self) -> list[KeyVersion]:
        versions = self._store.versions(self._policy.key_name)
        if not versions:
            self.ensure()
            versions = self._store.versions(self._policy.key_name)
        return versions

    def signer(self) -> ActiveKey:
        """The key to sign with now: the newest version whose activation time has come."""
        versions = self._versions()
        first = versions[0].version
        now = self._clock()
        chosen = versions[0]
        for version in versions:
            if self._activation(version, first) <= now:
                chosen = version
        private, jwk = self._load(chosen)
        return ActiveKey(private, chosen.algorithm, str(jwk["kid"]))

    def jwks(self) -> dict[str, Any]:
        """The public JWK Set: every version not yet retired (newest first)."""
        versions = self._versions()
        first = versions[0].version
        now = self._clock()
        published: list[dict[str, Any]] = []
        for index, version in enumerate(versions):
            successors = versions[index + 1 :]
            retired = any(
                self._activation(s, first) <= now
                and now >= self._activation(s, first) + self._retire_after
                for s in successors
            )
            if not retired:
                published.append(dict(self._load(version)[1]))
        return {"keys": list(reversed(published))}
