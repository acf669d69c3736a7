"""Who is calling: the actor a request acts for, and verification of identity's tokens.

Tokens are EdDSA (Ed25519) JWTs signed by identity; anyone holding its published JWKS can
verify them without a call per request.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import jwt
import msgspec
from cachetools import LRUCache

from colony.platform.errors import Forbidden, Unauthorized

Role = Literal["buyer", "seller", "admin", "system"]
"""``system`` is a service acting for itself (a saga step, a consumer); never in a user token."""
TOKEN_ISSUER = "colony-identity"
TOKEN_AUDIENCE = "colony"


class Actor(msgspec.Struct, frozen=True, kw_only=True):
    """The account a call acts for. Services check ownership against ``id``."""

    id: str
    role: Role

    def require(self, *roles: Role) -> None:
        if self.role in roles:
            return
        # An admin may do what users do, but never pass as the system: system calls move
        # stock and money on a saga's word.
        if self.role == "admin" and "system" not in roles:
            return
        raise Forbidden(f"This needs the role {' or '.join(roles)}.")

    @classmethod
    def system(cls, service: str) -> Actor:
        """A service acting for itself."""
        return cls(id=service, role="system")

    def require_owner(self, owner_id: str, what: str = "resource") -> None:
        if owner_id != self.id and self.role != "admin":
            raise Forbidden(f"This {what} belongs to another account.")


class TokenVerifier:
    """Verifies bearer tokens against a JWKS document (keys are looked up by ``kid``)."""

    def __init__(self) -> None:
        self._keys: dict[str, Any] = {}
        # Verifying an EdDSA signature is the costliest part of a request that needs no
        # other work; a token once verified stays valid until it expires (or keys change).
        self._verified: LRUCache[str, tuple[Actor, float]] = LRUCache(maxsize=20_000)

    def load_jwks(self, jwks: dict[str, Any]) -> None:
        keys = {}
        for jwk in jwks.get("keys", []):
            keys[jwk["kid"]] = jwt.PyJWK.from_dict(jwk).key
        self._keys = keys
        self._verified.clear()

    def knows(self, token: str) -> bool:
        try:
            return jwt.get_unverified_header(token).get("kid") in self._keys
        except jwt.PyJWTError:
            return True  # malformed: verify() will say why

    def cached(self, token: str) -> Actor | None:
        """The actor of a token verified before and not yet expired, else None."""
        known = self._verified.get(token)
        return known[0] if known is not None and known[1] > time.time() else None

    def verify(self, token: str) -> Actor:
        known = self.cached(token)
        if known is not None:
            return known
        actor, expires = self._verify(token)
        self._verified[token] = (actor, expires)
        return actor

    def _verify(self, token: str) -> tuple[Actor, float]:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = self._keys.get(kid) if kid is not None else None
            if key is None:
                raise Unauthorized("The token was signed with an unknown key.")
            claims = jwt.decode(
                token,
                key,
                algorithms=["EdDSA"],
                audience=TOKEN_AUDIENCE,
                issuer=TOKEN_ISSUER,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The token has expired.") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"The token is not valid: {exc}") from None
        role = claims.get("role")
        if role not in ("buyer", "seller", "admin"):
            raise Unauthorized("The token names no known role.")
        return Actor(id=str(claims["sub"]), role=role), float(claims["exp"])
