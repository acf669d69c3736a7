"""Identity's public interface: the only module other services may import."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Protocol

import msgspec

from colony.platform.messaging import Event
from colony.platform.runtime.interface import callers, repeatable
from colony.platform.security import Role
from colony.platform.text import NON_BLANK, WHITESPACE

_NOT_AT = rf"[^@{WHITESPACE}\x00]"
_EMAIL = rf"^{_NOT_AT}+@{_NOT_AT}+\.{_NOT_AT}+$"
Email = Annotated[
    str,
    msgspec.Meta(min_length=3, max_length=254, pattern=_EMAIL),
]
Password = Annotated[str, msgspec.Meta(min_length=8, max_length=256)]
"""NIST SP 800-63B's length; identity also refuses common and guessable passwords (422)."""
DisplayName = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=NON_BLANK)]


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


class RevokedToken(msgspec.Struct, frozen=True, kw_only=True):
    token_id: str
    """The token's ``jti``."""
    expires_at: float
    """When the token would have expired anyway (unix seconds): no need to remember it after."""


class Revocations(msgspec.Struct, frozen=True, kw_only=True):
    tokens: list[RevokedToken]
    as_of: float
    """Identity's clock when it answered: where the next question's ``since`` starts from."""


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


class RegistrationRepeated(Event, frozen=True, kw_only=True):
    """Someone registered again with an account's e-mail. Registration answers as if it had
    created an account (so that it does not tell who has one); the owner is told instead."""

    topic: ClassVar[str] = "identity.account.registration_repeated"
    account_id: str
    email: str


class IdentityApi(Protocol):
    service_name: ClassVar[str] = "identity"

    @callers("gateway", "seed")
    async def register(self, registration: Registration) -> Account:
        """Create a buyer or seller account; 422 if the password is too common or guessable.

        An e-mail that already has an account gets the same answer, an account that was never
        stored, so that registering cannot tell whether an address has an account; the owner
        is told by a :class:`RegistrationRepeated` event instead."""
        ...

    @callers("seed")
    async def provision(self, registration: Registration, role: Role) -> Account:
        """Create an account with any role, admin included (operators and seeding only)."""
        ...

    @callers("gateway")
    @repeatable
    async def issue_token(self, credentials: Credentials, client_address: str) -> TokenGrant:
        """Exchange e-mail and password for a signed access token; 401 if they do not match,
        the same for an unknown e-mail. After repeated failures for the e-mail from the
        client's address (or for the e-mail, or from the address, at all) further attempts get
        429 with ``retry_after`` seconds, the right password included."""
        ...

    @callers("gateway")
    @repeatable
    async def revoke_token(self, token: str) -> RevokedToken:
        """Log a token out: it stops working at every gateway within seconds; 401 if it is not
        a valid token (an expired one needs no revoking)."""
        ...

    @callers("gateway")
    @repeatable
    async def revocations(self, since: float) -> Revocations:
        """Tokens revoked at or after ``since`` (identity's clock) that have not yet expired."""
        ...

    @callers("gateway")
    @repeatable
    async def jwks(self) -> Jwks:
        """The public keys that verify access tokens."""
        ...

    @callers("gateway")
    @repeatable
    async def get_account(self, account_id: str) -> Account: ...
