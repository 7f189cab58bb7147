"""The gateway's authentication: the principal is cached with the verified token, and a
revocation still refuses the token on the very next request."""

from __future__ import annotations

import uuid

import httpx
import pytest

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
