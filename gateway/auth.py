"""Authentication: who is calling? API keys and HS256 JSON Web Tokens.

On the request's journey this runs right after the route is matched (routes.py): a route
that requires auth hands the request's headers to `Authenticator.authenticate`, which
returns the `Consumer` or an `AuthError` that proxy.py turns into `401` (with a
`WWW-Authenticate` challenge) — or `403` when the consumer is known but not allowed on the
route. The consumer id then travels upstream as `X-Consumer-ID` and keys the rate limits.

Credentials arrive as `Authorization: Bearer <credential>` or `X-API-Key: <key>`. A bearer
credential with two dots is a JWT (`header.payload.signature`, each base64url without
padding); anything else is an API key.

Why hash the keys: the table maps SHA-256(key) → consumer, so the config in memory and the
admin API never hold a usable key, and the dict lookup leaks nothing about how much of a
guessed key was right. The final comparison uses `hmac.compare_digest`, which takes the
same time however many leading bytes match.

Why pin `alg`: the token's header says which algorithm signed it, and trusting that is the
classic JWT hole — `"alg": "none"` means "no signature", and algorithm confusion tricks a
verifier into using an RSA public key as an HMAC secret. We accept exactly `HS256` and
reject everything else before looking at the signature.

JWT consumer lookup follows Kong: the `iss` claim names the credential, whose secret then
verifies the signature. `exp` and `nbf` are checked with a small leeway for clock skew.

Simpler than the real thing: no RS256/ES256, no JWKS fetching, no `aud` check, no Basic auth,
no OAuth2 introspection — Kong and AWS API Gateway offer all of these as plugins.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

# Clock skew we forgive on `exp`/`nbf`: a token that expired 30 s ago on a gateway whose
# clock runs fast is still fine; RFC 7519 says "a small leeway, usually no more than a few
# minutes".
JWT_LEEWAY_S = 30

# A JWT is a bearer credential in one header; refuse absurd ones before decoding anything
# (the HTTP engine caps header size too, but this keeps base64/json work small).
MAX_TOKEN_BYTES = 8 * 1024


class AuthError(Exception):
    """Credentials missing or invalid; `error` is the RFC 6750 error code for the challenge."""

    def __init__(self, detail: str, error: str = "invalid_token") -> None:
        super().__init__(detail)
        self.detail = detail
        self.error = error


@dataclass(frozen=True)
class Consumer:
    """A known caller: an id, its API keys, optional JWT credential, and its limits."""

    id: str
    keys: tuple[str, ...] = ()
    jwt_issuer: str | None = None
    jwt_secret: str | None = None
    limit: Any = None  # a ratelimit.Limit, or None for "no per-consumer limit"
    max_concurrency: int = 0  # 0 = unlimited
    extra: dict[str, Any] = field(default_factory=dict)


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def b64url_decode(part: str) -> bytes:
    """base64url without padding, as JWS uses; strict about the alphabet."""
    if not part or len(part) % 4 == 1:
        raise AuthError("malformed token")
    try:
        return base64.b64decode(
            part.replace("-", "+").replace("_", "/") + "=" * (-len(part) % 4), validate=True
        )
    except (binascii.Error, ValueError):
        raise AuthError("malformed token") from None


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def encode_jwt(claims: dict[str, Any], secret: str, header: dict[str, Any] | None = None) -> str:
    """Sign `claims` as an HS256 JWT (used by tests, the demo and the bench)."""
    head = header if header is not None else {"alg": "HS256", "typ": "JWT"}
    signing_input = (
        b64url_encode(json.dumps(head, separators=(",", ":")).encode())
        + "."
        + b64url_encode(json.dumps(claims, separators=(",", ":")).encode())
    )
    sig = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url_encode(sig)


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise AuthError("malformed token") from None
    if not isinstance(value, dict):
        raise AuthError("malformed token")
    return value


def _numeric(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AuthError(f"claim {name!r} is not a number")
    return float(value)


class Authenticator:
    """Finds the consumer behind a request's credentials."""

    def __init__(self, consumers: list[Consumer], leeway: float = JWT_LEEWAY_S) -> None:
        self.consumers = {c.id: c for c in consumers}
        self.leeway = leeway
        self._by_key: dict[bytes, tuple[bytes, Consumer]] = {}
        self._by_issuer: dict[str, Consumer] = {}
        for consumer in consumers:
            for key in consumer.keys:
                digest = key_digest(key)
                self._by_key[digest] = (digest, consumer)
            if consumer.jwt_issuer and consumer.jwt_secret:
                self._by_issuer[consumer.jwt_issuer] = consumer

    def authenticate(self, authorization: str | None, api_key: str | None, now: float) -> Consumer:
        """The consumer for these header values, or raise AuthError.

        `now` is wall-clock seconds (JWT times are Unix timestamps).
        """
        bearer = None
        if authorization is not None:
            scheme, _, credential = authorization.strip().partition(" ")
            if scheme.lower() != "bearer" or not credential.strip():
                raise AuthError("unsupported authorization scheme", "invalid_request")
            bearer = credential.strip()
        if bearer is not None and api_key is not None and bearer != api_key:
            # Two different credentials: which one is meant? Kong rejects this too.
            raise AuthError("more than one credential", "invalid_request")
        credential = bearer if bearer is not None else api_key
        if credential is None:
            raise AuthError("missing credentials", "")
        if bearer is not None and bearer.count(".") == 2:
            return self.verify_jwt(bearer, now)
        return self.check_key(credential)

    def check_key(self, key: str) -> Consumer:
        digest = key_digest(key)
        found = self._by_key.get(digest)
        # compare_digest keeps the final check constant-time even though the dict lookup
        # already matched on the digest: cheap insurance if the lookup ever changes.
        if found is None or not hmac.compare_digest(digest, found[0]):
            raise AuthError("invalid API key")
        return found[1]

    def verify_jwt(self, token: str, now: float) -> Consumer:
        if len(token) > MAX_TOKEN_BYTES:
            raise AuthError("token too large")
        head_b64, payload_b64, sig_b64 = token.split(".")
        header = _json_object(b64url_decode(head_b64))
        if header.get("alg") != "HS256":
            raise AuthError("token algorithm must be HS256")
        claims = _json_object(b64url_decode(payload_b64))
        issuer = claims.get("iss")
        consumer = self._by_issuer.get(issuer) if isinstance(issuer, str) else None
        if consumer is None or consumer.jwt_secret is None:
            raise AuthError("unknown token issuer")
        signature = b64url_decode(sig_b64)
        expected = hmac.new(
            consumer.jwt_secret.encode(), f"{head_b64}.{payload_b64}".encode(), hashlib.sha256
        ).digest()
        if not hmac.compare_digest(signature, expected):
            raise AuthError("bad token signature")
        exp = _numeric(claims, "exp")
        if exp is not None and now > exp + self.leeway:
            raise AuthError("token expired")
        nbf = _numeric(claims, "nbf")
        if nbf is not None and now + self.leeway < nbf:
            raise AuthError("token not yet valid")
        return consumer


def challenge(error: AuthError, realm: str = "minisys") -> str:
    """The `WWW-Authenticate` value for a 401 (RFC 6750 §3)."""
    if not error.error:
        return f'Bearer realm="{realm}"'
    detail = error.detail.replace('"', "'")
    return f'Bearer realm="{realm}", error="{error.error}", error_description="{detail}"'
