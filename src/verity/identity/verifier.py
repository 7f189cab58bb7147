"""``TokenVerifier``: one issuer's tokens, verified, cached by hash, revocable.

    verifier = TokenVerifier(IssuerConfig(issuer="https://idp.example", audiences=["api"]))
    token = verifier.verify(untrusted_bearer)          # or: await verifier.averify(...)
    principal = verifier.principal(token)
    principal = await verifier.aprincipal(untrusted_bearer)  # both at once, cached

A cache hit costs a SHA-256 and a dictionary lookup. ``aprincipal``/``verify_principal``
also keep the ``Principal`` built from the token in the token's cache entry, so a hit
skips the claims -> principal mapping too; it is evicted with the token (expiry, LRU,
revocation, removed key) and served only to this verifier's rules and claim mapping.
A miss runs the pure core (``verify_token``) with the key source's keys; an unknown
``kid`` triggers one rate-limited refetch before the token is rejected.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from ..model import Principal
from .cache import RevocationList, VerifiedTokenCache
from .config import IssuerConfig
from .core import VerificationRules, VerifiedToken, token_bytes, token_hash, verify_token
from .errors import KeyBindingError, TokenError, UnknownKeyError
from .fetch import JwksFetcher
from .jwks import JwksStatus
from .keys import KeySet, key_from_secret, keyset_from_jwks
from .principal import principal_from_token
from .source import JwksSource, KeySource, StaticKeys

log = logging.getLogger("verity.identity")
Clock = Callable[[], float]


def load_jwks_file(path: Path, algorithms: tuple[str, ...]) -> KeySet:
    """The usable keys of a JWKS file. Raises ``KeyBindingError``; a weak key (short or
    ROCA RSA) in a file the operator configured refuses the whole file (``WeakKeyError``)."""
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise KeyBindingError(f"{path}: cannot read a JWK Set: {exc}") from None
    if not isinstance(document, dict):
        raise KeyBindingError(f"{path}: not a JWK Set")
    try:
        return keyset_from_jwks(document, algorithms, refuse_weak=True)
    except KeyBindingError as exc:
        raise type(exc)(f"{path}: {exc}") from None


def key_source_for(
    config: IssuerConfig, *, fetcher: JwksFetcher | None = None, clock: Clock = time.time
) -> KeySource:
    """The key source ``config`` describes: secret, JWKS file, JWKS URL or discovery."""
    if config.shared_secret is not None:
        secret = config.shared_secret.get_secret_value().encode()
        return StaticKeys(KeySet([key_from_secret(secret, config.algorithms[0])]))
    if config.jwks_file is not None:
        return StaticKeys(load_jwks_file(config.jwks_file, config.algorithms))
    return JwksSource(fetcher or JwksFetcher(config), clock=clock)


class TokenVerifier:
    """Verifies the tokens of one issuer (thread-safe; sync and async entry points)."""

    def __init__(
        self,
        config: IssuerConfig,
        *,
        keys: KeySet | KeySource | None = None,
        cache: VerifiedTokenCache | None = None,
        revocations: RevocationList | None = None,
        clock: Clock = time.time,
    ) -> None:
        """``keys`` overrides the key source of ``config``; ``cache`` may be shared."""
        self.config = config
        self.rules = VerificationRules.from_config(config)
        if isinstance(keys, KeySet):
            keys = StaticKeys(keys)
        self.source: KeySource = keys if keys is not None else key_source_for(config, clock=clock)
        if cache is None:
            cache = VerifiedTokenCache(max_entries=config.token_cache_size, clock=clock)
        self.cache = cache
        self.revocations = revocations if revocations is not None else RevocationList(clock=clock)
        self._clock = clock
        self.source.on_keys_removed(self.cache.evict_keys)

    def _core(self, data: bytes, keys: KeySet, digest: str) -> VerifiedToken:
        return verify_token(data, rules=self.rules, keys=keys, now=self._clock(), digest=digest)

    def _accept(self, token: VerifiedToken, generation: int) -> VerifiedToken:
        self.revocations.check(token, leeway=self.rules.claims.leeway)
        self.cache.put(token, scope=self.rules, generation=generation)
        return token

    def verify(self, untrusted_token: str | bytes) -> VerifiedToken:
        """Verify a bearer token; returns the ``VerifiedToken`` or raises a ``TokenError``."""
        try:
            data = token_bytes(untrusted_token, self.rules.max_token_bytes)
            digest = token_hash(data)
            hit = self.cache.get(digest, self.rules)
            return hit if hit is not None else self._miss(data, digest)
        except TokenError as exc:
            log.debug("%s (issuer %s)", exc.operator_message, self.config.issuer)
            raise

    def _miss(self, data: bytes, digest: str) -> VerifiedToken:
        generation = self.cache.generation
        keys = self.source.get_keys()
        try:
            token = self._core(data, keys, digest)
        except UnknownKeyError:
            newer = self.source.refetch(keys)
            if newer is None:
                raise
            token = self._core(data, newer, digest)
        return self._accept(token, generation)

    async def averify(self, untrusted_token: str | bytes) -> VerifiedToken:
        """Async ``verify``: the same checks; key fetches do not block the event loop."""
        try:
            data = token_bytes(untrusted_token, self.rules.max_token_bytes)
            digest = token_hash(data)
            hit = self.cache.get(digest, self.rules)
            return hit if hit is not None else await self._amiss(data, digest)
        except TokenError as exc:
            log.debug("%s (issuer %s)", exc.operator_message, self.config.issuer)
            raise

    async def _amiss(self, data: bytes, digest: str) -> VerifiedToken:
        generation = self.cache.generation
        keys = await self.source.aget_keys()
        try:
            token = self._core(data, keys, digest)
        except UnknownKeyError:
            newer = await self.source.arefetch(keys)
            if newer is None:
                raise
            token = self._core(data, newer, digest)
        return self._accept(token, generation)

    def verify_principal(self, untrusted_token: str | bytes) -> Principal:
        """``principal(verify(token))``, the principal cached with the verified token."""
        try:
            data = token_bytes(untrusted_token, self.rules.max_token_bytes)
            digest = token_hash(data)
            entry = self.cache.entry(digest, self.rules)
            if entry is None:
                return self._cache_principal(self._miss(data, digest))
        except TokenError as exc:
            log.debug("%s (issuer %s)", exc.operator_message, self.config.issuer)
            raise
        if entry.principal is not None and entry.mapping is self.config.claims:
            return entry.principal
        return self._cache_principal(entry.token)

    async def aprincipal(self, untrusted_token: str | bytes) -> Principal:
        """Async ``verify_principal``: the principal of a bearer token, from the cache
        when its token is cached (same checks as ``averify``, then ``principal``)."""
        try:
            data = token_bytes(untrusted_token, self.rules.max_token_bytes)
            digest = token_hash(data)
            entry = self.cache.entry(digest, self.rules)
            if entry is None:
                return self._cache_principal(await self._amiss(data, digest))
        except TokenError as exc:
            log.debug("%s (issuer %s)", exc.operator_message, self.config.issuer)
            raise
        if entry.principal is not None and entry.mapping is self.config.claims:
            return entry.principal
        return self._cache_principal(entry.token)

    def _cache_principal(self, token: VerifiedToken) -> Principal:
        mapping = self.config.claims
        principal = principal_from_token(token, mapping)  # MissingClaimError: not cached
        self.cache.attach(token, principal, scope=self.rules, mapping=mapping)
        return principal

    def principal(self, token: VerifiedToken) -> Principal:
        """The ``Principal`` for a verified token, per this issuer's claim mapping."""
        return principal_from_token(token, self.config.claims)

    def revoke(
        self,
        *,
        token_hash: str | None = None,
        jti: str | None = None,
        subject: str | None = None,
        revoked_at: float | None = None,
        until: float | None = None,
    ) -> int:
        """Revoke by token hash, ``jti`` or subject: evicted from the cache at once and
        rejected on later verification. Returns the number of cache entries evicted.

        ``token_hash`` is the SHA-256 hex of the token's JWS signing input
        (``header.payload``; ``VerifiedToken.signing_input_hash``,
        ``verity.identity.core.signing_input_hash``): every token with that header and
        payload is revoked, whatever its signature. The SHA-256 of a whole token
        (``VerifiedToken.token_hash``) revokes only that exact token string.

        A subject's tokens issued at or before ``revoked_at`` (default now) plus this
        issuer's ``leeway_seconds`` are revoked (an issuer's clock may run that far
        ahead); the revocation is remembered until ``until`` (default: the
        ``RevocationList``'s ttl). A revocation read from the shared store passes both
        of its own times."""
        self.revocations.add(
            token_hash=token_hash, jti=jti, subject=subject, revoked_at=revoked_at, until=until
        )
        if until is not None and until <= self._clock():
            return 0
        issued_before = (self._clock() if revoked_at is None else revoked_at) + (
            self.rules.claims.leeway
        )
        return self.cache.revoke(
            token_hash=token_hash, jti=jti, subject=subject, issued_before=issued_before
        )

    def jwks_status(self) -> JwksStatus | None:
        """The key source's fetch state (``stale``, counters), or ``None`` for fixed keys."""
        return self.source.status()
