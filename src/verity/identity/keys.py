"""Verification keys, each bound to exactly one algorithm (RFC 8725 2.1 / 3.1).

A ``BoundKey`` is a public key (or an HMAC secret from configuration) with the single
algorithm it may verify. The algorithm comes from the JWK's ``alg`` or, when absent, is
inferred from the key type among the issuer's allowed algorithms; two candidates is an
ambiguity and the key is refused. A ``KeySet`` is an immutable ``kid`` -> key mapping;
``kid`` from a token is only ever a dictionary key here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import Algorithm as JwsAlgorithm
from jwt.algorithms import get_default_algorithms
from jwt.api_jwk import PyJWK
from jwt.exceptions import PyJWTError

from ._jose import MAX_KID_LENGTH
from .config import HMAC_ALGORITHMS
from .errors import (
    AlgorithmNotAllowedError,
    KeyBindingError,
    UnknownKeyError,
    WeakKeyError,
    shown,
)
from .roca import has_roca_fingerprint

log = logging.getLogger("verity.identity")

MIN_RSA_BITS = 2048
_IMPLEMENTATIONS = get_default_algorithms()
# (kty, allowed curves or None) for each asymmetric algorithm.
_KEY_FAMILY: dict[str, tuple[str, frozenset[str] | None]] = {
    **{alg: ("RSA", None) for alg in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")},
    "ES256": ("EC", frozenset({"P-256"})),
    "ES384": ("EC", frozenset({"P-384"})),
    "ES512": ("EC", frozenset({"P-521"})),  # P-521, not 512: RFC 7518 3.4
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
}
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


@dataclass(frozen=True, slots=True)
class BoundKey:
    """A verification key and the one algorithm it verifies."""

    kid: str | None
    algorithm: str
    key: Any = field(repr=False)
    implementation: JwsAlgorithm = field(repr=False, compare=False)

    def verify(self, signing_input: bytes, signature: bytes) -> bool:
        """Check ``signature`` over ``signing_input`` (PyJWT + cryptography do the math)."""
        return bool(self.implementation.verify(signing_input, self.key, signature))


class KeySet:
    """An immutable set of bound keys, looked up by ``kid``."""

    __slots__ = ("_anonymous", "_by_kid", "_keys")

    def __init__(self, keys: Iterable[BoundKey] = ()) -> None:
        self._keys = tuple(keys)
        self._by_kid: dict[str, BoundKey] = {}
        for key in self._keys:
            if key.kid is not None:
                if key.kid in self._by_kid:
                    raise KeyBindingError(f"two keys share kid {key.kid!r}")
                self._by_kid[key.kid] = key
        self._anonymous = tuple(key for key in self._keys if key.kid is None)

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[BoundKey]:
        return iter(self._keys)

    def __repr__(self) -> str:
        return f"KeySet({[(k.kid, k.algorithm) for k in self._keys]!r})"

    @property
    def kids(self) -> frozenset[str | None]:
        """The key ids in the set (``None`` for keys without one)."""
        return frozenset(key.kid for key in self._keys)

    def select(self, untrusted_kid: str | None, alg: str, token_hash: str | None) -> BoundKey:
        """The key for a token's ``kid`` and (already allowed) ``alg``.

        A known ``kid`` must be bound to ``alg``. A token without a known ``kid`` gets a
        key only when exactly one candidate fits: with no ``kid``, any key bound to
        ``alg``; with an unknown ``kid``, a kid-less configured key bound to ``alg``.
        """
        if untrusted_kid is not None:
            key = self._by_kid.get(untrusted_kid)
            if key is not None:
                if key.algorithm != alg:
                    raise AlgorithmNotAllowedError(
                        f"key {key.kid!r} is bound to {key.algorithm}, token says {shown(alg)}",
                        token_hash=token_hash,
                    )
                return key
        pool = self._anonymous if untrusted_kid is not None else self._keys
        candidates = [key for key in pool if key.algorithm == alg]
        if len(candidates) == 1:
            return candidates[0]
        what = f"kid {shown(untrusted_kid)}" if untrusted_kid is not None else "a token without kid"
        raise UnknownKeyError(
            f"no single trusted {alg} key for {what} ({len(candidates)} candidates, "
            f"{len(self._keys)} keys)",
            token_hash=token_hash,
        )


def _fits(alg: str, kty: object, crv: object) -> bool:
    family = _KEY_FAMILY.get(alg)
    if family is None:
        return False
    want_kty, curves = family
    return kty == want_kty and (curves is None or crv in curves)


def _infer_algorithm(kty: object, crv: object, allowed: Sequence[str]) -> str:
    candidates = [alg for alg in allowed if _fits(alg, kty, crv)]
    if len(candidates) != 1:
        problem = "ambiguous between " + ", ".join(candidates) if candidates else "not usable with"
        raise KeyBindingError(
            f"key without 'alg' (kty {shown(kty)}) is {problem} the allowed algorithms; "
            "publish 'alg' in the JWK or allow one algorithm per key type"
        )
    return candidates[0]


def _check_family(alg: str, kty: object, crv: object) -> None:
    if not _fits(alg, kty, crv):
        raise KeyBindingError(f"{alg} cannot be used with a {shown(kty)}/{shown(crv)} key")


def _check_strength(key: Any, kid: object) -> None:
    """Refuse RSA keys that are too short or factorable (ROCA, CVE-2017-15361)."""
    if not isinstance(key, rsa.RSAPublicKey):
        return
    if key.key_size < MIN_RSA_BITS:
        raise WeakKeyError(f"RSA key {shown(kid)} has {key.key_size} bits (< {MIN_RSA_BITS})")
    if has_roca_fingerprint(key.public_numbers().n):
        raise WeakKeyError(
            f"RSA key {shown(kid)} has the ROCA fingerprint (CVE-2017-15361: generated by a "
            "vulnerable Infineon library, its private key can be computed); replace the key"
        )


def bind_jwk(jwk: Mapping[str, Any], allowed: Sequence[str]) -> BoundKey:
    """Bind one public JWK to its single algorithm among ``allowed``.

    Raises ``KeyBindingError`` for symmetric or private keys, keys not meant for
    signatures, unsupported or mismatched types, ambiguity and weak RSA keys.
    """
    kty, crv, kid = jwk.get("kty"), jwk.get("crv"), jwk.get("kid")
    if kty == "oct" or _PRIVATE_MEMBERS & set(jwk):
        raise KeyBindingError(f"key {shown(kid)}: secret or private key material in a JWKS")
    if jwk.get("use", "sig") != "sig":
        raise KeyBindingError(f"key {shown(kid)}: 'use' is not 'sig'")
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        raise KeyBindingError(f"key {shown(kid)}: 'key_ops' does not allow 'verify'")
    if kid is not None and (not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_LENGTH):
        raise KeyBindingError(f"key {shown(kid)}: 'kid' must be a short string")
    alg = jwk.get("alg")
    if alg is None:
        alg = _infer_algorithm(kty, crv, allowed)
    elif alg not in allowed:
        raise KeyBindingError(f"key {shown(kid)}: alg {shown(alg)} is not allowed")
    _check_family(alg, kty, crv)
    try:
        key = PyJWK(dict(jwk), algorithm=alg).key
    except PyJWTError as exc:
        raise KeyBindingError(f"key {shown(kid)}: {exc}") from None
    _check_strength(key, kid)
    return BoundKey(kid, alg, key, _IMPLEMENTATIONS[alg])


def keyset_from_jwks(
    document: Mapping[str, Any], allowed: Sequence[str], *, refuse_weak: bool = False
) -> KeySet:
    """The usable keys of a JWK Set; unusable or duplicate-``kid`` keys are skipped (logged).

    A weak key (short or ROCA RSA) is skipped with an error logged, so one bad key an IdP
    publishes cannot stop its other keys from verifying; with ``refuse_weak`` (a key set
    the operator configured) it refuses the whole set instead (``WeakKeyError``).
    Raises ``KeyBindingError`` when the document is not a JWK Set or no key is usable.
    """
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise KeyBindingError("not a JWK Set (no 'keys' list)")
    bound: list[BoundKey] = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            log.warning("JWKS entry skipped: not an object")
            continue
        try:
            bound.append(bind_jwk(entry, allowed))
        except WeakKeyError as exc:
            if refuse_weak:
                raise
            log.error("JWKS key refused and skipped: %s", exc)  # noqa: TRY400 - no traceback
        except KeyBindingError as exc:
            log.warning("JWKS key skipped: %s", exc)
    kid_counts: dict[str | None, int] = {}
    for key in bound:
        kid_counts[key.kid] = kid_counts.get(key.kid, 0) + 1
    unique = [key for key in bound if key.kid is None or kid_counts[key.kid] == 1]
    if len(unique) != len(bound):
        log.warning("JWKS keys with a duplicated kid skipped (ambiguous)")
    if not unique:
        raise KeyBindingError("the JWK Set has no usable key for the allowed algorithms")
    return KeySet(unique)


def key_from_pem(
    pem: bytes, allowed: Sequence[str], *, kid: str | None = None, algorithm: str | None = None
) -> BoundKey:
    """Bind a PEM public key (``algorithm`` given, or inferred from ``allowed``)."""
    try:
        public = load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise KeyBindingError(f"not a PEM public key: {exc}") from None
    kty, crv = _kty_crv(public)
    alg = algorithm or _infer_algorithm(kty, crv, allowed)
    if alg not in allowed:
        raise KeyBindingError(f"alg {alg!r} is not allowed")
    _check_family(alg, kty, crv)
    _check_strength(public, kid)
    return BoundKey(kid, alg, public, _IMPLEMENTATIONS[alg])


def _kty_crv(public: Any) -> tuple[str, str | None]:
    if isinstance(public, rsa.RSAPublicKey):
        return "RSA", None
    if isinstance(public, ec.EllipticCurvePublicKey):
        names = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
        return "EC", names.get(public.curve.name, public.curve.name)
    if isinstance(public, ed25519.Ed25519PublicKey):
        return "OKP", "Ed25519"
    if isinstance(public, ed448.Ed448PublicKey):
        return "OKP", "Ed448"
    raise KeyBindingError(f"unsupported public key type {type(public).__name__}")


def key_from_secret(secret: bytes, algorithm: str) -> BoundKey:
    """Bind an HMAC secret from configuration (never from a JWKS) to one HS algorithm."""
    if algorithm not in HMAC_ALGORITHMS:
        raise KeyBindingError(f"{algorithm!r} is not an HMAC algorithm")
    implementation = _IMPLEMENTATIONS[algorithm]
    try:
        prepared = implementation.prepare_key(secret)
    except PyJWTError as exc:
        raise KeyBindingError(f"unusable HMAC secret: {exc}") from None
    if implementation.check_key_length(prepared):
        raise KeyBindingError(f"the HMAC secret is too short for {algorithm}")
    return BoundKey(None, algorithm, prepared, implementation)
