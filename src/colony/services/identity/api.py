"""Identity's public interface: the only module other services may import."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Protocol

import msgspec

from colony.platform.messaging import Event
from colony.platform.runtime.interface import callers, repeatable
from colony.platform.security import Role

Email = Annotated[
    str, msgspec.Meta(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
]
Password = Annotated[str, msgspec.Meta(min_length=8, max_length=256)]
DisplayName = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class Registration(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    email: Email
    password: Password
    name: DisplayName
    role: Literal["buyer", "seller"] = "buyer"


class Credentials(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    email: Annotated[str, msgspec.Meta(max_length=254)]
    password: Annotated[str, msgspec.Meta(max_length=256)]


class Account(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    email: str
    name: str
    role: Role
    created_at: str


class TokenGrant(msgspec.Struct, frozen=True, kw_only=True):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int
    account: Account


class Jwk(msgspec.Struct, frozen=True, kw_only=True):
    kty: str
    crv: str
    x: str
    kid: str
    alg: str = "EdDSA"
    use: str = "sig"


class Jwks(msgspec.Struct, frozen=True, kw_only=True):
    keys: list[Jwk]


class AccountRegistered(Event, frozen=True, kw_only=True):
    topic: ClassVar[str] = "identity.account.registered"
    account_id: str
    email: str
    name: str
    role: Role


class IdentityApi(Protocol):
    service_name: ClassVar[str] = "identity"

    @callers("gateway", "seed")
    async def register(self, registration: Registration) -> Account:
        """Create a buyer or seller account; 409 if the e-mail is taken."""
        ...

    @callers("seed")
    async def provision(self, registration: Registration, role: Role) -> Account:
        """Create an account with any role, admin included (operators and seeding only)."""
        ...

    @callers("gateway")
    @repeatable
    async def issue_token(self, credentials: Credentials) -> TokenGrant:
        """Exchange e-mail and password for a signed access token; 401 if they do not match."""
        ...

    @callers("gateway")
    @repeatable
    async def jwks(self) -> Jwks:
        """The public keys that verify access tokens."""
        ...

    @callers("gateway")
    @repeatable
    async def get_account(self, account_id: str) -> Account: ...
