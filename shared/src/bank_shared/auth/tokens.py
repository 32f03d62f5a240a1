"""Access tokens: short-lived JWTs signed with an Ed25519 key (PyJWT).

The command API holds the private key and issues tokens; every API verifies them with the
public key alone. The algorithm is pinned, and `exp`, `iat`, `iss`, `aud` and `sub` are
required, so a token signed otherwise, with `alg: none`, or for another audience is refused.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from pydantic import ValidationError

from bank_shared.contracts.actors import Actor

ALGORITHM = "EdDSA"
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub"]


class InvalidTokenError(Exception):
    """The token cannot be trusted; the text says why, for the 401's message."""


class TokenIssuer:
    def __init__(
        self, private_key_pem: bytes, *, issuer: str, audience: str, lifetime: timedelta
    ) -> None:
        key = load_pem_private_key(private_key_pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the token signing key must be an Ed25519 private key")
        self._key = key
        self.issuer = issuer
        self.audience = audience
        self.lifetime = lifetime

    def issue(self, actor: Actor, now: datetime) -> str:
        claims: dict[str, Any] = {
            "sub": actor.subject,
            "role": actor.role,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + self.lifetime,
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)


class TokenVerifier:
    def __init__(self, public_key_pem: bytes, *, issuer: str, audience: str) -> None:
        key = load_pem_public_key(public_key_pem)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the token verifying key must be an Ed25519 public key")
        self._key = key
        self.issuer = issuer
        self.audience = audience

    def verify(self, token: str) -> Actor:
        """The actor the token was issued to, or InvalidTokenError."""
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidTokenError("the token has expired; log in again") from None
        except jwt.PyJWTError as error:
            raise InvalidTokenError(f"the token is not valid ({error}); log in again") from None
        try:
            return Actor(subject=claims["sub"], role=claims.get("role"))
        except ValidationError:
            raise InvalidTokenError("the token names no known role; log in again") from None
