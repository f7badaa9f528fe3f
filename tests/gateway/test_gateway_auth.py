"""API keys and HS256 JWTs: the happy path and every way a credential can be wrong."""

from __future__ import annotations

import pytest

from gateway.auth import Authenticator, AuthError, Consumer, b64url_encode, challenge, encode_jwt

NOW = 1_800_000_000.0
ALICE = Consumer("alice", keys=("alice-key-123",), jwt_issuer="alice-iss", jwt_secret="s3cret")
BOB = Consumer("bob", keys=("bob-key-4567", "bob-second-key"))


@pytest.fixture
def auth():
    return Authenticator([ALICE, BOB])


def test_api_key_by_bearer_and_by_header(auth):
    assert auth.authenticate("Bearer alice-key-123", None, NOW) is ALICE
    assert auth.authenticate(None, "bob-second-key", NOW) is BOB
    assert auth.authenticate("bearer   bob-key-4567 ", None, NOW) is BOB
    # Same credential in both places is fine.
    assert auth.authenticate("Bearer bob-key-4567", "bob-key-4567", NOW) is BOB


@pytest.mark.parametrize(
    ("authorization", "api_key", "error"),
    [
        (None, None, ""),
        ("Bearer nope-nope-nope", None, "invalid_token"),
        (None, "alice-key-12", "invalid_token"),
        ("Basic YWxpY2U6cHc=", None, "invalid_request"),
        ("Bearer ", None, "invalid_request"),
        ("Bearer alice-key-123", "bob-key-4567", "invalid_request"),
    ],
)
def test_bad_or_missing_keys(auth, authorization, api_key, error):
    with pytest.raises(AuthError) as info:
        auth.authenticate(authorization, api_key, NOW)
    assert info.value.error == error


def jwt(claims=None, secret="s3cret", header=None):
    body = {"iss": "alice-iss", "sub": "alice", "exp": NOW + 60}
    body.update(claims or {})
    return encode_jwt(body, secret, header)


def test_valid_jwt(auth):
    assert auth.authenticate(f"Bearer {jwt()}", None, NOW) is ALICE


def test_jwt_exp_and_nbf_with_leeway(auth):
    assert auth.authenticate(f"Bearer {jwt({'exp': NOW - 29})}", None, NOW) is ALICE
    with pytest.raises(AuthError, match="expired"):
        auth.authenticate(f"Bearer {jwt({'exp': NOW - 31})}", None, NOW)
    assert auth.authenticate(f"Bearer {jwt({'nbf': NOW + 29})}", None, NOW) is ALICE
    with pytest.raises(AuthError, match="not yet valid"):
        auth.authenticate(f"Bearer {jwt({'nbf': NOW + 31})}", None, NOW)
    with pytest.raises(AuthError, match="not a number"):
        auth.authenticate(f"Bearer {jwt({'exp': 'tomorrow'})}", None, NOW)


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "none", "typ": "JWT"},
        {"alg": "HS512"},
        {"alg": "RS256"},
        {"typ": "JWT"},
        {"alg": "hs256"},
    ],
)
def test_only_hs256_is_accepted(auth, header):
    with pytest.raises(AuthError, match="HS256"):
        auth.authenticate(f"Bearer {jwt(header=header)}", None, NOW)


def test_alg_none_with_empty_signature_is_rejected(auth):
    head = b64url_encode(b'{"alg":"none"}')
    body = b64url_encode(b'{"iss":"alice-iss"}')
    with pytest.raises(AuthError):
        auth.authenticate(f"Bearer {head}.{body}.", None, NOW)


def test_tampered_signature_and_payload(auth):
    token = jwt()
    head, body, sig = token.split(".")
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    with pytest.raises(AuthError, match="signature"):
        auth.authenticate(f"Bearer {head}.{body}.{flipped}", None, NOW)
    other_body = jwt({"sub": "mallory"}).split(".")[1]
    with pytest.raises(AuthError, match="signature"):
        auth.authenticate(f"Bearer {head}.{other_body}.{sig}", None, NOW)
    with pytest.raises(AuthError, match="signature"):
        auth.authenticate(f"Bearer {jwt(secret='guess')}", None, NOW)


@pytest.mark.parametrize(
    "token",
    ["a.b.c", "!!.??.**", "e30.e30.", "W10.e30.c2ln", "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln"],
)
def test_malformed_tokens(auth, token):
    with pytest.raises(AuthError):
        auth.authenticate(f"Bearer {token}", None, NOW)


def test_unknown_issuer_and_huge_token(auth):
    with pytest.raises(AuthError, match="issuer"):
        auth.authenticate(f"Bearer {jwt({'iss': 'eve'})}", None, NOW)
    with pytest.raises(AuthError, match="too large"):
        auth.authenticate(f"Bearer {jwt({'pad': 'x' * 10_000})}", None, NOW)


def test_challenge_strings():
    assert challenge(AuthError("missing credentials", "")) == 'Bearer realm="minisys"'
    assert (
        challenge(AuthError("token expired"))
        == 'Bearer realm="minisys", error="invalid_token", error_description="token expired"'
    )
