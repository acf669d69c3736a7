"""Token signing keys (Ed25519) and the tokens they sign."""

from __future__ import annotations

import json
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from colony.platform.ids import new_id
from colony.platform.security import TOKEN_AUDIENCE, TOKEN_ISSUER


class SigningKey:
    def __init__(self, kid: str, private_key: Ed25519PrivateKey) -> None:
        self.kid = kid
        self.private_key = private_key

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(new_id()[:16], Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, kid: str, pem: str) -> SigningKey:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
        assert isinstance(key, Ed25519PrivateKey)
        return cls(kid, key)

    def private_pem(self) -> str:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    def public_jwk(self) -> dict[str, str]:
        jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(self.private_key.public_key()))
        return {**jwk, "kid": self.kid, "alg": "EdDSA", "use": "sig"}

    def sign(self, subject: str, role: str, ttl_seconds: int) -> str:
        now = int(time.time())
        claims = {
            "iss": TOKEN_ISSUER,
            "aud": TOKEN_AUDIENCE,
            "sub": subject,
            "role": role,
            "iat": now,
            "exp": now + ttl_seconds,
            "jti": new_id(),
        }
        return jwt.encode(claims, self.private_key, algorithm="EdDSA", headers={"kid": self.kid})
