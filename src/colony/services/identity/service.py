"""Identity's service layer: the implementation of :class:`IdentityApi`."""

from __future__ import annotations

import json
import time
from typing import Any

import msgspec

from colony.platform.clock import utc_now_iso
from colony.platform.errors import Conflict, InvalidInput, NotFound, Unauthorized
from colony.platform.idempotency import idempotent
from colony.platform.ids import new_id
from colony.platform.runtime import ServiceContext
from colony.platform.security import Role, TokenVerifier
from colony.services.identity.api import (
    Account,
    AccountRegistered,
    Credentials,
    Jwk,
    Jwks,
    Registration,
    RegistrationRepeated,
    Revocations,
    RevokedToken,
    TokenGrant,
)
from colony.services.identity.domain import password_problem
from colony.services.identity.passwords import Passwords
from colony.services.identity.signing import SigningKey
from colony.services.identity.throttle import LoginThrottle


def _account(row: Any) -> Account:
    return Account(
        id=row["id"],
        email=row["email"],
        name=row["name"],
        role=row["role"],
        created_at=row["created_at"],
    )


class IdentityService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.db = ctx.db
        self.outbox = ctx.outbox
        self.settings = ctx.settings
        self.passwords = Passwords(ctx.settings.password_hash_cost)
        self.throttle = LoginThrottle(ctx.db)
        self._verifier = TokenVerifier()
        self._signing_key: SigningKey | None = None
        self._jwks: Jwks | None = None

    async def start(self) -> None:
        row = await self.db.fetch_one(
            "SELECT kid, private_key_pem FROM signing_keys WHERE retired_at IS NULL"
            " ORDER BY created_at DESC LIMIT 1"
        )
        if row is None:
            key = SigningKey.generate()
            await self.db.execute(
                "INSERT INTO signing_keys (kid, private_key_pem, public_jwk, created_at)"
                " VALUES (?, ?, ?, ?)",
                (key.kid, key.private_pem(), json.dumps(key.public_jwk()), utc_now_iso()),
            )
        else:
            key = SigningKey.from_pem(row["kid"], row["private_key_pem"])
        self._signing_key = key
        rows = await self.db.fetch_all("SELECT public_jwk FROM signing_keys")
        self._jwks = Jwks(keys=[msgspec.convert(json.loads(r[0]), Jwk) for r in rows])
        self._verifier.load_jwks(msgspec.to_builtins(self._jwks))

    @idempotent
    async def register(self, registration: Registration) -> Account:
        return await self._create(registration, registration.role, pretend_if_taken=True)

    async def provision(self, registration: Registration, role: Role) -> Account:
        return await self._create(registration, role, pretend_if_taken=False)

    async def _create(
        self, registration: Registration, role: Role, *, pretend_if_taken: bool
    ) -> Account:
        if not registration.name.strip():
            raise InvalidInput("A name must not be blank.", field="name")
        problem = password_problem(registration.password, registration.email)
        if problem:
            raise InvalidInput(problem, field="password")
        # Hashed whether or not the e-mail is taken: both answers take the same time.
        password_hash = await self.passwords.hash(registration.password)
        account = Account(
            id=new_id(),
            email=registration.email.strip().lower(),
            name=registration.name.strip(),
            role=role,
            created_at=utc_now_iso(),
        )
        async with self.db.transaction():
            taken = await self.db.fetch_one(
                "SELECT id FROM accounts WHERE email = ?", (account.email,)
            )
            if taken and not pretend_if_taken:
                raise Conflict("An account with this e-mail already exists.")
            if taken:
                # What a new account would have been, never stored: the caller cannot tell
                # from the answer, and cannot use it (the account's password is unchanged).
                await self.outbox.add(
                    RegistrationRepeated(account_id=taken["id"], email=account.email),
                    key=taken["id"],
                )
                return account
            await self.db.execute(
                "INSERT INTO accounts (id, email, name, role, password_hash, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (account.id, account.email, account.name, role, password_hash, account.created_at),
            )
            await self.outbox.add(
                AccountRegistered(
                    account_id=account.id, email=account.email, name=account.name, role=role
                ),
                key=account.id,
            )
        return account

    async def issue_token(self, credentials: Credentials, client_address: str) -> TokenGrant:
        email = credentials.email.strip().lower()
        attempt = await self.throttle.attempt(email, client_address)
        row = await self.db.fetch_one("SELECT * FROM accounts WHERE email = ?", (email,))
        stored_hash = row["password_hash"] if row else None
        # An unknown e-mail is checked against a dummy hash: the same answer, in the same time.
        if not await self.passwords.verify(stored_hash, credentials.password) or row is None:
            raise Unauthorized("The e-mail or password is not correct.")
        await self.throttle.succeeded(attempt)
        account = _account(row)
        assert self._signing_key is not None
        ttl = self.settings.token_ttl_seconds
        token = self._signing_key.sign(account.id, account.role, ttl)
        return TokenGrant(access_token=token, expires_in=ttl, account=account)

    async def revoke_token(self, token: str) -> RevokedToken:
        verified = self._verifier.verify_token(token)
        await self.db.execute(
            "INSERT INTO revoked_tokens (token_id, account_id, expires_at, revoked_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (token_id) DO NOTHING",
            (verified.token_id, verified.actor.id, verified.expires_at, time.time()),
        )
        return RevokedToken(token_id=verified.token_id, expires_at=verified.expires_at)

    async def revocations(self, since: float) -> Revocations:
        now = time.time()
        rows = await self.db.fetch_all(
            "SELECT token_id, expires_at FROM revoked_tokens"
            " WHERE revoked_at >= ? AND expires_at > ?",
            (since, now),
        )
        tokens = [RevokedToken(token_id=r[0], expires_at=r[1]) for r in rows]
        return Revocations(tokens=tokens, as_of=now)

    async def jwks(self) -> Jwks:
        assert self._jwks is not None
        return self._jwks

    async def get_account(self, account_id: str) -> Account:
        row = await self.db.fetch_one("SELECT * FROM accounts WHERE id = ?", (account_id,))
        if row is None:
            raise NotFound("No such account.")
        return _account(row)
