"""Authenticating callers with identity's tokens, verified locally against its JWKS, and
refused once logged out.

Revocations reach every gateway replica by asking identity, every
``REVOCATIONS_SYNC_SECONDS``, for those made since the last answer: a revoked token stops
working on the replica that revoked it at once, and on every other within that time and one
call to identity (the first request past it asks, and waits for the answer). A question is a
query on identity's database for the few seconds since the last one, cheap at any number of
replicas; an event pushed to every replica would be faster but needs a subscription per
replica, which in-process delivery and competing consumers do not give. If identity cannot be
asked, the replica keeps the revocations it has and asks again later: nobody can log out while
identity is down anyway, and refusing every signed-in request then would take the whole
marketplace down with it.
"""

from __future__ import annotations

import asyncio
import time

import msgspec
from starlette.requests import Request

from colony.platform.errors import ColonyError, Unauthorized
from colony.platform.logging import get_logger
from colony.platform.security import Actor, TokenVerifier
from colony.services.identity.api import IdentityApi

SESSION_COOKIE = "colony_session"
REVOCATIONS_SYNC_SECONDS = 2.0
_REVOCATIONS_OVERLAP_SECONDS = 10.0
"""Each question reaches this far back before the last answer: a revocation committed late (a
slow transaction), or by an identity replica whose clock is a little behind, still arrives."""
_JWKS_REFRESH_SECONDS = 10.0
_log = get_logger("gateway.auth")


class Authenticator:
    def __init__(self, identity: IdentityApi) -> None:
        self.identity = identity
        self.verifier = TokenVerifier()
        self._loaded_at = 0.0
        self._revocations_due = 0.0
        self._revocations_as_of = 0.0  # identity's clock; 0: every revocation not yet expired
        self._revocations_lock = asyncio.Lock()

    async def refresh(self) -> None:
        jwks = await self.identity.jwks()
        self.verifier.load_jwks(msgspec.to_builtins(jwks))
        self._loaded_at = time.monotonic()
        await self._sync_revocations()

    async def verify(self, token: str) -> Actor:
        # One request asks identity; those arriving meanwhile go on with what is known.
        if time.monotonic() >= self._revocations_due and not self._revocations_lock.locked():
            await self._sync_revocations()
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

    async def revoke(self, token: str) -> None:
        """Log the token out, here at once and at every other replica within seconds."""
        revoked = await self.identity.revoke_token(token)
        self.verifier.revoke(revoked.token_id, revoked.expires_at)

    async def bearer(self, request: Request) -> Actor:
        return await self.verify(bearer_token(request))

    async def session(self, request: Request) -> Actor | None:
        """The storefront's signed-in account, if its session cookie holds a valid token."""
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        try:
            return await self.verify(token)
        except Unauthorized:
            return None

    async def _sync_revocations(self) -> None:
        async with self._revocations_lock:
            if time.monotonic() < self._revocations_due:
                return  # another request asked while this one waited
            since = self._revocations_as_of
            if since:
                since -= _REVOCATIONS_OVERLAP_SECONDS
            try:
                found = await self.identity.revocations(since)
            except (ColonyError, TimeoutError, OSError) as exc:
                _log.warning("could not fetch revoked tokens; keeping those known", error=str(exc))
            else:
                for token in found.tokens:
                    self.verifier.revoke(token.token_id, token.expires_at)
                self._revocations_as_of = found.as_of
            self._revocations_due = time.monotonic() + REVOCATIONS_SYNC_SECONDS


def bearer_token(request: Request) -> str:
    """The token of the request's ``Authorization: Bearer`` header; 401 without one."""
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized("Send an access token: Authorization: Bearer <token>.")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("The Authorization header must be 'Bearer <token>'.")
    return token.strip()


def client_address(request: Request) -> str:
    """The address a request comes from, as log-in throttling counts it."""
    return request.client.host if request.client else ""
