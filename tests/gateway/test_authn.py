"""The gateway's authentication: one well-formed Bearer credential, verified by the issuer
it names (and only one the route accepts), else a session from an accepted issuer, else
anonymous; the principal is cached with the verified token, and a revocation still
refuses the token on the very next request."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from verity.gateway import authn
from verity.gateway.authn import (
    Authenticator,
    MalformedCredentialsError,
    SessionIssuerNotAcceptedError,
    bearer_token,
)
from verity.identity import (
    InvalidIssuerError,
    IssuerConfig,
    TokenError,
    TokenMalformedError,
    TokenTooLargeError,
    TokenVerifier,
    keyset_from_jwks,
)
from verity.identity.dev import generate_private_key, mint, public_jwk
from verity.model import Principal

from .conftest import Issuer, MakeGateway, RecordingUpstream, bearer

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("by", ["jti", "token_hash"])
async def test_a_revoked_token_is_refused_on_the_next_request_though_its_principal_was_cached(
    make_gateway: MakeGateway, issuer: Issuer, upstream: RecordingUpstream, by: str
) -> None:
    jti = f"revoke-{uuid.uuid4().hex}"  # the issuer is shared: revoke only this token
    token = issuer.token("carol", jti=jti)
    transport = httpx.ASGITransport(app=make_gateway())
    async with httpx.AsyncClient(transport=transport) as client:
        for _ in range(2):  # the second request is served from the cached principal
            response = await client.get("http://app.test/", headers=bearer(token))
            assert response.status_code == 200
        cached = issuer.verifier.cache.entry(issuer.verifier.verify(token).token_hash,
                                             issuer.verifier.rules)  # fmt: skip
        assert cached is not None
        assert cached.principal is not None
        assert cached.principal.id == "carol"
        key = jti if by == "jti" else issuer.verifier.verify(token).signing_input_hash
        issuer.verifier.revoke(**{by: key})
        refused = await client.get("http://app.test/", headers=bearer(token))
    assert refused.status_code == 401
    assert len(upstream.seen) == 2


# --- bearer_token: one well-formed Bearer credential, or a 401-class error ---------------


def test_no_authorization_header_is_no_token() -> None:
    assert bearer_token([(b"cookie", b"session=x")]) is None


@pytest.mark.parametrize(
    ("value", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("BEARER abc", "abc"),
        ("  Bearer   abc  ", "abc"),
        ("Bearer Az09-._~+/==", "Az09-._~+/=="),
        ("Bearer a.b.c", "a.b.c"),
    ],
)
def test_a_well_formed_bearer_credential_is_its_token(value: str, token: str) -> None:
    assert bearer_token([(b"authorization", value.encode())]) == token


@pytest.mark.parametrize(
    "value",
    [
        "Basic YWxpY2U6cHc=",  # another scheme
        "Bearerabc",  # no space
        "Bearer",  # no credentials
        "Bearer ",  # blank credentials
        "Bearer a b",  # two credentials
        "Bearer a=b",  # padding inside the token
        "Bearer =abc",  # padding only at the end
        "Bearer abc\x7f",  # a byte outside token68
        "Bearer ab,c",
        "Token abc",
    ],
)
def test_a_malformed_authorization_header_is_a_token_error(value: str) -> None:
    with pytest.raises(MalformedCredentialsError) as caught:
        bearer_token([(b"authorization", value.encode("latin-1"))])
    assert isinstance(caught.value, TokenError)  # a 401, never a 500
    assert caught.value.public_message == "The Authorization header must be one Bearer token."
    assert caught.value.detail == "Authorization is not 'Bearer <token68>'"


def test_two_authorization_headers_are_refused_even_if_both_are_well_formed() -> None:
    raw = [(b"authorization", b"Bearer abc"), (b"authorization", b"Bearer abc")]
    with pytest.raises(MalformedCredentialsError) as caught:
        bearer_token(raw)
    assert caught.value.detail == "more than one Authorization header"


# --- Authenticator: which verifier checks a token, and sessions ------------------------

CORP, PARTNER = "https://corp.test", "https://partner.test"


@dataclass
class Idp:
    """An issuer with its own key and verifier (token size cap ``cap``)."""

    issuer: str
    cap: int = 8192
    key: Any = field(default_factory=lambda: generate_private_key("ES256"))
    verifier: TokenVerifier = field(init=False)

    def __post_init__(self) -> None:
        jwks = {"keys": [public_jwk(self.key, "ES256", "k1")]}
        config = IssuerConfig(
            issuer=self.issuer, audiences=["v"], algorithms=("ES256",), max_token_bytes=self.cap
        )
        self.verifier = TokenVerifier(config, keys=keyset_from_jwks(jwks, ("ES256",)))

    def token(self, subject: str, issuer: str | None = None, **claims: Any) -> str:
        return mint(self.key, alg="ES256", kid="k1", issuer=issuer or self.issuer,
                    audience="v", subject=subject, claims=claims)  # fmt: skip


@pytest.fixture(scope="module")
def corp() -> Idp:
    return Idp(CORP)


@pytest.fixture(scope="module")
def partner() -> Idp:
    return Idp(PARTNER, cap=1024)


def headers_for(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {token}".encode())]


def unsigned(payload: bytes) -> str:
    """A three-part token whose payload segment is ``payload`` (no valid signature)."""
    segment = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    return f"eyJhbGciOiJFUzI1NiJ9.{segment}.c2ln"


async def test_each_token_is_verified_by_the_issuer_it_names(corp: Idp, partner: Idp) -> None:
    authenticator = Authenticator([corp.verifier, partner.verifier])
    assert (await authenticator.authenticate(headers_for(corp.token("carol")))).id == "carol"
    assert (await authenticator.authenticate(headers_for(partner.token("pat")))).id == "pat"


async def test_a_token_naming_another_issuer_is_refused_by_that_issuers_keys(
    corp: Idp, partner: Idp
) -> None:
    """Partner's key signing a token that claims corp's ``iss``: corp's verifier checks it
    and its signature fails."""
    forged = partner.token("mallory", issuer=CORP)
    with pytest.raises(TokenError) as caught:
        await Authenticator([corp.verifier, partner.verifier]).authenticate(headers_for(forged))
    assert not isinstance(caught.value, InvalidIssuerError)


async def test_a_token_from_an_unconfigured_issuer_is_refused(corp: Idp, partner: Idp) -> None:
    stranger = Idp("https://stranger.test")
    with pytest.raises(InvalidIssuerError) as caught:
        await Authenticator([corp.verifier, partner.verifier]).authenticate(
            headers_for(stranger.token("sam"))
        )
    assert caught.value.detail == "'iss' is not an issuer accepted on this route"


@pytest.mark.parametrize("verifiers", [1, 2])
async def test_a_route_accepts_only_its_issuers_tokens(
    corp: Idp, partner: Idp, verifiers: int
) -> None:
    authenticator = Authenticator([corp.verifier, partner.verifier][:verifiers])
    token = headers_for(corp.token("carol"))
    assert (await authenticator.authenticate(token, (CORP,))).id == "carol"
    with pytest.raises(InvalidIssuerError):
        await authenticator.authenticate(token, (PARTNER,))


async def test_one_issuer_without_a_route_limit_verifies_every_token_itself(corp: Idp) -> None:
    """No readable ``iss`` is still the one verifier's to reject, with its own error."""
    authenticator = Authenticator([corp.verifier])
    with pytest.raises(TokenError) as caught:
        await authenticator.authenticate(headers_for("not-a-jwt"))
    assert caught.value.detail != "no readable 'iss' claim to choose a verifier"


@pytest.mark.parametrize(
    "token",
    [
        "a.b",  # two parts
        "a.b.c.d",  # four parts
        unsigned(b"{not json"),
        unsigned(b"\xff\xfe"),  # not UTF-8
        unsigned(b'["https://corp.test"]'),  # not an object
        unsigned(b'{"iss": 7}'),  # iss not a string
        unsigned(b'{"sub": "x"}'),  # no iss
        unsigned(b"[" * 5000),  # nested too deep for the JSON parser
        "eyJhbGciOiJFUzI1NiJ9.abcde.c2ln",  # not base64url (5 characters)
    ],
)
async def test_a_token_without_a_readable_issuer_is_a_token_error_with_several_issuers(
    corp: Idp, partner: Idp, token: str
) -> None:
    with pytest.raises(TokenMalformedError) as caught:
        await Authenticator([corp.verifier, partner.verifier]).authenticate(headers_for(token))
    assert caught.value.detail == "no readable 'iss' claim to choose a verifier"


@pytest.mark.parametrize("pad", ["", "x", "xx", "xxx"])
async def test_the_issuer_is_read_whatever_the_payload_segments_length(
    corp: Idp, partner: Idp, pad: str
) -> None:
    """A payload segment of any length (0, 2 or 3 modulo 4) is decoded, so the token
    reaches its issuer's verifier (and fails there, on its signature)."""
    token = unsigned(json.dumps({"iss": "https://stranger.test", "p": pad}).encode())
    with pytest.raises(InvalidIssuerError):
        await Authenticator([corp.verifier, partner.verifier]).authenticate(headers_for(token))


async def test_no_configured_issuer_refuses_every_token() -> None:
    with pytest.raises(InvalidIssuerError) as caught:
        await Authenticator([]).authenticate(headers_for("a.b.c"))
    assert caught.value.detail == "no token issuers are configured"


async def test_a_token_over_every_issuers_cap_is_refused_before_parsing(
    corp: Idp, partner: Idp
) -> None:
    """The largest cap (corp's 8192) bounds every token; a token of exactly that many
    bytes is parsed, one more byte is refused unread."""
    authenticator = Authenticator([partner.verifier, corp.verifier])
    with pytest.raises(TokenTooLargeError):
        await authenticator.authenticate(headers_for("a" * 8193))
    with pytest.raises(TokenMalformedError):  # read, so no readable iss
        await authenticator.authenticate(headers_for("a" * 8192))


async def test_a_bearer_token_wins_over_a_session(corp: Idp) -> None:
    async def session(_raw: Any) -> Principal:
        return Principal(id="session-user", claims={"iss": CORP})

    authenticator = Authenticator([corp.verifier], sessions=session)
    raw = [*headers_for(corp.token("carol")), (b"cookie", b"session=x")]
    assert (await authenticator.authenticate(raw)).id == "carol"
    assert (await authenticator.authenticate([(b"cookie", b"session=x")])).id == "session-user"


async def test_no_token_and_no_session_is_anonymous(corp: Idp) -> None:
    async def no_session(_raw: Any) -> None:
        return None

    for authenticator in (Authenticator([corp.verifier]),
                          Authenticator([corp.verifier], sessions=no_session)):  # fmt: skip
        principal = await authenticator.authenticate([], (CORP,))
        assert not principal.authenticated
        assert principal == Principal.anonymous()


@pytest.mark.parametrize(
    ("claims", "accepted", "refused"),
    [
        ({"iss": CORP}, (CORP,), False),
        ({"iss": CORP}, (), False),
        ({"iss": PARTNER}, (CORP,), True),
        ({"iss": 7}, (CORP,), True),  # not a string: unknown, refused
        ({}, (CORP,), True),
    ],
)
async def test_a_session_from_an_issuer_the_route_leaves_out_is_refused_naming_it(
    claims: dict[str, Any], accepted: tuple[str, ...], refused: bool
) -> None:
    principal = Principal(id="alice", claims=claims)

    async def session(_raw: Any) -> Principal:
        return principal

    authenticator = Authenticator([], sessions=session)
    if not refused:
        assert await authenticator.authenticate([], accepted) is principal
        return
    with pytest.raises(SessionIssuerNotAcceptedError) as caught:
        await authenticator.authenticate([], accepted)
    assert caught.value.principal is principal
    issuer = claims.get("iss")
    assert caught.value.issuer == (issuer if isinstance(issuer, str) else None)
    assert not isinstance(caught.value, TokenError)  # a 403 with a hint, not a 401


def test_the_session_authenticator_is_a_keyword_argument_only(corp: Idp) -> None:
    async def session(_raw: Any) -> None:
        return None

    with pytest.raises(TypeError):
        Authenticator([corp.verifier], session)  # type: ignore[misc]
    assert Authenticator([corp.verifier], sessions=session).sessions is session


def test_a_refused_session_says_which_issuer() -> None:
    error = SessionIssuerNotAcceptedError(Principal(id="alice"), "https://partner.test")
    assert str(error) == "session issuer 'https://partner.test' is not accepted on this route"


def test_all_names_the_modules_public_namespace() -> None:
    public = {name for name in vars(authn) if not name.startswith("_")}
    assert set(authn.__all__) <= public
    assert {"Authenticator", "MalformedCredentialsError", "SessionAuthenticator",
            "SessionIssuerNotAcceptedError", "TokenError", "bearer_token"} == set(authn.__all__)  # fmt: skip
