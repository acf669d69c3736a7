"""The buyers the load acts as, and the rule that each has at most one checkout in flight.

A cart belongs to its buyer, and a checkout empties, fills and orders it: two checkouts of one
buyer at once would order each other's items or find the cart emptied under them. So a
checkout takes a buyer from the free ones and gives it back when its order is answered; when
none is free, the runner records that arrival as dropped (a failure of the load, shown in the
summary with a hint to add ``--buyers``), rather than silently sending some other kind of
request and skewing the mix. Cart traffic prefers buyers that are not checking out.

The five demo buyers are used when they can sign in; ``--buyers N`` registers N more
(``load-buyer0001@colony.example`` …, one password), or signs them in if an earlier run
registered them.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from colony.load.client import SETUP_TIMEOUT_SECONDS, ApiClient

DEMO_BUYERS = tuple(f"buyer{n:02d}@colony.example" for n in range(1, 6))
DEMO_PASSWORD = "colony-buyer"
LOAD_BUYER_PASSWORD = "colony-load-buyer"
_SIGN_IN_CONCURRENCY = 8  # each costs the server an Argon2 hash


def load_buyer_email(number: int) -> str:
    return f"load-buyer{number:04d}@colony.example"


class Buyer:
    __slots__ = ("email", "headers", "id")

    def __init__(self, email: str, account_id: str, token: str) -> None:
        self.email = email
        self.id = account_id
        self.headers = {"authorization": f"Bearer {token}"}


class BuyerPool:
    """Every buyer, and which are free to check out."""

    def __init__(self, buyers: list[Buyer]) -> None:
        self.buyers = list(buyers)
        self._free = list(buyers)
        self._busy: set[str] = set()

    def __len__(self) -> int:
        return len(self.buyers)

    def take(self, rng: random.Random) -> Buyer | None:
        """A free buyer, now busy until ``release``; None when every one is checking out."""
        if not self._free:
            return None
        index = rng.randrange(len(self._free))
        self._free[index], self._free[-1] = self._free[-1], self._free[index]
        buyer = self._free.pop()
        self._busy.add(buyer.id)
        return buyer

    def release(self, buyer: Buyer) -> None:
        self._busy.discard(buyer.id)
        self._free.append(buyer)

    def any(self, rng: random.Random) -> Buyer | None:
        """Someone to fill a cart as: a buyer not checking out if there is one."""
        if self._free:
            return rng.choice(self._free)
        return rng.choice(self.buyers) if self.buyers else None


async def sign_in(
    client: ApiClient,
    extra: int,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[Buyer]:
    """Sign in the demo buyers that exist here and ``extra`` load buyers (registered first
    when new); in a stable order, so a seed picks the same buyers on the same marketplace."""
    accounts = [(email, DEMO_PASSWORD, False) for email in DEMO_BUYERS]
    accounts += [(load_buyer_email(n), LOAD_BUYER_PASSWORD, True) for n in range(1, extra + 1)]
    total, done = len(accounts), 0
    limit = asyncio.Semaphore(_SIGN_IN_CONCURRENCY)
    failures: list[str] = []

    async def one(email: str, password: str, register: bool) -> Buyer | None:
        nonlocal done
        async with limit:
            try:
                if register:
                    await _register(client, email, password)
                return await _log_in(client, email, password, required=register)
            except SignInError as exc:
                failures.append(str(exc))
                return None
            finally:
                done += 1
                if progress:
                    progress("buyers", done, total)

    if progress:
        progress("buyers", 0, total)
    found = await asyncio.gather(*(one(*account) for account in accounts))
    if failures:
        raise SignInError(f"{len(failures)} buyer(s) could not sign in; first: {failures[0]}")
    return [buyer for buyer in found if buyer is not None]


class SignInError(Exception):
    pass


async def _register(client: ApiClient, email: str, password: str) -> None:
    answer = await client.call(
        "POST",
        "/accounts",
        body={"email": email, "password": password, "name": "Load buyer", "role": "buyer"},
        within=SETUP_TIMEOUT_SECONDS,
    )
    if not answer.ok and answer.status != 409:  # 409: registered by an earlier run
        raise SignInError(f"registering {email}: {answer.error}")


async def _log_in(client: ApiClient, email: str, password: str, required: bool) -> Buyer | None:
    answer = await client.call(
        "POST",
        "/tokens",
        body={"email": email, "password": password},
        within=SETUP_TIMEOUT_SECONDS,
    )
    if answer.ok:
        body = answer.body
        return Buyer(email, str(body["account"]["id"]), str(body["access_token"]))
    if answer.status == 401 and not required:
        return None  # a marketplace without the demo data
    raise SignInError(f"signing in {email}: {answer.error}")
