"""Property: no mutation of a valid token is ever accepted, and every rejection is a
``TokenError`` (never another exception escaping the verifier)."""

from __future__ import annotations

import base64
import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verity.identity import KeySet, TokenError, TokenVerifier

from .conftest import NOW, Clock, SigningKey, b64, make_config, sign

B64URL = string.ascii_letters + string.digits + "-_"
SETTINGS = settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _segment_json(parts: list[str], which: int) -> dict[str, object] | None:
    """The JSON object in ``parts[which]``, or None when an earlier mutation broke it."""
    if which >= len(parts):
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(parts[which] + "=" * (-len(parts[which]) % 4)))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _flip(token: str, data: st.DataObject) -> str:
    if not token:
        return "x"
    index = data.draw(st.integers(0, len(token) - 1), label="index")
    char = data.draw(st.sampled_from(B64URL + ".=+/ \x00é"), label="char")
    return token[:index] + char + token[index + 1 :]


def _swap(token: str, data: st.DataObject) -> str:
    parts = token.split(".")
    order = data.draw(st.permutations(list(range(len(parts)))), label="order")
    return ".".join(parts[i] for i in order)


def _reencode(token: str, data: st.DataObject) -> str:
    """Same JSON content with other bytes: key order, spacing, padding, std base64."""
    parts = token.split(".")
    which = data.draw(st.sampled_from([0, 1]), label="segment")
    value = _segment_json(parts, which)
    if value is None:
        return token
    indent = data.draw(st.sampled_from([None, 1]), label="indent")
    encoded = json.dumps(value, indent=indent, sort_keys=data.draw(st.booleans())).encode()
    style = data.draw(st.sampled_from(["url", "padded", "std"]), label="style")
    if style == "std":
        text = base64.b64encode(encoded).decode()
    elif style == "padded":
        text = base64.urlsafe_b64encode(encoded).decode()
    else:
        text = b64(encoded)
    parts[which] = text
    return ".".join(parts)


def _edit_claims(token: str, data: st.DataObject) -> str:
    """Change what the token says (the attacker's goal) and re-encode canonically."""
    parts = token.split(".")
    which = data.draw(st.sampled_from([0, 1]), label="segment")
    value = _segment_json(parts, which)
    if value is None:
        return token
    name = data.draw(st.sampled_from([*sorted(value), "admin"]), label="name")
    value[name] = data.draw(
        st.one_of(st.integers(), st.text(max_size=8), st.none(), st.booleans()), label="value"
    )
    parts[which] = b64(json.dumps(value).encode())
    return ".".join(parts)


def _truncate_or_extend(token: str, data: st.DataObject) -> str:
    if token and data.draw(st.booleans(), label="truncate"):
        return token[: data.draw(st.integers(0, len(token) - 1), label="cut")]
    return token + data.draw(st.text(B64URL + ".", min_size=1, max_size=8), label="tail")


MUTATIONS = [_flip, _swap, _reencode, _edit_claims, _truncate_or_extend]


@pytest.fixture
def strict_verifier(keyset: KeySet) -> TokenVerifier:
    return TokenVerifier(make_config(token_cache_size=0), keys=keyset, clock=Clock(NOW))


@pytest.mark.parametrize("key_name", ["rsa_key", "ec_key", "ed_key"])
@SETTINGS
@given(data=st.data())
def test_random_mutations_of_a_valid_token_are_never_accepted(
    strict_verifier: TokenVerifier,
    request: pytest.FixtureRequest,
    key_name: str,
    data: st.DataObject,
) -> None:
    key: SigningKey = request.getfixturevalue(key_name)
    token = sign(key)
    mutated = token
    for _ in range(data.draw(st.integers(1, 3), label="rounds")):
        mutated = data.draw(st.sampled_from(MUTATIONS), label="mutation")(mutated, data)
    if mutated == token:
        return
    with pytest.raises(TokenError):
        strict_verifier.verify(mutated)
