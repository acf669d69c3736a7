"""The signed token every call between processes carries: who calls, whom, and for whom.

Modelled on SPIFFE's JWT-SVID: an EdDSA-signed JWT whose issuer and subject are the caller's
identity (``spiffe://colony/<identity>``), whose audience is the callee's, and which lives a
few minutes. When the call acts for an account, that account (id and role) is a claim signed
into the token, ``colony_actor``: the callee takes the actor from here, never from the call's
parameters, so a caller cannot write in whom it acts for.

Signing an Ed25519 JWT costs ~50 µs and verifying one ~100 µs, more than the rest of a call,
so a caller reuses a token per (callee, actor) until shortly before it expires, and a callee
remembers the tokens it has verified until they expire. A token taken from one call can only
be replayed to the callee it names, by someone who can already reach that callee, for a few
minutes, acting as the caller it names already did.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import jwt
from cachetools import LRUCache

from colony.platform.errors import Unauthorized
from colony.platform.security import Actor
from colony.platform.trust.keys import KeyStore

SPIFFE_PREFIX = "spiffe://colony/"
ACTOR_CLAIM = "colony_actor"
_LEEWAY_SECONDS = 30
"""Clock differences between processes tolerated on ``exp``, ``nbf`` and ``iat``."""
_ROLES = ("buyer", "seller", "admin", "system")


def spiffe_id(identity: str) -> str:
    return SPIFFE_PREFIX + identity


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made a call, as its verified token says."""

    identity: str
    actor: Actor | None


class TokenIssuer:
    """Signs the tokens one identity sends, one per (callee, actor), reused until a fifth of
    its life is left."""

    def __init__(
        self,
        identity: str,
        keys: KeyStore,
        ttl_seconds: int = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.identity = identity
        self.keys = keys
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._issued: dict[tuple[str, str | None, str | None], tuple[str, float, int]] = {}

    def token(self, audience: str, actor: Actor | None = None) -> str:
        key = (audience, actor.id if actor else None, actor.role if actor else None)
        now = self._clock()
        issued = self._issued.get(key)
        if issued is not None and issued[1] > now and issued[2] == self.keys.version:
            return issued[0]
        token = self._sign(audience, actor, now)
        if len(self._issued) > 10_000:
            self._issued.clear()  # one per buyer seen: bounded, and rebuilt as calls come
        self._issued[key] = (token, now + self.ttl_seconds * 0.8, self.keys.version)
        return token

    def _sign(self, audience: str, actor: Actor | None, now: float) -> str:
        signing = self.keys.signing_key(self.identity)
        issued_at = int(now)
        claims: dict[str, object] = {
            "iss": spiffe_id(self.identity),
            "sub": spiffe_id(self.identity),
            "aud": spiffe_id(audience),
            "iat": issued_at,
            "nbf": issued_at,
            "exp": issued_at + self.ttl_seconds,
        }
        if actor is not None:
            claims[ACTOR_CLAIM] = {"id": actor.id, "role": actor.role}
        return jwt.encode(
            claims, signing.private_key, algorithm="EdDSA", headers={"kid": signing.kid}
        )


class TokenVerifier:
    """Verifies the tokens sent to one identity: signature by a trusted key of the identity
    the token claims to come from, audience this identity, within its lifetime. Every
    failure is :class:`~colony.platform.errors.Unauthorized` (401)."""

    def __init__(
        self, identity: str, keys: KeyStore, clock: Callable[[], float] = time.time
    ) -> None:
        self.identity = identity
        self.audience = spiffe_id(identity)
        self.keys = keys
        self._clock = clock
        self._verified: LRUCache[str, tuple[Caller, float]] = LRUCache(maxsize=20_000)
        self._version = keys.version

    def verify(self, token: str | None) -> Caller:
        if not token:
            raise Unauthorized("This call needs a service token.")
        if self._version != self.keys.version:
            self._verified.clear()  # keys changed: a retired key's tokens must fail again
            self._version = self.keys.version
        now = self._clock()
        known = self._verified.get(token)
        if known is not None and known[1] > now:
            return known[0]
        caller, expires = self._verify(token, now)
        self._verified[token] = (caller, expires)
        return caller

    def _verify(self, token: str, now: float) -> tuple[Caller, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("The service token is malformed.") from None
        if header.get("alg") != "EdDSA":
            raise Unauthorized("The service token must be signed with EdDSA.")
        trusted = self.keys.trusted(str(header.get("kid")))
        if trusted is None or not trusted.valid(now):
            raise Unauthorized("The service token was signed with a key that is not trusted.")
        try:
            claims = jwt.decode(
                token,
                trusted.key,
                algorithms=["EdDSA"],
                audience=self.audience,
                issuer=spiffe_id(trusted.identity),
                leeway=_LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "nbf", "iss", "sub", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The service token has expired.") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("The service token is not valid yet.") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("The service token is meant for another service.") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("The service token's issuer does not own its key.") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"The service token is not valid: {exc}") from None
        if claims["sub"] != claims["iss"]:
            raise Unauthorized("The service token's subject is not its issuer.")
        return Caller(trusted.identity, _actor(claims.get(ACTOR_CLAIM))), float(claims["exp"])


def _actor(claim: object) -> Actor | None:
    if claim is None:
        return None
    if (
        not isinstance(claim, dict)
        or not isinstance(claim.get("id"), str)
        or claim.get("role") not in _ROLES
    ):
        raise Unauthorized("The service token names no valid actor.")
    return Actor(id=claim["id"], role=claim["role"])
