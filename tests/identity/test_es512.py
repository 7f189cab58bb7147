"""ES512 (ECDSA P-521 + SHA-512, RFC 7518 3.4): keys from a JWKS served over HTTP, from
PEM and from a JWKS file, verification, algorithm pinning, and ``verity token``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

from verity.cli.token import app
from verity.identity import (
    AlgorithmNotAllowedError,
    BadSignatureError,
    IssuerConfig,
    KeyBindingError,
    KeySet,
    TokenVerifier,
    bind_jwk,
    key_from_pem,
    keyset_from_jwks,
    load_jwks_file,
)
from verity.identity.dev import default_algorithm, generate_private_key

from .conftest import (
    ASYMMETRIC,
    AUDIENCE,
    ISSUER,
    Clock,
    SigningKey,
    claims,
    forge,
    make_config,
    rejects,
    sign,
    signer_for,
)
from .idp_server import IdP

ES512 = (*ASYMMETRIC, "ES512")


@pytest.fixture(scope="module")
def p521_key() -> SigningKey:
    return SigningKey(ec.generate_private_key(ec.SECP521R1()), "ES512", "p521-1")


@pytest.fixture
def idp(p521_key: SigningKey, ec_key: SigningKey) -> Iterator[IdP]:
    server = IdP()
    server.jwks = {"keys": [p521_key.jwk, ec_key.jwk]}
    yield server
    server.stop()


def test_es512_p521_jwk_from_an_idp_jwks_verifies_tokens(
    idp: IdP, p521_key: SigningKey, clock: Clock
) -> None:
    assert p521_key.jwk["crv"] == "P-521"
    config = IssuerConfig(issuer=idp.issuer, audiences=[AUDIENCE], algorithms=ES512)
    verifier = TokenVerifier(config, clock=clock)
    token = sign(p521_key, claims(iss=idp.issuer))
    verified = verifier.verify(token)
    assert (verified.algorithm, verified.key_id, verified.subject) == ("ES512", "p521-1", "alice")


def test_es512_key_without_alg_is_bound_by_its_curve(p521_key: SigningKey) -> None:
    jwk = {k: v for k, v in p521_key.jwk.items() if k != "alg"}
    assert bind_jwk(jwk, ["ES256", "ES384", "ES512"]).algorithm == "ES512"
    with pytest.raises(KeyBindingError, match="not usable"):
        bind_jwk(jwk, ["ES256", "ES384"])  # P-521 is never ES256/ES384


def test_es512_is_pinned_to_p521_keys(ec_key: SigningKey, p521_key: SigningKey) -> None:
    with pytest.raises(KeyBindingError, match="cannot be used"):
        bind_jwk({**ec_key.jwk, "alg": "ES512"}, ["ES512"])  # a P-256 key claiming ES512
    with pytest.raises(KeyBindingError, match="cannot be used"):
        bind_jwk({**p521_key.jwk, "alg": "ES256"}, ["ES256"])


def test_es512_not_in_the_allow_list_is_rejected(p521_key: SigningKey, clock: Clock) -> None:
    keys = keyset_from_jwks({"keys": [p521_key.jwk]}, ES512)
    verifier = TokenVerifier(make_config(algorithms=ASYMMETRIC), keys=keys, clock=clock)
    rejects(verifier, sign(p521_key), AlgorithmNotAllowedError)


def test_es512_signature_by_another_p521_key_is_rejected(
    p521_key: SigningKey, clock: Clock
) -> None:
    other = SigningKey(ec.generate_private_key(ec.SECP521R1()), "ES512", "p521-1")
    keys = keyset_from_jwks({"keys": [p521_key.jwk]}, ES512)
    verifier = TokenVerifier(make_config(algorithms=ES512), keys=keys, clock=clock)
    rejects(verifier, forge({"alg": "ES512", "kid": "p521-1"}, signer=signer_for(other)),
            BadSignatureError)  # fmt: skip


def test_es512_from_pem_and_from_a_jwks_file(
    p521_key: SigningKey, clock: Clock, tmp_path: Path
) -> None:
    pem = p521_key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    bound = key_from_pem(pem, ES512, kid="p521-1")
    assert bound.algorithm == "ES512"
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [p521_key.jwk]}))
    for keys in (KeySet([bound]), load_jwks_file(path, ES512)):
        verifier = TokenVerifier(make_config(algorithms=ES512), keys=keys, clock=clock)
        assert verifier.verify(sign(p521_key)).algorithm == "ES512"


def test_dev_signing_supports_es512() -> None:
    key = generate_private_key("ES512")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp521r1"
    assert default_algorithm(key) == "ES512"


def test_verity_token_mint_and_verify_es512(tmp_path: Path) -> None:
    runner = CliRunner()
    key, jwks = tmp_path / "key.pem", tmp_path / "jwks.json"
    minted = runner.invoke(app, [
        "mint", "--dev", "--generate-key", "--key", str(key), "--alg", "ES512",
        "--issuer", ISSUER, "--audience", AUDIENCE, "--jwks-out", str(jwks), "--json",
    ])  # fmt: skip
    assert minted.exit_code == 0, minted.output
    document = json.loads(minted.output)
    assert document["algorithm"] == "ES512"
    assert json.loads(jwks.read_text())["keys"][0]["crv"] == "P-521"
    verified = runner.invoke(
        app,
        [
            "verify",
            document["token"],
            "--issuer",
            ISSUER,
            "--audience",
            AUDIENCE,
            "--jwks",
            str(jwks),
            "--json",
        ],
    )  # fmt: skip  (default allow-list includes ES512)
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.output)["algorithm"] == "ES512"
