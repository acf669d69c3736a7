"""The tokens people hold: signed with identity's key (an Ed25519 :class:`SigningKey`, the
platform's, as every service's own)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from colony.platform.ids import new_id
from colony.platform.security import TOKEN_AUDIENCE, TOKEN_ISSUER
from colony.platform.trust.keys import SigningKey as PlatformSigningKey


@dataclass(frozen=True, slots=True)
class SigningKey(PlatformSigningKey):
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
