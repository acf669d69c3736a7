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


class VerifiedToken(msgspec.Struct, frozen=True, kw_only=True):
    """A token whose signature, issuer, audience and expiry have been checked."""

    actor: Actor
    token_id: str
    """Its ``jti``: what a revocation names."""
    expires_at: float


class TokenVerifier:
    """Verifies bearer tokens against a JWKS document (keys are looked up by ``kid``), and
    refuses tokens revoked before they expire (logged out)."""

    def __init__(self) -> None:
        self._keys: dict[str, Any] = {}
        # Verifying an EdDSA signature is the costliest part of a request that needs no
        # other work; a token once verified stays valid until it expires (or keys change), or
        # is revoked: revocations are checked on every use, the cache notwithstanding.
        self._verified: LRUCache[str, VerifiedToken] = LRUCache(maxsize=20_000)
        self._revoked: dict[str, float] = {}

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

    def revoke(self, token_id: str, expires_at: float) -> None:
        """Refuse the token with this ``jti`` from now on (until it would have expired)."""
        now = time.time()
        if expires_at > now:
            self._revoked[token_id] = expires_at
        if len(self._revoked) % 1024 == 0:
            self._revoked = {jti: at for jti, at in self._revoked.items() if at > now}

    def cached(self, token: str) -> Actor | None:
        """The actor of a token verified before, not yet expired nor revoked, else None."""
        known = self._verified.get(token)
        if known is None or known.expires_at <= time.time() or known.token_id in self._revoked:
            return None
        return known.actor

    def verify(self, token: str) -> Actor:
        return self.verify_token(token).actor

    def verify_token(self, token: str) -> VerifiedToken:
        known = self._verified.get(token)
        if known is None or known.expires_at <= time.time():
            known = self._verify(token)
            self._verified[token] = known
        if known.token_id in self._revoked:
            raise Unauthorized("The token has been revoked (logged out); log in again.")
        return known

    def _verify(self, token: str) -> VerifiedToken:
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
                options={"require": ["exp", "iat", "sub", "iss", "aud", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The token has expired.") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"The token is not valid: {exc}") from None
        role = claims.get("role")
        if role not in ("buyer", "seller", "admin"):
            raise Unauthorized("The token names no known role.")
        return VerifiedToken(
            actor=Actor(id=str(claims["sub"]), role=role),
            token_id=str(claims["jti"]),
            expires_at=float(claims["exp"]),
        )
