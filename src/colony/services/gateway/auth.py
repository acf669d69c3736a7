"""Authenticating callers with identity's tokens, verified locally against its JWKS."""

from __future__ import annotations

import time

import msgspec
from starlette.requests import Request

from colony.platform.errors import Unauthorized
from colony.platform.security import Actor, TokenVerifier
from colony.services.identity.api import IdentityApi

SESSION_COOKIE = "colony_session"
_JWKS_REFRESH_SECONDS = 10.0


class Authenticator:
    def __init__(self, identity: IdentityApi) -> None:
        self.identity = identity
        self.verifier = TokenVerifier()
        self._loaded_at = 0.0

    async def refresh(self) -> None:
        jwks = await self.identity.jwks()
        self.verifier.load_jwks(msgspec.to_builtins(jwks))
        self._loaded_at = time.monotonic()

    async def verify(self, token: str) -> Actor:
        known = self.verifier.cached(token)
        if known is not None:
            return known  # parsing the token's header again would cost more than the rest
        # A key we do not know may be newly issued: look again, but not on every request.
        if (
            not self.verifier.knows(token)
            and time.monotonic() - self._loaded_at > _JWKS_REFRESH_SECONDS
        ):
            await self.refresh()
        return self.verifier.verify(token)

    async def bearer(self, request: Request) -> Actor:
        header = request.headers.get("authorization")
        if not header:
            raise Unauthorized("Send an access token: Authorization: Bearer <token>.")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("The Authorization header must be 'Bearer <token>'.")
        return await self.verify(token.strip())

    async def session(self, request: Request) -> Actor | None:
        """The storefront's signed-in account, if its session cookie holds a valid token."""
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        try:
            return await self.verify(token)
        except Unauthorized:
            return None
